"""The exact gradient flow ``d theta/dt = -grad L(theta)``, integrated with Diffrax."""

from __future__ import annotations

import time
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .invariants import conserved, project as project_model
from .losses import get_loss
from .trajectory import Status, Trajectory, evaluate

__all__ = ["gradient_flow", "SOLVERS", "full_batch_loss", "flow_field"]

SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5,
}
_FIXED_STEP_ONLY = {"euler"}
_DEFAULT_EULER_STEPS = 1000


def full_batch_loss(model, x, y, loss_fn):
    """``L(theta) = loss(f_theta(x_i) for all i, y)`` over the whole data set."""
    return loss_fn(jax.vmap(model)(x), y)


def flow_field(static, data, loss_fn):
    """The vector field ``(t, params, args) -> -grad L(params)`` for Diffrax."""

    def field(t, params, args):
        g = jax.grad(lambda p: full_batch_loss(eqx.combine(p, static), data.x_train, data.y_train, loss_fn))(params)
        return jax.tree_util.tree_map(jnp.negative, g)

    return field


def evals_per_step(solver: diffrax.AbstractSolver, projected: bool) -> tuple[int, int]:
    """``(per attempted step, once at the start)`` gradient evaluations of a solver.

    Read off the Butcher tableau: s stages, first-same-as-last saves one per step (the
    saved stage is evaluated once at the start). With projection the saved stage is
    stale after every step, so all s stages are evaluated. For an implicit method this
    counts stage evaluations, not the Newton iterations or Jacobians inside them.
    """
    tableau = getattr(solver, "tableau", None)
    if tableau is None:  # Euler
        return 1, 0
    stages = len(tableau.c) + 1
    if tableau.fsal and not projected:
        return stages - 1, 1
    return stages, 0


class _Projected(diffrax.AbstractAdaptiveSolver, diffrax.AbstractWrappedSolver):
    """Wraps a solver: after every step, project ``y1`` exactly onto ``Q(delta)`` (Prop. 4)."""

    solver: diffrax.AbstractSolver
    delta: jax.Array
    static: object = eqx.field(static=True)

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    @property
    def scan_kind(self):
        return getattr(self.solver, "scan_kind", None)

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, dense_info, state, result = self.solver.step(terms, t0, t1, y0, args, solver_state, made_jump)
        y1 = project_params(y1, self.static, self.delta)
        if state is not None:  # first-same-as-last: the stored stage is stale after projecting
            state = (jnp.array(True), state[1])
        return y1, y_error, dense_info, state, result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def project_params(params, static, delta):
    model = project_model(eqx.combine(params, static), delta)
    return eqx.filter(model, eqx.is_inexact_array)


def build_solver(solver: str, project: bool, delta, static) -> diffrax.AbstractSolver:
    """The Diffrax solver ``solver``, wrapped to project onto ``Q(delta)`` if ``project``."""
    base = SOLVERS[solver]()
    return _Projected(base, delta, static) if project else base


def build_controller(rtol, atol, adaptive: bool) -> diffrax.AbstractStepSizeController:
    """PID step-size control at ``rtol``/``atol``, or constant steps."""
    return diffrax.PIDController(rtol=rtol, atol=atol) if adaptive else diffrax.ConstantStepSize()


def flow_status(result) -> Status:
    R = diffrax.RESULTS
    status = Status.where(result == R.max_steps_reached, Status.max_steps_reached, Status.solver_failure)
    status = Status.where(result == R.dt_min_reached, Status.dt_min_reached, status)
    return Status.where(result == R.successful, Status.successful, status)


@eqx.filter_jit
def solve_flow(model, data, loss_fn, ts, rtol, atol, step_size, *, solver: str, max_steps: int,
               project: bool, adaptive: bool) -> Trajectory:
    """Jitted core of :func:`gradient_flow` (no validation, no wall time); vmap-friendly."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    term = diffrax.ODETerm(flow_field(static, data, loss_fn))
    delta = conserved(model)
    base = build_solver(solver, project, delta, static)
    save_fn = (lambda t, y, args: project_params(y, static, delta)) if project else None
    controller = build_controller(rtol, atol, adaptive)
    dt0 = None if adaptive else step_size
    sol = diffrax.diffeqsolve(
        term, base, t0=ts[0], t1=ts[-1], dt0=dt0, y0=params,
        saveat=diffrax.SaveAt(ts=ts, fn=save_fn) if save_fn else diffrax.SaveAt(ts=ts),
        stepsize_controller=controller, max_steps=max_steps, throw=False,
        adjoint=diffrax.ForwardMode(),
    )
    per_step, once = evals_per_step(base.solver if project else base, project)
    steps = sol.stats["num_steps"]
    stats = dict(steps=steps, accepted=sol.stats["num_accepted_steps"], rejected=sol.stats["num_rejected_steps"],
                 grad_evals=per_step * steps + once, wall_time=jnp.zeros((), ts.dtype))
    models = eqx.combine(sol.ys, static)
    return evaluate(ts, models, data, loss_fn, stats, flow_status(sol.result))


def save_times(t1, n_save, ts):
    """Validated saved times: ``ts`` if given, else ``n_save`` evenly spaced in [0, t1]."""
    if ts is not None:
        ts = np.asarray(ts, dtype=float)
        if ts.ndim != 1 or len(ts) < 2 or np.any(np.diff(ts) <= 0) or ts[0] < 0:
            raise ValueError("ts must be a strictly increasing 1-D array of at least 2 times >= 0.")
        return jnp.asarray(ts, jnp.result_type(float))
    if not (isinstance(t1, (int, float, np.floating, np.integer)) and t1 > 0 and np.isfinite(t1)):
        raise ValueError(f"t1 must be a positive finite number, got {t1!r}.")
    if not isinstance(n_save, (int, np.integer)) or n_save < 2:
        raise ValueError(f"n_save must be an integer >= 2, got {n_save!r}.")
    return jnp.linspace(0.0, float(t1), int(n_save), dtype=jnp.result_type(float))


def _positive(name, value):
    if not (np.isscalar(value) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}.")


def gradient_flow(model, data, loss, t1=None, *, solver: str = "tsit5", rtol: float = 1e-8, atol: float = 1e-8,
                  n_save: int = 101, ts=None, max_steps: int = 100_000, project: bool = False,
                  step_size: float | None = None) -> Trajectory:
    """Integrate the exact gradient flow ``d theta/dt = -grad L(theta)`` from ``model``.

    ``L`` is the full-batch ``loss`` (a name or a callable ``(pred, y) -> scalar``) on
    ``data.x_train``. Along the exact flow every ``c_h`` of :func:`gflow.conserved` is
    constant (THEORY.md §1-2); the trajectory records them so the solver's drift shows.

    **Arguments:**
    - ``t1``: final time (or give ``ts``, the saved times; the solve runs ``ts[0] -> ts[-1]``).
    - ``solver``: one of ``euler`` (fixed step), ``heun``, ``tsit5``, ``dopri5``, ``dopri8``,
      ``kvaerno5`` (implicit). Adaptive with a PID controller at ``rtol``/``atol`` unless
      ``step_size`` is given (``euler`` defaults to ``t1/1000``).
    - ``n_save``: number of evenly spaced saved times in ``[0, t1]``.
    - ``max_steps``: bound on solver steps; hitting it is the status ``max_steps_reached``.
    - ``project``: after every step, project exactly back onto ``Q(delta(0))`` (Prop. 4).

    **Returns:** a :class:`Trajectory`. Failures (``max_steps_reached``,
    ``dt_min_reached``, ``nonfinite``, ``solver_failure``) are its ``status``; nothing raises.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}; got {solver!r}.")
    ts = save_times(t1, n_save, ts)
    _positive("rtol", rtol)
    _positive("atol", atol)
    if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}.")
    if step_size is None and solver in _FIXED_STEP_ONLY:
        step_size = float(ts[-1] - ts[0]) / _DEFAULT_EULER_STEPS
    if step_size is not None:
        _positive("step_size", step_size)
    dtype = ts.dtype
    start = time.perf_counter()
    traj = solve_flow(model, data, get_loss(loss), ts, jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype),
                      jnp.asarray(step_size or 0.0, dtype), solver=solver, max_steps=int(max_steps),
                      project=project, adaptive=step_size is None)
    traj = jax.block_until_ready(traj)
    wall = jnp.asarray(time.perf_counter() - start, dtype)
    return eqx.tree_at(lambda t: t.stats["wall_time"], traj, wall)
