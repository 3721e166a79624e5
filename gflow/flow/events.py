"""Events along the exact flow: stop or record when something happens.

Each event is a scalar function ``h(theta)`` of the parameters, positive at the start,
and *occurs* at the first time ``h`` becomes ``<= 0``; its time is located by bisection
on the solver's dense output of the step on which the sign changed (Diffrax ``Event``).

- :class:`LossBelow` ``(threshold)``: ``h = L - threshold``.
- :class:`GradNormBelow` ``(threshold)``: ``h = ||F(theta)|| - threshold`` with ``F`` the vector
  field being integrated (``-grad L``, or its Filippov/pinned form under ``kinks``, which
  is the one that vanishes at a sliding or collapsed steady state).
- :class:`OutputSignChange`: ``h = min_k s_k v_k`` over the output weights ``v_k`` (last
  layer) that are non-zero at the start, ``s_k = sign v_k(0)``: the first output weight
  to reach zero.
- :class:`NeuronDies`: ``h = min_k max_i z_ki`` over hidden units ``k`` alive at the start,
  ``z_ki`` the pre-activation of unit k on training point i: the first unit whose
  pre-activation is ``<= 0`` on all training data (a collapsed, pinned neuron with
  ``w = 0`` counts as dead).

An event already satisfied at ``t0`` occurs at ``t0``. With ``on_event="stop"`` the solve
ends at the first event (status ``event_occurred``; saved times after it are clamped to
the event time and hold the state there). With ``"record"`` each event's first time is
recorded and the solve continues from the event state to ``t1`` (one restart per event).
Results: ``stats["event"]`` (index of the first event, ``-1`` if none), ``stats["event_time"]``
(``inf`` if none) and ``stats["t_<name>"]`` per event (first time, ``inf`` if never).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ..nets.base import AbstractReLUNet, require_relu_net
from .batching import where_rows

__all__ = [
    "LossBelow",
    "GradNormBelow",
    "OutputSignChange",
    "NeuronDies",
    "EVENTS",
    "parse_events",
    "event_stat_names",
    "ON_EVENT",
]

ON_EVENT = ("stop", "record")


class _Event(eqx.Module):
    name = "event"

    @abc.abstractmethod
    def value(self, params, ctx):
        """``h(theta)``: positive before the event, ``<= 0`` when it has occurred."""


class LossBelow(_Event):
    """Occurs when the full-batch training loss falls to ``threshold``."""

    threshold: jax.Array
    name = "loss_below"

    def __init__(self, threshold):
        self.threshold = jnp.asarray(threshold, jnp.result_type(float))

    def value(self, params, ctx):
        return ctx.loss(params) - self.threshold


class GradNormBelow(_Event):
    """Occurs when the norm of the integrated vector field falls to ``threshold``."""

    threshold: jax.Array
    name = "grad_norm_below"

    def __init__(self, threshold):
        self.threshold = jnp.asarray(threshold, jnp.result_type(float))

    def value(self, params, ctx):
        field = ctx.field(params)
        sq = sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(field))
        return jnp.sqrt(sq) - self.threshold


class OutputSignChange(_Event):
    """Occurs when an output weight that was non-zero at the start reaches zero."""

    name = "output_sign_change"

    def value(self, params, ctx):
        v = output_weights(eqx.combine(params, ctx.static))
        return jnp.min(jnp.where(ctx.signs0 != 0, ctx.signs0 * v, jnp.inf))


class NeuronDies(_Event):
    """Occurs when a hidden unit alive at the start has pre-activation ``<= 0`` on all data."""

    name = "neuron_dies"

    def value(self, params, ctx):
        z = _max_preactivation(eqx.combine(params, ctx.static), ctx.x)
        # 0 - tiny < 0: a pinned neuron (all pre-activations exactly 0) is dead
        return jnp.min(jnp.where(ctx.alive0, z, jnp.inf)) - jnp.finfo(z.dtype).tiny


EVENTS: dict[str, Callable[..., _Event]] = {
    cls.name: cls for cls in (LossBelow, GradNormBelow, OutputSignChange, NeuronDies)
}
_NEEDS_THRESHOLD = ("loss_below", "grad_norm_below")


def parse_events(events) -> tuple:
    """Event objects from ``events``: a sequence of event objects, names (``"neuron_dies"``,
    ``"output_sign_change"``), ``(name, threshold)`` pairs or ``"name=threshold"`` strings.
    ``None`` or empty: no events. Raises ``ValueError`` naming the allowed values."""
    if events is None:
        return ()
    if isinstance(events, (str, _Event)) or (
        isinstance(events, tuple) and len(events) == 2 and isinstance(events[0], str) and not isinstance(events[1], str)
    ):
        events = [events]
    out = []
    allowed = ", ".join(f"{n}=<threshold>" if n in _NEEDS_THRESHOLD else n for n in EVENTS)
    for e in events:
        if isinstance(e, _Event):
            out.append(e)
            continue
        if isinstance(e, str) and "=" in e:
            name, _, value = e.partition("=")
            e = (name.strip(), value)
        name, value = (e, None) if isinstance(e, str) else (tuple(e) + (None,))[:2]
        if name not in EVENTS:
            raise ValueError(f"events must be among {allowed}; got {e!r}.")
        if name in _NEEDS_THRESHOLD:
            needs = f"event {name} needs a threshold, e.g. {name}=1e-3; got {e!r}."
            if value is None:
                raise ValueError(needs)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(needs) from None
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"event {name} threshold must be a non-negative number, got {value!r}.")
            out.append(EVENTS[name](value))
        else:
            if value is not None:
                raise ValueError(f"event {name} takes no threshold; got {e!r}.")
            out.append(EVENTS[name]())
    return tuple(out)


def event_stat_names(events) -> list[str]:
    """``t_<name>`` per event, with ``_1``, ``_2``... appended to repeated names."""
    names, seen = [], {}
    for e in events:
        n = seen.get(e.name, 0)
        seen[e.name] = n + 1
        names.append(f"t_{e.name}" + (f"_{n}" if n else ""))
    return names


# --------------------------------------------------------------------- model access


def output_weights(model):
    """The weights into the output nodes as a flat vector (:meth:`AbstractReLUNet.output_weights`)."""
    return require_relu_net(model).output_weights()


def _max_preactivation(model, x):
    return jnp.max(jax.vmap(model.hidden_preactivations)(x), axis=0)


class EventContext(eqx.Module):
    """What the event functions need: the model's static part, data, loss, vector field and
    the reference signs / alive units at ``t0``."""

    static: object = eqx.field(static=True)
    data: Any
    x: jax.Array  # the inputs neuron_dies checks
    signs0: jax.Array
    alive0: jax.Array
    loss_fn: Callable[..., Any] = eqx.field(static=True)
    vf: Callable[..., Any] = eqx.field(static=True)

    def loss(self, params):
        return self.data.loss(eqx.combine(params, self.static), self.loss_fn)

    def field(self, params):
        return self.vf(0.0, params, None)


def _probe_inputs(data):
    """The inputs on which ``neuron_dies`` reads pre-activations: the training points; a Gaussian
    population has none (``make_problem`` refuses the event there), and ``+-e_i`` stand in."""
    if getattr(data, "is_population", False):
        eye = jnp.eye(data.in_size, dtype=jnp.result_type(float))
        return jnp.concatenate([eye, -eye])
    return data.x_train


def make_context(model, data, loss_fn, vf) -> EventContext:
    params, static = eqx.partition(model, eqx.is_inexact_array)
    x = _probe_inputs(data)
    if isinstance(model, AbstractReLUNet):
        signs0, alive0 = jnp.sign(output_weights(model)), _max_preactivation(model, x) > 0
    else:  # any eqx.Module: only the loss and gradient-norm events (make_problem checks)
        signs0, alive0 = jnp.zeros((0,)), jnp.zeros((0,), bool)
    return EventContext(
        static=static,
        data=data,
        x=x,
        signs0=signs0,
        alive0=alive0,
        loss_fn=loss_fn,
        vf=vf,
    )


# --------------------------------------------------------------------- solving with events


def solve_with_events(problem, term, solver, y0, save_fn, ctx, stats_of, stats_zero):
    """Solve ``problem`` (a :class:`gflow.flow.FlowProblem` with ``events``) from ``ts[0]`` to
    ``ts[-1]`` with ``term`` and ``solver`` (built from it for this network) and its controller, saving
    ``save_fn(y)`` at ``ts``.

    One Diffrax solve per segment, in a ``lax.while_loop``: a segment ends at ``ts[-1]``, at
    a failure, or at an event (located by bisection on the last step's dense output);
    ``"record"`` then disarms that event and restarts from the event state, ``"stop"``
    ends. ``stats_of(sol)`` gives one segment's counters (dict like ``stats_zero``), summed
    over segments (``first_pin_time``: minimum).

    **Returns:** ``(ys, ts_out, stats, segments, result, event_stats)``; ``ts_out`` is ``ts``
    clamped to the time the solve ended, ``ys`` there hold the final state; ``result`` is a
    Diffrax ``RESULTS`` (``event_occurred`` when a stop event ended the solve).
    """
    ts, events, on_event, max_steps = problem.ts, problem.events, problem.on_event, problem.max_steps
    controller, dt0 = problem.controller(), None if problem.adaptive else problem.step_size
    n_ev = len(events)
    dtype = ts.dtype
    t_end = ts[-1]
    stop_mode = on_event == "stop"
    saved = lambda y: save_fn(None, y, None)

    def values(y, armed):
        v = jnp.stack([e.value(saved(y), ctx) for e in events])
        return jnp.where(armed, v, jnp.inf)

    fired0 = values(y0, jnp.ones(n_ev, bool)) <= 0
    times0 = jnp.where(fired0, ts[0], jnp.inf).astype(dtype)

    def make_event(armed):
        # one scalar condition (bisection needs one): the smallest armed event value
        cond = lambda t, y, args, **kw: jnp.min(values(y, armed))
        atol = 1e-12 * jnp.maximum(1.0, jnp.abs(t_end))
        # Optimistix annotates the tolerances as floats; they are ordinary (not static) fields, so an
        # array, traced or not, works
        root = optx.Bisection(rtol=1e-12, atol=atol, flip=True)  # pyright: ignore[reportArgumentType]
        return diffrax.Event(cond, root_finder=root, direction=False)

    ys0 = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (len(ts),) + a.shape), saved(y0))

    def segment(carry):
        seg, t0, y, armed, times, ys, acc, fail, stop = carry
        sol = diffrax.diffeqsolve(
            term,
            solver,
            t0=t0,
            t1=t_end,
            dt0=dt0,
            y0=y,
            event=make_event(armed),
            saveat=diffrax.SaveAt(
                subs=[
                    diffrax.SubSaveAt(ts=jnp.clip(ts, t0, t_end), fn=save_fn),
                    diffrax.SubSaveAt(t1=True, fn=save_fn),
                ],
                solver_state=True,
                controller_state=True,
            ),
            stepsize_controller=controller,
            max_steps=max_steps,
            throw=False,
            adjoint=diffrax.ForwardMode(),
        )
        assert sol.ys is not None and sol.ts is not None  # both SubSaveAts save
        seg_ys, (t_stop,), y_last = sol.ys[0], sol.ts[1], jax.tree_util.tree_map(lambda a: a[0], sol.ys[1])
        is_event = sol.result == diffrax.RESULTS.event_occurred
        v_last = values(y_last, armed)  # the crossing event is the smallest; others may cross too
        fired = is_event & armed & ((v_last <= 0) | (jnp.arange(n_ev) == jnp.argmin(v_last)))
        times = jnp.where(fired & ~jnp.isfinite(times), t_stop, times)
        valid = ((ts > t0) | (seg == 0)) & (ts <= t_stop)
        ys = where_rows(valid, seg_ys, ys)
        s = stats_of(sol)
        acc = {k: (jnp.minimum(acc[k], s[k]) if k == "first_pin_time" else acc[k] + s[k]) for k in acc}
        failed = ~((sol.result == diffrax.RESULTS.successful) | is_event)
        fail = jnp.where((fail == 0) & failed, sol.result._value, fail)
        stop = stop | failed | (is_event & stop_mode)
        return seg + 1, t_stop, y_last, armed & ~fired, times, ys, acc, fail, stop

    def keep_going(carry):
        seg, t0, *_, stop = carry
        return (t0 < t_end) & ~stop & (seg <= n_ev)

    init = (
        jnp.asarray(0, jnp.int32),
        ts[0],
        y0,
        ~fired0,
        times0,
        ys0,
        dict(stats_zero),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(stop_mode) & jnp.any(fired0),
    )
    seg, t_stop, y_last, _, times, ys, acc, fail, _ = jax.lax.while_loop(keep_going, segment, init)
    after = ts > t_stop
    hold = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (len(ts),) + a.shape), saved(y_last))
    ys = where_rows(after, hold, ys)
    ts_out = jnp.minimum(ts, t_stop)
    first = jnp.argmin(times)
    any_event = jnp.isfinite(times[first])
    event_stats = dict(
        event=jnp.where(any_event, first, -1).astype(jnp.int32),
        event_time=jnp.where(any_event, times[first], jnp.inf).astype(dtype),
    )
    event_stats.update({name: times[i] for i, name in enumerate(event_stat_names(events))})
    R = diffrax.RESULTS
    result = R.where(any_event & stop_mode, R.event_occurred, R.successful)
    result = R.where(fail != 0, eqx.tree_at(lambda r: r._value, R.successful, fail), result)
    return ys, ts_out, acc, seg, result, event_stats
