"""One validated, fully resolved flow: :class:`FlowProblem`, built by :func:`make_problem`.

Every path that integrates ``d theta/dt = -grad L(theta)`` -- the single solve
(:func:`gflow.gradient_flow`), the event path and the batched sweep engine
(:mod:`gflow.flow.batched`) -- takes a ``FlowProblem`` and asks it for the pieces:
``term()``, ``solver(delta)``, ``controller()``, ``saved(y, delta)`` and
``grad_evals(...)``. Nothing else assembles a flow, so the three paths take the same steps.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ..conservation import Conservation, conservation_of
from ..data import Dataset
from ..invariants import project as project_model
from ..losses import get_loss
from ..nets.base import AbstractReLUNet
from ..population import GaussianPopulation
from .controller import FloorPIDController, default_max_steps
from .events import ON_EVENT, parse_events
from .field import flow_field, pattern_field, sliding_field
from .locate import LocatedSolver, LocatingController, Locator, can_locate
from .pinning import PinnedSolver, Pinning, make_pinning
from .wrappers import ForwardingSolver

__all__ = ["FlowProblem", "make_problem", "save_times", "SOLVERS", "KINKS"]

KINKS = ("auto", "none", "pin", "slide", "pin+slide", "locate", "slide+locate", "pin+slide+locate")
_DEFAULT_SLIDE_TOL = 10.0
# a crossing's allowed error, in units of atol + rtol ||w_in||: 0.1 for shallow nets (where
# location is asked for tolerance proportionality: on the toy, 1000 points, t = 10, Tsit5, the error at
# t1 is 2-4.5 rtol from rtol 1e-4 to 1e-10, 12-40 rtol with 1.0, the errors of ~1000 crossings adding
# up), 1.0 for deep nets (0.1 made the MLP (5, 4) of benchmarks/kinks_deep.py take 18241 steps, not 5955)
_DEFAULT_LOCATE_TOL = {True: 0.1, False: 1.0}
_DEFAULT_EULER_STEPS = 1000

SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5,
}


class Projected(ForwardingSolver):
    """Wraps a solver: after every step, project ``y1`` exactly onto ``Q(delta)`` (Prop. 4)."""

    solver: diffrax.AbstractSolver
    delta: jnp.ndarray
    static: object = eqx.field(static=True)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, dense_info, state, result = self.solver.step(terms, t0, t1, y0, args, solver_state, made_jump)
        y1 = project_params(y1, self.static, self.delta)
        if state is not None:  # first-same-as-last: the stored stage is stale after projecting
            state = (jnp.array(True), state[1])
        return y1, y_error, dense_info, state, result


def project_params(params, static, delta):
    """Prop. 4 projection of the parameters onto ``Q(delta)`` (:func:`gflow.project`: the
    cancellation-free closed form for shallow nets, which leaves a pinned neuron with
    ``w = 0`` as it is; Newton's method for MLP and DAG nets)."""
    return eqx.filter(project_model(eqx.combine(params, static), delta), eqx.is_inexact_array)


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


class FlowProblem(eqx.Module):
    """A gradient flow ready to integrate: field, solver, controller, kinks, events, saves.

    Build it with :func:`make_problem` (which validates everything and resolves the kink
    mode); every field is then final. Static fields decide what is compiled; array fields
    (times, tolerances, pinning data) can change without recompiling.

    **Fields:** ``static`` (the network's non-parameter part), ``data``, ``loss_fn``,
    ``ts`` (saved times; the solve runs ``ts[0] -> ts[-1]``), ``rtol``, ``atol``,
    ``step_size`` (fixed step; unused when ``adaptive``), ``base_solver`` (a Diffrax
    solver instance), ``max_steps``, ``project`` (exact projection after every step),
    ``adaptive``, ``pinning`` (:class:`gflow.flow.pinning.Pinning` or ``None``),
    ``slide_tol`` (band factor of the sliding field, or ``None``: the plain field),
    ``dtmin`` (absolute step floor or ``None``), ``locator`` (:class:`gflow.flow.locate.Locator`
    when activation changes are located, else ``None``), ``events``, ``on_event``, ``laws`` (where
    the conserved quantities come from: :class:`gflow.conservation.Conservation`).
    """

    static: object = eqx.field(static=True)
    data: Dataset | GaussianPopulation
    loss_fn: Callable = eqx.field(static=True)
    ts: jnp.ndarray
    rtol: jnp.ndarray
    atol: jnp.ndarray
    step_size: jnp.ndarray
    base_solver: diffrax.AbstractSolver
    max_steps: int = eqx.field(static=True)
    project: bool = eqx.field(static=True)
    adaptive: bool = eqx.field(static=True)
    pinning: Pinning | None
    slide_tol: jnp.ndarray | None
    dtmin: jnp.ndarray | None
    locator: Locator | None
    events: tuple  # event objects: their thresholds are arrays (no recompile for new values)
    on_event: str = eqx.field(static=True)
    laws: Conservation = eqx.field(static=True)

    def conserved(self, model):
        """``c_h`` of ``model`` (an empty vector when no conserved quantities are known)."""
        return self.laws.values(model)

    def with_delta(self, delta) -> FlowProblem:
        """The same problem for a network whose conserved values are ``delta`` (pinning
        depends on them; one problem serves every initialization of a sweep)."""
        if self.pinning is None:
            return self
        return eqx.tree_at(lambda p: p.pinning, self, self.pinning.with_delta(delta))

    def term(self) -> diffrax.ODETerm:
        """``-grad L``, or the Filippov sliding field when ``slide_tol`` is set; with located
        activation changes, the field of the pattern given as ``args``."""
        if self.locator is not None and not getattr(self.static, "kink_handling", False):
            return diffrax.ODETerm(pattern_field(self.static, self.data, self.loss_fn))
        if self.slide_tol is None and self.locator is None:
            return diffrax.ODETerm(flow_field(self.static, self.data, self.loss_fn))
        field = sliding_field(self.static, self.data, self.loss_fn, self.slide_tol, self.rtol, self.atol)
        return diffrax.ODETerm(field)

    def solver(self, delta) -> diffrax.AbstractSolver:
        """The base solver, wrapped to project onto ``Q(delta)`` (if ``project``) and to pin
        collapsed neurons (if ``pinning``)."""
        solver = Projected(self.base_solver, delta, self.static) if self.project else self.base_solver
        solver = PinnedSolver(solver, self.pinning, self.static) if self.pinning is not None else solver
        return LocatedSolver(solver, self.locator) if self.locator is not None else solver

    def controller(self) -> diffrax.AbstractStepSizeController:
        """PID control at ``rtol``/``atol`` with the step floor of
        :class:`gflow.flow.controller.FloorPIDController`, or constant steps."""
        if not self.adaptive:
            return diffrax.ConstantStepSize()
        floor = FloorPIDController(rtol=self.rtol, atol=self.atol, dtmin=0.0 if self.dtmin is None else self.dtmin)
        return floor if self.locator is None else LocatingController(floor, self.locator)

    def saved(self, y, delta):
        """A state as it is saved: projected (if ``project``) and with collapsed neurons
        pinned (if ``pinning``)."""
        if self.project:
            y = project_params(y, self.static, delta)
        if self.pinning is not None:
            y = self.pinning.apply(y, allow_unpin=False)[0]
        return y

    def grad_evals(self, steps, segments: ArrayLike = 1, pins=None, unpins=None, jumps=None):
        """Gradient evaluations of ``steps`` attempted steps in ``segments`` solves (events
        restart a solve). A pin or unpin, and a step that changed the activation pattern
        (``jumps``, located mode), make the first-same-as-last stage stale unless projecting:
        one more evaluation each."""
        per_step, once = evals_per_step(self.base_solver, self.project)
        evals = per_step * steps + once * segments
        if pins is not None and not self.project:
            evals = evals + (pins + unpins) * min(once, 1)
        if jumps is not None and not self.project:
            evals = evals + jumps * min(once, 1)
        return evals


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
    if not (isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}.")


def _solver_instance(solver) -> diffrax.AbstractSolver:
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)} or a diffrax.AbstractSolver; got {solver!r}.")
    return SOLVERS[solver]()


def resolve_kinks(
    kinks: str, model, data, loss_fn, rtol, atol, pin_tol=None, slide_tol=None, adaptive=True, implicit=False
):
    """``(pinning, slide_tol, locate)`` of a ``kinks`` mode.

    ``"pin"``: pin collapsed neurons (:class:`gflow.flow.pinning.Pinning`); ``"slide"``: the
    Filippov field on attractive kinks (:func:`gflow.flow.field.sliding_field`);
    ``"locate"``: end steps at the activation changes the tolerance does not absorb
    (:mod:`gflow.flow.locate`); combinations joined by ``+``; ``"none"``: the plain field.
    Pinning and sliding need a network with ``kink_handling`` (one hidden layer:
    ``ShallowReLU``; ``ValueError`` otherwise, or when the exact escape check of ``"pin"`` is
    too large, see :func:`gflow.flow.pinning.escape_oracle`); location needs an
    :class:`gflow.AbstractReLUNet` with ``masked_forward``, adaptive steps and an explicit
    solver (Diffrax hands an implicit solver's root finder its tolerances only unwrapped). ``"auto"``:
    ``"pin+slide"`` for a ``kink_handling`` network with adaptive steps (without ``pin`` when
    the escape check is too large), ``"locate"`` for other ReLU networks with adaptive steps,
    ``"none"`` otherwise (fixed steps: their chatter the tolerance bands do not bound). Shallow
    nets locate only when asked (``"pin+slide+locate"``): it makes the error at ``t1``
    proportional to the tolerance on breast cancer (2.2-4.4 rtol against 31-5800 rtol), but on the
    toy's 8000 points it costs far more steps (``t1 = 100``, rtol 1e-5, 32 inits: mean 1933
    against 114 steps), see docs/guides/exact-flows.md.
    A Gaussian population (``data.is_population``) has a smooth loss and no training points:
    ``"auto"`` is ``"none"`` there, and the other modes raise ``ValueError``.
    """
    if kinks not in KINKS:
        raise ValueError(f"kinks must be one of {', '.join(KINKS)}; got {kinks!r}.")
    dtype = jnp.result_type(float)
    slide = jnp.asarray(_DEFAULT_SLIDE_TOL if slide_tol is None else slide_tol, dtype)
    handled = getattr(model, "kink_handling", False)
    if getattr(data, "is_population", False):  # a closed-form expectation is smooth: no data kinks
        if kinks not in ("auto", "none"):
            raise ValueError(
                f"kinks={kinks!r} acts on the kinks of training points; a Gaussian population loss has none "
                "(it is smooth), so use kinks='auto' or 'none'."
            )
        return None, None, False
    locatable = isinstance(model, AbstractReLUNet) and not implicit and can_locate(model)
    if kinks == "none" or (kinks == "auto" and not adaptive):
        return None, None, False
    if kinks == "auto":
        if not handled:
            return None, None, locatable
        try:
            return make_pinning(model, data, loss_fn, rtol, atol, pin_tol), slide, False
        except ValueError:
            return None, slide, False
    parts = kinks.split("+")
    if ("pin" in parts or "slide" in parts) and not handled:
        raise ValueError(f"kinks={kinks!r} supports ShallowReLU models only, got {type(model).__name__}.")
    if "locate" in parts and not locatable:
        raise ValueError(
            f"kinks={kinks!r} needs an explicit solver and a ReLU network implementing "
            f"gflow.AbstractReLUNet.masked_forward, got {type(model).__name__}."
        )
    if "locate" in parts and not adaptive:
        raise ValueError(f"kinks={kinks!r} needs adaptive steps (no step_size).")
    pinning = make_pinning(model, data, loss_fn, rtol, atol, pin_tol) if "pin" in parts else None
    return pinning, (slide if "slide" in parts else None), "locate" in parts


def make_problem(
    model,
    data: Dataset | GaussianPopulation,
    loss,
    t1=None,
    *,
    solver: str | diffrax.AbstractSolver = "tsit5",
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
    conserved: Callable | None = None,
) -> FlowProblem:
    """Validate every option of :func:`gflow.gradient_flow` and resolve it into a
    :class:`FlowProblem` for ``model`` (its static part, and its conserved values for the
    kink handling). The arguments are those of :func:`gflow.gradient_flow`; ``ValueError``
    with one sentence naming the option on bad input."""
    base = _solver_instance(solver)
    ts = save_times(t1, n_save, ts)
    _positive("rtol", rtol)
    _positive("atol", atol)
    if max_steps is None:
        max_steps = default_max_steps(float(ts[-1] - ts[0]))
    if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}.")
    if step_size is None and not isinstance(base, diffrax.AbstractAdaptiveSolver):
        step_size = float(ts[-1] - ts[0]) / _DEFAULT_EULER_STEPS
    if step_size is not None:
        _positive("step_size", step_size)
        if isinstance(base, diffrax.AbstractImplicitSolver):
            raise ValueError(
                f"step_size (fixed steps) cannot be used with the implicit solver {type(base).__name__}: "
                "its nonlinear solves take their tolerances from adaptive stepping."
            )
    if pin_tol is not None:
        _positive("pin_tol", pin_tol)
    if slide_tol is not None:
        _positive("slide_tol", slide_tol)
    real = isinstance(dtmin, (int, float, np.integer, np.floating))
    if dtmin is not None and not (real and np.isfinite(dtmin) and dtmin >= 0):
        raise ValueError(f"dtmin must be a non-negative number, got {dtmin!r}.")
    events = parse_events(events)
    laws = conservation_of(model, conserved)
    if not isinstance(model, AbstractReLUNet):
        if project:
            raise ValueError(
                f"project=True rescales hidden units: it needs a network implementing gflow.AbstractReLUNet, got "
                f"{type(model).__name__}."
            )
        structural = [e.name for e in events if e.name in ("output_sign_change", "neuron_dies")]
        if structural:
            raise ValueError(
                f"event {structural[0]} reads hidden units: it needs a network implementing gflow.AbstractReLUNet, "
                f"got {type(model).__name__}."
            )
    if getattr(data, "is_population", False) and any(e.name == "neuron_dies" for e in events):
        raise ValueError(
            "event neuron_dies reads pre-activations on training points; a Gaussian population has none "
            "(a bias-free unit is inactive on all inputs only at w = 0, a set the flow crosses, not enters)."
        )
    if on_event not in ON_EVENT:
        raise ValueError(f"on_event must be one of {', '.join(ON_EVENT)}; got {on_event!r}.")
    loss_fn = get_loss(loss)
    adaptive = step_size is None
    implicit = isinstance(base, diffrax.AbstractImplicitSolver)
    pinning, slide, locate = resolve_kinks(
        kinks, model, data, loss_fn, rtol, atol, pin_tol, slide_tol, adaptive, implicit
    )
    dtype = ts.dtype
    static = eqx.partition(model, eqx.is_inexact_array)[1]
    locator = None
    if locate and isinstance(data, Dataset):  # never a population (resolve_kinks)
        locator = Locator(
            static=static,
            x=data.x_train,
            y=data.y_train,
            loss_fn=loss_fn,
            locate_tol=jnp.asarray(_DEFAULT_LOCATE_TOL[bool(getattr(model, "kink_handling", False))], dtype),
            slide_tol=slide,
            rtol=jnp.asarray(rtol, dtype),
            atol=jnp.asarray(atol, dtype),
        )
    return FlowProblem(
        static=static,
        data=data,
        loss_fn=loss_fn,
        ts=ts,
        rtol=jnp.asarray(rtol, dtype),
        atol=jnp.asarray(atol, dtype),
        step_size=jnp.asarray(step_size or 0.0, dtype),
        base_solver=base,
        max_steps=int(max_steps),
        project=project,
        adaptive=adaptive,
        pinning=pinning,
        slide_tol=slide,
        dtmin=None if dtmin is None else jnp.asarray(dtmin, dtype),
        locator=locator,
        events=events,
        on_event=on_event,
        laws=laws,
    )
