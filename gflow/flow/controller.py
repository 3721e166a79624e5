"""Step-size control that never stalls: PID control with a floor relative to ``t``.

ReLU kinks make the gradient field discontinuous. An adaptive solver rejects steps
near a kink, and in a sliding mode (a pre-activation held at zero by the flow) its step
size can collapse towards the float resolution of ``t``: the solve stalls. The
:class:`FloorPIDController` here wraps Diffrax's ``PIDController`` and keeps every step
at least

    dtmin(t) = max(dtmin, dtmin_rel * max(|t|, t1 - t0)),

accepting a step taken at the floor even when its error estimate is above tolerance
(as Diffrax's ``force_dtmin=True``, whose ``dtmin`` is absolute). Such *forced* steps
are counted in the controller state, so a trajectory reports how many steps were
not error-controlled (``Trajectory.stats["dtmin_steps"]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Bool, Int, Real

__all__ = ["FloorPIDController", "FloorState", "controller_stats", "default_dtmin_rel", "default_max_steps"]


def default_dtmin_rel(dtype) -> float:
    """``100 * eps``: a step of ``dtmin(t)`` still moves ``t`` by about 100 ulps."""
    return float(100 * jnp.finfo(dtype).eps)


def default_max_steps(t_span: float) -> int:
    """Step bound sized to the time span: ``10^4 + 10^3 (t1 - t0)``, rounded up to a power of
    two (so nearby spans share one compiled solve), capped at ``2^24``."""
    need = 10_000 + 1_000 * max(float(t_span), 0.0)
    return int(2 ** min(24, int(np.ceil(np.log2(need)))))


class FloorState(NamedTuple):
    """State of :class:`FloorPIDController`: the PID's own state, whether the proposed next
    step sits at the floor, the number of forced steps so far, and ``t1 - t0``."""

    pid: Any
    at_dtmin: Bool[Array, ""]
    forced: Int[Array, ""]
    span: Real[Array, ""]


class FloorPIDController(diffrax.AbstractAdaptiveStepSizeController):
    """PID step-size control with a step floor ``dtmin(t)`` and counted forced steps.

    Wraps a ``diffrax.PIDController`` (as ``diffrax.ClipStepSizeController`` wraps one).

    **Arguments:**
    - ``rtol``, ``atol``: tolerances of the PID controller (Diffrax's error norm).
    - ``dtmin``: absolute floor (default 0).
    - ``dtmin_rel``: floor relative to ``max(|t|, t1 - t0)``; ``None`` means
      :func:`default_dtmin_rel` of the time dtype.

    **State:** a :class:`FloorState`; :func:`controller_stats` reads it. A step is
    *forced* when it was taken at the floor and its error estimate failed the tolerance
    test: it is accepted anyway.
    """

    pid: diffrax.PIDController
    dtmin: Any
    dtmin_rel: float | None = eqx.field(static=True)

    def __init__(
        self, rtol, atol, dtmin: ArrayLike = 0.0, dtmin_rel: float | None = None, norm: Callable = optx.rms_norm
    ):
        self.pid = diffrax.PIDController(rtol=rtol, atol=atol, norm=norm)
        self.dtmin = dtmin
        self.dtmin_rel = dtmin_rel

    @property
    def rtol(self):  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.pid.rtol

    @property
    def atol(self):  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.pid.atol

    @property
    def norm(self):  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.pid.norm

    def _floor(self, t, span):
        rel = default_dtmin_rel(jnp.result_type(t)) if self.dtmin_rel is None else self.dtmin_rel
        return jnp.maximum(jnp.asarray(self.dtmin, jnp.result_type(t)), rel * jnp.maximum(jnp.abs(t), span))

    def wrap(self, direction):
        return self

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, pid_state = self.pid.init(terms, t0, t1, y0, dt0, args, func, error_order)
        span = jnp.abs(jnp.asarray(t1) - t0)
        tnext = t0 + jnp.maximum(tnext - t0, self._floor(t0, span))
        return tnext, FloorState(pid_state, jnp.array(False), jnp.array(0, jnp.int32), span)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        pid_state, at_dtmin, forced, span = controller_state
        keep, _, next_t1, made_jump, pid_state, result = self.pid.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, pid_state
        )
        dt = next_t1 - jnp.where(keep, t1, t0)  # the PID proposal for the next step
        force = at_dtmin & ~keep
        keep = keep | at_dtmin
        next_t0 = jnp.where(keep, t1, t0)
        floor = self._floor(next_t0, span)
        at_dtmin = jnp.less_equal(dt, floor)
        dt = jnp.maximum(dt, floor)
        state = FloorState(pid_state, at_dtmin, forced + force.astype(jnp.int32), span)
        return keep, next_t0, next_t0 + dt, made_jump, state, result


def controller_stats(controller_state) -> dict:
    """``{"dtmin_steps": forced steps, "located": .., "jumps": ..}`` from a final controller
    state (``SaveAt(controller_state=True)``): :class:`FloorPIDController`'s forced steps and
    :class:`gflow.flow.locate.LocatingController`'s located crossings and pattern jumps
    (zero for controllers that have none)."""
    zero = jnp.zeros((), jnp.int32)
    out = dict(dtmin_steps=zero, located=zero, jumps=zero)
    floor = getattr(controller_state, "floor", controller_state)  # a LocateState holds a FloorState
    if isinstance(floor, FloorState):
        out["dtmin_steps"] = jnp.asarray(floor.forced, jnp.int32)
    if floor is not controller_state:
        out.update(located=controller_state.located, jumps=controller_state.jumps)
    return out
