"""The exact gradient flow ``d theta/dt = -grad L(theta)``, integrated with Diffrax."""

from __future__ import annotations

import time
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .wrappers import ForwardingSolver
from .controller import FloorPIDController, controller_stats, default_max_steps
from .events import ON_EVENT, make_context, parse_events, solve_with_events
from ..invariants import conserved
from ..invariants import project as project_model
from .kinks import PinnedSolver, activation_stats, make_pinning, pin_stats, sliding_field
from ..losses import full_batch_loss, get_loss
from ..nets.models import ShallowReLU
from ..trajectory import Status, Trajectory, evaluate

__all__ = ["gradient_flow", "SOLVERS", "KINKS", "full_batch_loss", "flow_field"]

KINKS = ("auto", "none", "pin", "slide", "pin+slide")
_DEFAULT_SLIDE_TOL = 10.0

SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5,
}
_FIXED_STEP_ONLY = {"euler"}
_IMPLICIT = {"kvaerno5"}
_DEFAULT_EULER_STEPS = 1000


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


class _Projected(ForwardingSolver):
    """Wraps a solver: after every step, project ``y1`` exactly onto ``Q(delta)`` (Prop. 4)."""

    solver: diffrax.AbstractSolver
    delta: jax.Array
    static: object = eqx.field(static=True)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, dense_info, state, result = self.solver.step(terms, t0, t1, y0, args, solver_state, made_jump)
        y1 = project_params(y1, self.static, self.delta)
        if state is not None:  # first-same-as-last: the stored stage is stale after projecting
            state = (jnp.array(True), state[1])
        return y1, y_error, dense_info, state, result


def project_params(params, static, delta):
    """Prop. 4 projection of the parameters onto ``Q(delta)`` (:func:`gflow.invariants.project`:
    the cancellation-free closed form for shallow nets, which leaves a pinned neuron with
    ``w = 0`` as it is; Newton's method for MLP and DAG nets)."""
    return eqx.filter(project_model(eqx.combine(params, static), delta), eqx.is_inexact_array)


def build_solver(solver: str, project: bool, delta, static, *, pinning=None) -> diffrax.AbstractSolver:
    """The Diffrax solver ``solver``, wrapped to project onto ``Q(delta)`` if ``project``, and
    to pin collapsed neurons (:class:`gflow.kinks.PinnedSolver`) if ``pinning`` is given."""
    base = SOLVERS[solver]()
    base = _Projected(base, delta, static) if project else base
    return PinnedSolver(base, pinning, static) if pinning is not None else base


def _unwrap(solver):
    while isinstance(solver, (PinnedSolver, _Projected)):
        solver = solver.solver
    return solver


def build_controller(rtol, atol, adaptive: bool, *, dtmin=None, dtmin_rel=None) -> diffrax.AbstractStepSizeController:
    """PID step-size control at ``rtol``/``atol`` with a floor ``dtmin(t) = max(dtmin,
    dtmin_rel * max(|t|, t1 - t0))`` (forced, counted steps: :class:`FloorPIDController`),
    or constant steps. ``dtmin=None`` means 0, ``dtmin_rel=None`` means ``100 eps``."""
    if not adaptive:
        return diffrax.ConstantStepSize()
    return FloorPIDController(rtol=rtol, atol=atol, dtmin=0.0 if dtmin is None else dtmin, dtmin_rel=dtmin_rel)


def flow_status(result) -> Status:
    R = diffrax.RESULTS
    status = Status.where(result == R.max_steps_reached, Status.max_steps_reached, Status.solver_failure)
    status = Status.where(result == R.dt_min_reached, Status.dt_min_reached, status)
    status = Status.where(result == R.event_occurred, Status.event_occurred, status)
    return Status.where(result == R.successful, Status.successful, status)


@eqx.filter_jit
def solve_flow(
    model,
    data,
    loss_fn,
    ts,
    rtol,
    atol,
    step_size,
    *,
    solver: str,
    max_steps: int,
    project: bool,
    adaptive: bool,
    pinning=None,
    slide_tol=None,
    dtmin=None,
    events=(),
    on_event: str = "stop",
) -> Trajectory:
    """Jitted core of :func:`gradient_flow` (no validation, no wall time); vmap-friendly.

    ``pinning``: a :class:`gflow.kinks.Pinning` (from :func:`gflow.kinks.make_pinning`) or
    ``None``; ``slide_tol``: band factor of :func:`gflow.kinks.sliding_field` (array; a
    ``ShallowReLU`` only) or ``None`` for the plain field; ``dtmin``: absolute step floor
    (array) or ``None`` (relative floor only); ``events``: a tuple of :mod:`gflow.events`
    objects, with ``on_event`` ``"stop"`` or ``"record"``.
    """
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if slide_tol is not None:
        term = diffrax.ODETerm(sliding_field(static, data, loss_fn, slide_tol, rtol, atol))
    else:
        term = diffrax.ODETerm(flow_field(static, data, loss_fn))
    delta = conserved(model)
    base = build_solver(solver, project, delta, static, pinning=pinning)

    def save_fn(t, y, args):
        if project:
            y = project_params(y, static, delta)
        if pinning is not None:
            y = pinning.apply(y, allow_unpin=False)[0]
        return y

    controller = build_controller(rtol, atol, adaptive, dtmin=dtmin)
    dtype = ts.dtype
    zero = jnp.zeros((), jnp.int32)

    def stats_of(sol):
        out = dict(
            steps=sol.stats["num_steps"],
            accepted=sol.stats["num_accepted_steps"],
            rejected=sol.stats["num_rejected_steps"],
            **controller_stats(sol.controller_state),
        )
        if pinning is not None:
            _, (pins, unpins, first_pin) = sol.solver_state
            out.update(pins=pins, unpins=unpins, first_pin_time=first_pin)
        return out

    if events:
        ctx = make_context(model, data, loss_fn, term.vector_field)
        stats_zero = dict(steps=zero, accepted=zero, rejected=zero, dtmin_steps=zero)
        if pinning is not None:
            stats_zero.update(pins=zero, unpins=zero, first_pin_time=jnp.asarray(jnp.inf, dtype))
        ys, ts_out, counters, segments, result, event_stats = solve_with_events(
            term,
            base,
            controller,
            ts,
            params,
            save_fn,
            max_steps,
            events,
            ctx,
            on_event,
            stats_of,
            stats_zero,
            dt0=None if adaptive else step_size,
        )
    else:
        sol = diffrax.diffeqsolve(
            term,
            base,
            t0=ts[0],
            t1=ts[-1],
            dt0=None if adaptive else step_size,
            y0=params,
            saveat=diffrax.SaveAt(ts=ts, fn=save_fn, solver_state=True, controller_state=True),
            stepsize_controller=controller,
            max_steps=max_steps,
            throw=False,
            adjoint=diffrax.ForwardMode(),
        )
        ys, ts_out, counters, segments, result = sol.ys, ts, stats_of(sol), 1, sol.result
        event_stats = dict(event=jnp.asarray(-1, jnp.int32), event_time=jnp.asarray(jnp.inf, dtype))
    per_step, once = evals_per_step(_unwrap(base), project)
    stats = dict(
        steps=counters["steps"],
        accepted=counters["accepted"],
        rejected=counters["rejected"],
        grad_evals=per_step * counters["steps"] + once * segments,
        wall_time=jnp.zeros((), dtype),
        dtmin_steps=counters["dtmin_steps"],
    )
    kink = dict(pins=zero, unpins=zero, pinned=zero, first_pin_time=jnp.asarray(jnp.inf, dtype))
    if pinning is not None:
        final = jax.tree_util.tree_map(lambda a: a[-1], ys)
        kink = pin_stats((None, (counters["pins"], counters["unpins"], counters["first_pin_time"])), final, delta)
        if not project:  # a pin or unpin makes the first-same-as-last stage stale: one more evaluation
            stats["grad_evals"] = stats["grad_evals"] + (kink["pins"] + kink["unpins"]) * min(once, 1)
    stats.update(kink)
    models = eqx.combine(ys, static)
    stats.update(activation_stats(models, data.x_train))
    stats.update(event_stats)
    return evaluate(ts_out, models, data, loss_fn, stats, flow_status(result))


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


def resolve_kinks(kinks: str, model, data, loss_fn, rtol, atol, pin_tol=None, slide_tol=None, adaptive=True):
    """``(pinning, slide_tol)`` for :func:`solve_flow` from a ``kinks`` mode.

    ``"pin"``: pin collapsed neurons (:class:`gflow.kinks.Pinning`); ``"slide"``: the Filippov
    field on attractive kinks (:func:`gflow.kinks.sliding_field`); ``"pin+slide"``: both;
    ``"none"``: the plain field. Both need a ``ShallowReLU`` (``ValueError`` otherwise, or
    when the exact escape check of ``"pin"`` is too large, see
    :func:`gflow.kinks.escape_oracle`). ``"auto"``: ``"pin+slide"`` for a ``ShallowReLU``
    with adaptive steps (``"slide"`` when the escape check is too large), ``"none"`` for
    other networks and for fixed steps (whose chatter the tolerance bands do not bound).
    """
    if kinks not in KINKS:
        raise ValueError(f"kinks must be one of {', '.join(KINKS)}; got {kinks!r}.")
    dtype = jnp.result_type(float)
    slide = jnp.asarray(_DEFAULT_SLIDE_TOL if slide_tol is None else slide_tol, dtype)
    if kinks == "none" or (kinks == "auto" and not (adaptive and isinstance(model, ShallowReLU))):
        return None, None
    if kinks == "auto":
        try:
            return make_pinning(model, data, loss_fn, rtol, atol, pin_tol), slide
        except ValueError:
            return None, slide
    if not isinstance(model, ShallowReLU):
        raise ValueError(f"kinks={kinks!r} supports ShallowReLU models only, got {type(model).__name__}.")
    pinning = make_pinning(model, data, loss_fn, rtol, atol, pin_tol) if "pin" in kinks else None
    return pinning, (slide if "slide" in kinks else None)


def gradient_flow(
    model,
    data,
    loss,
    t1=None,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    n_save: int = 101,
    ts=None,
    max_steps: int | None = None,
    project: bool = False,
    step_size: float | None = None,
    kinks: str = "auto",
    pin_tol: float | None = None,
    slide_tol: float | None = None,
    dtmin: float | None = None,
    events=None,
    on_event: str = "stop",
) -> Trajectory:
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
      Default :func:`gflow.controller.default_max_steps` of ``t1 - t0`` (about ``10^3`` per
      unit time).
    - ``project``: after every step, project exactly back onto ``Q(delta(0))`` (Prop. 4).
    - ``kinks``: how ReLU kinks are integrated (:mod:`gflow.kinks`). ``"pin"``: a collapsed
      neuron is pinned at ``w = 0`` while the Clarke flow keeps it there; ``"slide"``: the
      Filippov sliding field on attractive kinks; ``"pin+slide"``: both; ``"none"``: the
      plain field ``-grad L``. ``"auto"`` (default): ``"pin+slide"`` for a ``ShallowReLU``
      with adaptive steps (``"slide"`` if its escape check is too large to tabulate),
      ``"none"`` otherwise.
    - ``pin_tol``: a neuron with ``delta < 0`` is a pin candidate when
      ``||w|| <= pin_tol sqrt(-delta)``; default ``sqrt(max(rtol, atol))``.
    - ``slide_tol``: a kink ``w_k . z_j = 0`` is reached when ``|w_k . z_j| <=
      slide_tol (atol + rtol ||w_k||) |z_j|``; default 10.
    - ``dtmin``: absolute floor on the step size. Whatever it is, steps never go below
      ``100 eps max(|t|, t1 - t0)``; steps at the floor are accepted and counted in
      ``stats["dtmin_steps"]`` (:class:`gflow.controller.FloorPIDController`).

    - ``events``: events to watch (:mod:`gflow.events`): objects (``gf.LossBelow(1e-3)``,
      ``gf.GradNormBelow(1e-6)``, ``gf.OutputSignChange()``, ``gf.NeuronDies()``), names
      (``"neuron_dies"``), ``(name, threshold)`` pairs or ``"loss_below=1e-3"`` strings.
    - ``on_event``: ``"stop"`` (end the solve at the first event; status ``event_occurred``,
      saved times after it clamped to the event time) or ``"record"`` (record each event's
      first time and continue to ``t1``). Times: ``stats["event"]`` (index of the first
      event, -1 if none), ``stats["event_time"]``, ``stats["t_<name>"]`` per event.

    **Returns:** a :class:`Trajectory`. Failures (``max_steps_reached``,
    ``dt_min_reached``, ``nonfinite``, ``solver_failure``) are its ``status``; nothing raises.
    ``stats`` also holds the kink diagnostics: ``dtmin_steps``, ``pattern_changes``,
    ``max_flips``, ``sliding``, ``pins``, ``unpins``, ``pinned``, ``first_pin_time``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}; got {solver!r}.")
    ts = save_times(t1, n_save, ts)
    _positive("rtol", rtol)
    _positive("atol", atol)
    if max_steps is None:
        max_steps = default_max_steps(float(ts[-1] - ts[0]))
    if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}.")
    if step_size is None and solver in _FIXED_STEP_ONLY:
        step_size = float(ts[-1] - ts[0]) / _DEFAULT_EULER_STEPS
    if step_size is not None:
        _positive("step_size", step_size)
        if issubclass(SOLVERS[solver], diffrax.AbstractImplicitSolver):
            raise ValueError(
                f"step_size (fixed steps) cannot be used with the implicit solver {solver}: "
                "its nonlinear solves take their tolerances from adaptive stepping."
            )
    if pin_tol is not None:
        _positive("pin_tol", pin_tol)
    if slide_tol is not None:
        _positive("slide_tol", slide_tol)
    if dtmin is not None and not (np.isscalar(dtmin) and np.isfinite(dtmin) and dtmin >= 0):
        raise ValueError(f"dtmin must be a non-negative number, got {dtmin!r}.")
    events = parse_events(events)
    if on_event not in ON_EVENT:
        raise ValueError(f"on_event must be one of {', '.join(ON_EVENT)}; got {on_event!r}.")
    loss_fn = get_loss(loss)
    pinning, slide = resolve_kinks(
        kinks, model, data, loss_fn, rtol, atol, pin_tol, slide_tol, adaptive=step_size is None
    )
    dtype = ts.dtype
    start = time.perf_counter()
    traj = solve_flow(
        model,
        data,
        loss_fn,
        ts,
        jnp.asarray(rtol, dtype),
        jnp.asarray(atol, dtype),
        jnp.asarray(step_size or 0.0, dtype),
        solver=solver,
        max_steps=int(max_steps),
        project=project,
        adaptive=step_size is None,
        pinning=pinning,
        slide_tol=slide,
        dtmin=None if dtmin is None else jnp.asarray(dtmin, dtype),
        events=events,
        on_event=on_event,
    )
    traj = jax.block_until_ready(traj)
    wall = jnp.asarray(time.perf_counter() - start, dtype)
    return eqx.tree_at(lambda t: t.stats["wall_time"], traj, wall)
