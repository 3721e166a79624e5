"""The exact gradient flow ``d theta/dt = -grad L(theta)`` of one network: :func:`gradient_flow`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike

from .._callbacks import checks_as_data
from .._jit import jit
from .._traces import cached_trace
from ..conservation import warn_if_absent
from ..data import Dataset
from ..nets.base import AbstractReLUNet
from ..population import GaussianPopulation
from ..trajectory import Trajectory, evaluate, flow_status
from .activations import activation_stats
from .controller import controller_stats
from .events import make_context, solve_with_events
from .pinning import pin_stats
from .problem import FlowProblem, make_problem
from .steady import (
    STEADY_MAX_STEPS,
    check_steady,
    classify_end,
    default_gtol,
    endpoint_stats,
    is_inf,
    steady_events,
    steady_times,
)

__all__ = ["gradient_flow", "solve_flow"]


@cached_trace
@jit
def solve_flow(problem: FlowProblem, model) -> Trajectory:
    """Integrate ``problem`` from ``model`` (jitted; no validation, no wall time; vmap-friendly).

    The core of :func:`gradient_flow`: one Diffrax solve (or, with events, one per segment,
    :func:`gflow.flow.events.solve_with_events`) of ``problem.term()`` with
    ``problem.solver(delta)`` and ``problem.controller()``, saving ``problem.saved(y)`` at
    ``problem.ts``. The program holds no host callback (:func:`gflow._callbacks.checks_as_data`),
    so the persistent compilation cache keeps it.
    """
    with checks_as_data():
        return _solve_flow(problem, model)


def _solve_flow(problem: FlowProblem, model) -> Trajectory:
    params, static = eqx.partition(model, eqx.is_inexact_array)
    term = problem.term()
    delta = problem.conserved(model)
    base = problem.solver(delta)
    pinning = problem.pinning
    ts = problem.ts

    def save_fn(t, y, args):
        return problem.saved(y, delta)

    controller = problem.controller()
    dt0 = None if problem.adaptive else problem.step_size
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

    if problem.events:
        ctx = make_context(model, problem.data, problem.loss_fn, term.vector_field)
        stats_zero = dict(steps=zero, accepted=zero, rejected=zero, dtmin_steps=zero, located=zero, jumps=zero)
        if pinning is not None:
            stats_zero.update(pins=zero, unpins=zero, first_pin_time=jnp.asarray(jnp.inf, dtype))
        ys, ts_out, counters, segments, result, event_stats = solve_with_events(
            problem, term, base, params, save_fn, ctx, stats_of, stats_zero
        )
    else:
        sol = diffrax.diffeqsolve(
            term,
            base,
            t0=ts[0],
            t1=ts[-1],
            dt0=dt0,
            y0=params,
            saveat=diffrax.SaveAt(ts=ts, fn=save_fn, solver_state=True, controller_state=True),
            stepsize_controller=controller,
            max_steps=problem.max_steps,
            throw=False,
            adjoint=diffrax.ForwardMode(),
        )
        ys, ts_out, counters, segments, result = sol.ys, ts, stats_of(sol), 1, sol.result
        event_stats = dict(event=jnp.asarray(-1, jnp.int32), event_time=jnp.asarray(jnp.inf, dtype))
    stats = dict(
        steps=counters["steps"],
        accepted=counters["accepted"],
        rejected=counters["rejected"],
        grad_evals=problem.grad_evals(
            counters["steps"], segments, counters.get("pins"), counters.get("unpins"), counters.get("jumps")
        ),
        wall_time=jnp.zeros((), dtype),
        dtmin_steps=counters["dtmin_steps"],
        located=counters["located"],
        jumps=counters["jumps"],
    )
    kink = dict(pins=zero, unpins=zero, pinned=zero, first_pin_time=jnp.asarray(jnp.inf, dtype))
    if pinning is not None:
        final = jax.tree_util.tree_map(lambda a: a[-1], ys)
        kink = pin_stats((None, (counters["pins"], counters["unpins"], counters["first_pin_time"])), final, delta)
    stats.update(kink)
    models = eqx.combine(ys, static)
    if not isinstance(problem.data, Dataset):  # a population: no training points, no pattern to flip
        stats.update(pattern_changes=zero, max_flips=zero, sliding=jnp.zeros((), bool))
    elif isinstance(model, AbstractReLUNet):  # hidden pre-activations: the interface only
        stats.update(activation_stats(models, problem.data.x_train))
    stats.update(event_stats)
    return evaluate(ts_out, models, problem.data, problem.loss_fn, stats, flow_status(result), problem.laws)


def gradient_flow(
    model: eqx.Module,
    data: Dataset | GaussianPopulation,
    loss: str | Callable,
    t1: float | None = None,
    *,
    solver: str | diffrax.AbstractSolver = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    n_save: int = 101,
    ts: ArrayLike | None = None,
    max_steps: int | None = None,
    project: bool = False,
    step_size: float | None = None,
    kinks: str = "auto",
    pin_tol: float | None = None,
    slide_tol: float | None = None,
    dtmin: float | None = None,
    events: Sequence | None = None,
    on_event: str = "stop",
    conserved: Callable | None = None,
    gtol: float | None = None,
    t_max: float = 1e5,
    classify: dict | None = None,
) -> Trajectory:
    """Integrate the exact gradient flow ``d theta/dt = -grad L(theta)`` from ``model``.

    ``L`` is ``data.loss(model, loss)``: the full-batch ``loss`` (a name or a callable
    ``(pred, y) -> scalar``) on ``data.x_train``, or for a :class:`gflow.GaussianPopulation`
    the expected loss in closed form (a smooth loss: kink handling is off). Along the exact
    flow every ``c_h`` of :func:`gflow.conserved` is constant (docs/theory.md §1-2); the
    trajectory records them so the solver's drift shows.

    **Arguments:**
    - ``t1``: final time (or give ``ts``, the saved times; the solve runs ``ts[0] -> ts[-1]``).
      ``t1=float("inf")``: integrate to convergence (:mod:`gflow.flow.steady`): until
      ``||grad L|| <= gtol`` (default ``max(1e-6, 100 max(rtol, atol))``, what the solver
      can resolve; the event ``grad_norm_below``, index 0 of the events) or ``t = t_max``
      (default ``1e5``; ``max_steps`` default ``2^18``), saving at 0 and ``n_save - 1``
      log-spaced times; then Newton-polish and classify the end point with
      :func:`gflow.classify_endpoint` (``classify``: its keyword options; ``min_loss``
      defaults to the population's ``noise^2 e / 2``, else 0). The result is in
      ``Trajectory.endpoint`` and, as numbers, in ``stats`` (``grad_norm_final``,
      ``hess_min``, ``n_negative``, ``n_zero``, ``critical``, ``converged``, ...).
    - ``solver``: one of ``euler`` (fixed step), ``heun``, ``tsit5``, ``dopri5``, ``dopri8``,
      ``kvaerno5`` (implicit), or any ``diffrax.AbstractSolver`` instance. Adaptive with a PID
      controller at ``rtol``/``atol`` unless ``step_size`` is given (``euler`` defaults to ``t1/1000``).
    - ``n_save``: number of evenly spaced saved times in ``[0, t1]``.
    - ``max_steps``: bound on solver steps; hitting it is the status ``max_steps_reached``.
      Default :func:`gflow.controller.default_max_steps` of ``t1 - t0`` (about ``10^3`` per
      unit time).
    - ``project``: after every step, project exactly back onto ``Q(delta(0))`` (Prop. 4).
    - ``kinks``: how ReLU kinks are integrated (:mod:`gflow.kinks`). ``"pin"``: a collapsed
      neuron is pinned at ``w = 0`` while the Clarke flow keeps it there; ``"slide"``: the
      Filippov sliding field on attractive kinks; ``"locate"``: steps end at the activation
      changes whose jump the tolerance does not absorb, and the next step starts a new smooth
      piece (:mod:`gflow.flow.locate`); combinations ``"pin+slide"``, ``"slide+locate"``,
      ``"pin+slide+locate"``; ``"none"``: the plain field ``-grad L``. ``"auto"`` (default):
      ``"pin+slide+locate"`` for a ``ShallowReLU`` with adaptive steps (without ``pin`` if its
      escape check is too large to tabulate), ``"locate"`` for other ReLU networks with
      adaptive steps, ``"none"`` otherwise.
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

    - ``conserved``: a callable ``model -> array`` of conserved quantities, used instead of
      the built-in ones. ``model`` can be any ``eqx.Module`` (its inexact arrays are the
      parameters); without ``conserved``, its quantities come from the ReLU-network interface
      or a recognized Equinox structure (:mod:`gflow.conservation`), and otherwise the
      trajectory's ``conserved`` is ``None`` and a :class:`gflow.NoConservedQuantities`
      warning says why. Kink handling, projection and the output-sign / neuron events need
      :class:`gflow.AbstractReLUNet`.

    **Returns:** a :class:`Trajectory`. Failures (``max_steps_reached``,
    ``dt_min_reached``, ``nonfinite``, and the nonlinear-solver failures of implicit methods)
    are its ``status``; nothing raises.
    ``stats`` also holds the kink diagnostics: ``dtmin_steps``, ``located``, ``jumps``, ``pattern_changes``,
    ``max_flips``, ``sliding``, ``pins``, ``unpins``, ``pinned``, ``first_pin_time``.
    """
    steady = is_inf(t1)
    if steady:
        gtol = default_gtol(rtol, atol) if gtol is None else gtol
        check_steady(gtol, t_max, ts, on_event)
        ts, t1, events = steady_times(t_max, n_save), None, steady_events(gtol, events)
        max_steps = STEADY_MAX_STEPS if max_steps is None else max_steps
    problem = make_problem(
        model, data, loss, t1, solver=solver, rtol=rtol, atol=atol, n_save=n_save, ts=ts, max_steps=max_steps,
        project=project, step_size=step_size, kinks=kinks, pin_tol=pin_tol, slide_tol=slide_tol, dtmin=dtmin,
        events=events, on_event=on_event, conserved=conserved,
    )  # fmt: skip
    warn_if_absent(problem.laws, model)
    start = time.perf_counter()
    traj = jax.block_until_ready(solve_flow(problem, model))
    wall = jnp.asarray(time.perf_counter() - start, problem.ts.dtype)
    traj = eqx.tree_at(lambda t: t.stats["wall_time"], traj, wall)
    if steady:
        end = classify_end(traj.final, data, loss, classify)
        numbers = {k: jnp.asarray(v) for k, v in endpoint_stats(end).items() if k != "endpoint"}
        numbers["converged"] = traj.stats["event"] == 0
        traj = eqx.tree_at(
            lambda t: (t.stats, t.endpoint), traj, ({**traj.stats, **numbers}, end), is_leaf=lambda x: x is None
        )
    return traj
