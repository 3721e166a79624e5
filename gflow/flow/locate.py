r"""Located activation changes: integrate a ReLU flow one smooth piece at a time.

Between two changes of the activation pattern ``P_kj = [z_kj > 0]`` (unit k, training
point j, ``z_kj`` its pre-activation) the flow ``d theta/dt = -grad L`` is the flow of a
polynomial field, the network with every ``relu(z_kj)`` replaced by ``P_kj z_kj``. Where
some ``z_kj`` changes sign the field jumps, by ``J_kj = |s_kj| |u_kj|`` in unit k's incoming
block (``s_kj = dL/d relu(z_kj)``, the signal reaching the unit; ``u_kj`` its input vector, so
``dz_kj/dw_in(k) = u_kj``). A Runge-Kutta step across the jump has an error of order
``J_kj dt`` whatever the tolerance: the solver rejects, shrinks, and chatters through.

Here each step integrates the field of the pattern at its start, continued smoothly past
the kinks (:class:`LocatedSolver`: the pattern is Diffrax's ``args`` of the fields of
:mod:`gflow.flow.field`). After the step, :class:`LocatingController` compares the
pattern at both ends. A pair that changed sign was continued past its kink for a time
``tau = dt |z1| / |z1 - z0|`` (secant on the smooth piece), which puts an error
``J_kj tau`` into ``w_in(k)``, ``J_kj`` taken at the step's end as the larger of its values on
the piece (continued past the kink) and on the true side: at the kink itself the jump can
vanish (a point whose residual is 0 there, as where the toy's target is 0 and no other unit
is active: the field is continuous, its derivative is not) while the piece drifts from the
true field as it goes on past the kink (measured: taking ``J`` on the true side only, located
Tsit5 and Dopri8 at rtol 1e-12 ended 1e-8 apart on the toy at t = 2; now 1e-12).
When that exceeds ``locate_tol (atol + rtol ||w_in(k)||)``
the step is rejected and retried to end just past the first such crossing (half the
allowed error past it, by the secant); otherwise it is accepted (crossings whose jump the
tolerance absorbs -- the ``O(1/n)`` ones of a single point among many -- cost nothing).
A pair that the previous accepted step took across its kink is not located again (it
chatters on an attractive kink: without the sliding field, deep nets, the error control
handles it as it does for the plain field), and without the sliding field neither is one
that crossed within that allowed time of the step's start (on its kink already), so a
sliding mode never makes a sequence of ever shorter steps -- except, once per pair, a pair
that a located step was aimed at and fell short of (its secant time), which the next step
would otherwise integrate on the wrong side's field all along. With the sliding field (which
holds pairs on attractive kinks in its band) every other crossing is located, also one
right at the step's start: a pair that a located step left just short of its kink (its
secant time having fallen short) would otherwise run a whole step on the wrong side.
An accepted step that changed the pattern is a jump (``made_jump``): the next step starts
a new piece with a fresh first stage. Pairs inside the sliding band of
:func:`gflow.flow.field.sliding_field` are left to the sliding field.

Counted in the controller state: ``located`` (steps rejected to locate a crossing) and
``jumps`` (accepted steps that changed the pattern; each costs one more evaluation of a
first-same-as-last solver).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

from .controller import FloorPIDController, FloorState
from .wrappers import ForwardingSolver

__all__ = ["Locator", "LocatedSolver", "LocatingController", "LocateState", "can_locate"]


def can_locate(model) -> bool:
    """Whether ``model`` implements ``masked_forward`` (the ReLU interface's smooth pieces)."""
    try:
        params = eqx.filter(model, eqx.is_inexact_array)
        x = jnp.zeros((getattr(model, "in_size", 1),), jax.tree_util.tree_leaves(params)[0].dtype)
        eqx.filter_eval_shape(lambda m, x: m.masked_forward(x), model, x)
        return True
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        return False


class Locator(eqx.Module):
    """Pre-activations, signals and input norms of a ReLU net on the training data.

    **Fields:** ``static`` (the network's non-parameter part), ``x``, ``y`` (training data),
    ``loss_fn``, ``locate_tol``, ``slide_tol`` (sliding band factor, or ``None``), ``rtol``,
    ``atol``.
    """

    static: Any = eqx.field(static=True)
    x: Array
    y: Array
    loss_fn: Callable = eqx.field(static=True)
    locate_tol: Array
    slide_tol: Array | None
    rtol: Array
    atol: Array

    def pre(self, params) -> Array:
        """``z_kj``, shape ``(units, n)``."""
        model = eqx.combine(params, self.static)
        return jax.vmap(lambda xi: model.masked_forward(xi)[1])(self.x).T

    def pattern(self, params) -> Array:
        """``P_kj = [z_kj > 0]`` in the parameters' dtype."""
        z = self.pre(params)
        return (z > 0).astype(z.dtype)

    def parts(self, params, pattern=None):
        """``(z, s, |u|^2)`` each ``(units, n)`` (``s_kj = dL/d relu(z_kj)``: the signal that
        reaches the unit, whichever side of its kink), and ``||w_in||^2`` per unit; with a
        ``pattern`` (``(units, n)``), those of the network with that activation pattern (the
        smooth piece continued past its kinks)."""
        model = eqx.combine(params, self.static)
        units = model.in_out_squares()[0].shape[-1]
        offsets = jnp.zeros((self.x.shape[0], units), self.x.dtype)

        def loss(off):
            if pattern is None:
                out, z, u_sq = jax.vmap(lambda xi, oi: model.masked_forward(xi, None, oi))(self.x, off)
            else:
                out, z, u_sq = jax.vmap(model.masked_forward)(self.x, pattern.T, off)
            return self.loss_fn(out, self.y), (z, u_sq)

        s, (z, u_sq) = jax.grad(loss, has_aux=True)(offsets)
        return z.T, s.T, u_sq.T, model.in_out_squares()[0]


class LocatedSolver(ForwardingSolver):
    """Wraps a solver: every step integrates the field of the activation pattern at its
    start (passed to the field as ``args``), continued smoothly past the kinks."""

    solver: diffrax.AbstractSolver
    locator: Locator

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        return self.solver.step(terms, t0, t1, y0, self.locator.pattern(y0), solver_state, made_jump)


class LocateState(NamedTuple):
    """State of :class:`LocatingController`: the floor PID's state, the counters, the (unit,
    point) pairs whose sign the last accepted step changed, the pairs a rejected step was located
    for that no accepted step has crossed since (``target``), and those located again right at a
    step's start (``relocated``, without the sliding field: at most once per pair)."""

    floor: FloorState
    located: Int[Array, ""]
    jumps: Int[Array, ""]
    changed: Bool[Array, "units n"]
    target: Bool[Array, "units n"]
    relocated: Bool[Array, "units n"]


class LocatingController(diffrax.AbstractAdaptiveStepSizeController):
    """:class:`gflow.flow.controller.FloorPIDController` that also ends steps at activation
    changes whose jump the tolerance does not absorb (module docstring)."""

    inner: FloorPIDController
    locator: Locator

    def __init__(self, inner: FloorPIDController, locator: Locator):
        self.inner = inner
        self.locator = locator

    @property
    def rtol(self):  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.inner.rtol

    @property
    def atol(self):  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.inner.atol

    @property
    def norm(self):  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.inner.norm

    def wrap(self, direction):
        return self

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.inner.init(terms, t0, t1, y0, dt0, args, func, error_order)
        zero = jnp.array(0, jnp.int32)
        changed = jnp.zeros(self.locator.pre(y0).shape, bool)
        return tnext, LocateState(state, zero, zero, changed, changed, changed)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        floor_state, located, jumps, changed, target, relocated = controller_state
        keep, next_t0, next_t1, made_jump, new_floor, result = self.inner.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, floor_state
        )
        loc = self.locator
        z0 = loc.pre(y0)
        z1, s, u_sq, w_sq = loc.parts(y1_candidate)
        # the signal of the piece the step integrated (its pattern: that of y0), continued to y1:
        # the field's jump at y1 between the piece and the true field. At the kink itself the jump
        # can vanish (a point whose residual is 0 there: the field is continuous, its derivative
        # not), while the piece drifts from the true field as it goes on past the kink.
        s_piece = loc.parts(y1_candidate, (z0 > 0).astype(z0.dtype))[1]
        crossed = (z1 > 0) != (z0 > 0)
        dt = t1 - t0
        gap = jnp.abs(z1 - z0)
        safe_gap = jnp.where(gap > 0, gap, 1.0)
        jump = jnp.maximum(jnp.abs(s), jnp.abs(s_piece)) * jnp.sqrt(u_sq)  # J_kj, the larger of the two sides
        allowed = (loc.locate_tol * (loc.atol + loc.rtol * jnp.sqrt(w_sq)))[:, None]
        err = jump * dt * jnp.abs(z1) / safe_gap
        slack = allowed / jnp.where(jump > 0, jump, 1.0)  # the time the tolerance allows past a kink
        # a pair that crossed back right after the last accepted step crossed it chatters on an
        # attractive kink: left to the error control, as the plain field is
        bad = crossed & (err > allowed) & ~changed
        new_target, new_relocated = target, relocated
        if loc.slide_tol is not None:  # pairs held on their kink by the sliding field
            band = (loc.slide_tol * (loc.atol + loc.rtol * jnp.sqrt(w_sq)))[:, None] * jnp.sqrt(u_sq)
            # every other crossing is located, also one within that time of t0: a pair that a
            # located step left just short of its kink (its secant time fell short) would otherwise
            # run the whole step on the wrong side's field (measured: the toy's located Dopri8 at
            # rtol 1e-12 was 1.6e-6 off at t = 0.4, one crossing missed)
            bad = bad & (jnp.abs(z1) > band)
        else:
            # without the sliding field (deep nets), a pair that crossed within that time of t0
            # also sits on an attractive kink, chattering: locating it again made the MLP (5, 4)
            # of benchmarks/kinks_deep.py take 44563 steps instead of 6225
            # Except a pair that a step was located for and that no accepted step has crossed since
            # (``target``): the located step fell short of its kink (its secant time), and this step
            # would integrate the wrong side's field all along (measured: the MLP (16, 16) on breast
            # cancer, Tsit5 1e-10, 8e-8 off at t = 0.0117 from one such pair). Once per pair in the
            # run (``relocated``): relocating on every chatter cycle of a sliding mode made the
            # MLP (5, 4) of benchmarks/kinks_deep.py take 45416 steps instead of 5955 (now 5748)
            far = dt * jnp.abs(z0) / safe_gap > slack
            bad = bad & (far | (target & ~relocated))
            new_target = (target & ~bad) | (bad & far)
            new_relocated = relocated | (bad & ~far)
        # just past the first bad crossing: secant time of the crossing + half the allowed overshoot
        t_cross = dt * jnp.abs(z0) / safe_gap + 0.5 * slack
        t_loc = t0 + jnp.min(jnp.where(bad, t_cross, dt))
        floor = self.inner._floor(t0, floor_state.span)
        locate = jnp.any(bad) & ~floor_state.at_dtmin
        t_loc = jnp.maximum(jnp.minimum(t_loc, jnp.where(keep, t1, next_t1)), t0 + floor)
        next_t0 = jnp.where(locate, t0, next_t0)
        next_t1 = jnp.where(locate, t_loc, next_t1)
        new_floor = new_floor._replace(at_dtmin=jnp.where(locate, t_loc - t0 <= floor, new_floor.at_dtmin))
        keep = keep & ~locate
        jump_now = keep & jnp.any(crossed)
        made_jump = made_jump | jump_now
        changed = jnp.where(keep, crossed, changed)
        target = jnp.where(locate, new_target, jnp.where(keep, target & ~crossed, target))
        relocated = jnp.where(locate, new_relocated, relocated)
        state = LocateState(
            new_floor,
            located + locate.astype(jnp.int32),
            jumps + jump_now.astype(jnp.int32),
            changed,
            target,
            relocated,
        )
        return keep, next_t0, next_t1, made_jump, state, result
