"""Continuous batching of adaptive flows: many trajectories, no lockstep.

``vmap(diffeqsolve)`` advances a batch until its slowest member ends. Here a fixed number
of *slots* each carry their own trajectory state (t, next t, solver and PID-controller
state, counters, metric accumulator) and take the same steps as Diffrax's own loop
(``solver.step``, ``controller.adapt_step_size``, clipping to t1, dense output at saved
times), so a slot reproduces a single ``gradient_flow`` solve.

A chunk of initializations is dealt into one queue per device (``shard_map``: no
communication but two scalar sums per step). Inside one jitted loop each device steps its
slots, parks finished ones in a result buffer and refills free slots from its queue; the
host only sees the chunk again when every slot is done or after a step budget (progress bar).
"""

from __future__ import annotations

from typing import cast

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from diffrax._term import WrapTerm

from .. import metrics
from .._jit import jit
from .._traces import cached_trace
from ..trajectory import Status, flow_status
from .batching import where_rows
from .controller import controller_stats
from .pinning import pin_stats
from .problem import FlowProblem

_R = diffrax.RESULTS


class Slot(eqx.Module):
    """One trajectory in flight (every field gets a leading slot axis in a batch)."""

    y: object
    tprev: jax.Array
    tnext: jax.Array
    solver_state: object
    controller_state: object
    made_jump: jax.Array
    result: diffrax.RESULTS
    steps: jax.Array
    accepted: jax.Array
    rejected: jax.Array
    save_index: jax.Array
    acc: dict
    index: jax.Array  # which initialization; -1: empty
    done: jax.Array
    states: object = None  # params at the saved times (leading axis: ts), NaN until reached; or None


class FlowStepper(eqx.Module):
    """Builds, advances and finalizes slots of one :class:`gflow.flow.FlowProblem`."""

    problem: FlowProblem
    save_states: bool = eqx.field(static=True, default=False)  # keep the params at every saved time

    @property
    def static(self):
        return self.problem.static

    @property
    def ts(self):
        return self.problem.ts

    def _parts(self, delta):
        # diffeqsolve wraps its terms (direction +1); wrapping here too makes every step,
        # including the initial step-size choice, the same as a single gradient_flow solve.
        problem = self.problem.with_delta(delta)
        term = WrapTerm(problem.term(), jnp.asarray(1))
        return term, problem.solver(delta), problem.controller()

    def saved(self, y, delta):
        """A state as ``gradient_flow`` saves it: projected (if ``project``) and pinned."""
        return self.problem.with_delta(delta).saved(y, delta)

    def init(self, params, index) -> Slot:
        """A slot at t = ts[0] for ``params`` (unbatched; vmap it)."""
        model = eqx.combine(params, self.static)
        delta = self.problem.conserved(model)
        term, solver, controller = self._parts(delta)
        t0, t1 = self.ts[0], self.ts[-1]
        tnext, cstate = controller.init(term, t0, t1, params, None, None, solver.func, solver.error_order(term))
        tnext = jnp.minimum(tnext, t1)
        states = None
        if self.save_states:
            states = jtu.tree_map(lambda x: jnp.full(self.ts.shape + x.shape, jnp.nan, x.dtype), params)
        return Slot(
            y=params,
            tprev=t0,
            tnext=tnext,
            solver_state=solver.init(term, t0, tnext, params, None),
            controller_state=cstate,
            made_jump=jnp.array(False),
            result=_R.successful,
            steps=_int(0),
            accepted=_int(0),
            rejected=_int(0),
            save_index=_int(0),
            acc=metrics.start(model, self.problem.laws),
            index=index,
            done=index < 0,
            states=states,
        )

    def step(self, s: Slot) -> Slot:
        """One attempted solver step of one slot, exactly as Diffrax's ``diffeqsolve`` loop."""
        term, solver, controller = self._parts(s.acc["c0"])
        t1 = self.ts[-1]
        y, y_error, dense_info, sstate, sresult = solver.step(
            term, s.tprev, s.tnext, s.y, None, s.solver_state, s.made_jump
        )
        y_error = jtu.tree_map(lambda x: jnp.where(jnp.isnan(x), jnp.inf, x), y_error)
        # passed on as in diffeqsolve's loop: Diffrax's controllers annotate error_order as a number, its
        # solvers may return None (only for constant steps, which ignore it)
        error_order = cast(float, solver.error_order(term))
        keep, tprev, tnext, made_jump, cstate, cresult = controller.adapt_step_size(
            s.tprev, s.tnext, s.y, y, None, y_error, error_order, s.controller_state
        )
        tprev = jnp.minimum(tprev, t1)
        tnext = _clip_to_end(tprev, tnext, t1, keep)
        keep_tree = lambda a, b: jnp.where(keep, a, b)  # noqa: E731
        y = jtu.tree_map(keep_tree, y, s.y)
        sstate = jtu.tree_map(keep_tree, sstate, s.solver_state)
        made_jump = jnp.where(keep, made_jump, s.made_jump)
        sresult = _R.where(keep, sresult, _R.successful)
        result = _R.where(s.result == _R.successful, sresult, s.result)
        result = _R.where(result == _R.successful, cresult, result)

        interp = solver.interpolation_cls(t0=s.tprev, t1=s.tnext, **dense_info)
        n_ts = self.ts.shape[0]

        def save_cond(c):
            i = c[0]
            return keep & (i < n_ts) & (self.ts[jnp.minimum(i, n_ts - 1)] <= s.tnext)

        def save_body(c):
            i, acc, states = c
            y_i = self.saved(interp.evaluate(self.ts[i]), s.acc["c0"])
            if states is not None:
                states = jtu.tree_map(lambda buf, x: buf.at[i].set(x), states, y_i)
            return i + 1, metrics.observe(acc, eqx.combine(y_i, self.static), self.problem.laws), states

        save_index, acc, states = jax.lax.while_loop(save_cond, save_body, (s.save_index, s.acc, s.states))
        steps = s.steps + _int(1)
        result = _R.where(
            (steps >= self.problem.max_steps) & (tprev < t1) & (result == _R.successful), _R.max_steps_reached, result
        )
        done = (tprev >= t1) | (result != _R.successful)
        return Slot(
            y=y,
            tprev=tprev,
            tnext=tnext,
            solver_state=sstate,
            controller_state=cstate,
            made_jump=made_jump,
            result=result,
            steps=steps,
            accepted=s.accepted + _int(keep),
            rejected=s.rejected + _int(~keep),
            save_index=save_index,
            acc=acc,
            index=s.index,
            done=done,
            states=states,
        )


def _clip_to_end(tprev, tnext, t1, keep):
    """As Diffrax: a next time within 100 ULP of t1 becomes t1 (or, after a rejected step,
    halfway there), so the last interval is never tiny."""
    floor = t1
    for _ in range(100):
        floor = eqx.internal.prevbefore(floor)
    return jnp.where(tnext > floor, jnp.where(keep, t1, tprev + 0.5 * (t1 - tprev)), tnext)


def _int(value):
    return jnp.asarray(value, jnp.int32)


def _count(mask):
    """How many entries of ``mask`` are true, as the engine's int32 counters are."""
    return jnp.sum(mask, dtype=jnp.int32)


class Chunk(eqx.Module):
    """Device-side state of one chunk (every leaf's leading axis is spread over the devices;
    per device: ``W`` slots, a queue of ``Qd`` initializations, a buffer of ``Q`` results).

    Each device refills its own slots from its own queue inside the jitted loop, so a
    finished slot costs no host round trip; finished slots are kept, by chunk-local index,
    in the device's ``out`` buffer (``written`` marks them)."""

    slots: Slot
    queue: object  # initial params, (Qd,) per device
    qindex: jax.Array  # chunk-local index of each queue entry; -1: padding
    next: jax.Array  # (1,) per device: next queue entry to load
    out: Slot  # (Q,) per device
    written: jax.Array  # (Q,) per device
    executed: jax.Array  # (1,) per device: slot-steps executed
    useful: jax.Array  # (1,) per device: slot-steps of live trajectories


_AXIS = "slots"


def _spread(fn, mesh, n_replicated: int):
    """``fn(*replicated, *spread)`` run per device by ``shard_map``: the first
    ``n_replicated`` arguments are copied to every device, the others split along axis 0."""

    def specs(n_spread):
        return (jax.sharding.PartitionSpec(),) * n_replicated + (jax.sharding.PartitionSpec(_AXIS),) * n_spread

    def run(*args):
        return jax.shard_map(
            fn,
            mesh=mesh,
            in_specs=specs(len(args) - n_replicated),
            out_specs=jax.sharding.PartitionSpec(_AXIS),
            check_vma=False,
        )(*args)

    return run


@cached_trace
@jit
def start_chunk(stepper: FlowStepper, mesh, width: int, n_out: int, queue, qindex) -> Chunk:
    """A chunk with ``width`` slots per device filled from the head of each device's queue."""
    dynamic, static = eqx.partition(stepper, eqx.is_array)

    def local(dynamic, queue, qindex):
        stepper = eqx.combine(dynamic, static)
        first = jnp.minimum(jnp.arange(width), qindex.shape[0] - 1)
        index = jnp.where(jnp.arange(width) < qindex.shape[0], qindex[first], -1)
        slots = jax.vmap(stepper.init)(jtu.tree_map(lambda x: x[first], queue), index)
        out = jtu.tree_map(lambda x: jnp.zeros((n_out,) + x.shape[1:], x.dtype), slots)
        n_loaded = jnp.minimum(width, _count(qindex >= 0))
        return Chunk(
            slots=slots,
            queue=queue,
            qindex=qindex,
            next=n_loaded[None],
            out=out,
            written=jnp.zeros(n_out, bool),
            executed=_int([0]),
            useful=_int([0]),
        )

    return _spread(local, mesh, 1)(dynamic, queue, qindex)


@cached_trace
@jit
def run_chunk(stepper: FlowStepper, mesh, group: int, chunk: Chunk, n_steps) -> Chunk:
    """Advance all slots by up to ``n_steps`` steps, refilling finished ones from the queue
    (in groups of ``group`` per device, once that many are free or the queue's rest fits).

    Returns once every queue is empty and no slot is live, or after ``n_steps``."""
    dynamic, static = eqx.partition(stepper, eqx.is_array)

    def local(dynamic, n_steps, c: Chunk):
        stepper = eqx.combine(dynamic, static)
        width, n_out = c.slots.index.shape[0], c.written.shape[0]
        n_queue = _count(c.qindex >= 0)

        def cond(carry):
            i, c = carry
            live = jax.lax.psum(_count(c.slots.index >= 0), _AXIS)
            left = jax.lax.psum(n_queue - c.next[0], _AXIS)
            return (i < n_steps) & ((left > 0) | (live > 0))

        def refill(slots, nxt):
            free = slots.index < 0
            pos = jnp.nonzero(free, size=group, fill_value=width)[0]
            k = jnp.arange(group, dtype=nxt.dtype)
            take = (k < _count(free)) & (nxt + k < n_queue)
            q = jnp.minimum(nxt + k, c.qindex.shape[0] - 1)
            fresh = jax.vmap(stepper.init)(jtu.tree_map(lambda x: x[q], c.queue), jnp.where(take, c.qindex[q], -1))
            at = jnp.where(take, pos, width)
            slots = jtu.tree_map(lambda a, b: a.at[at].set(b, mode="drop"), slots, fresh)
            return slots, nxt + _count(take)

        def body(carry):
            i, c = carry
            s = c.slots
            live = ~s.done
            # a device whose slots are all idle skips the step (its queue is empty)
            stepped = jnp.any(live)
            s = jax.lax.cond(stepped, lambda s: where_rows(live, jax.vmap(stepper.step)(s), s), lambda s: s, s)
            finished = s.done & (s.index >= 0)
            at = jnp.where(finished, s.index, n_out)
            out = jtu.tree_map(lambda o, x: o.at[at].set(x, mode="drop"), c.out, s)
            written = c.written.at[at].set(True, mode="drop")
            s = eqx.tree_at(lambda s: s.index, s, jnp.where(finished, -1, s.index))
            nxt = c.next[0]
            left = n_queue - nxt
            go = (left > 0) & (_count(s.index < 0) >= jnp.minimum(group, left))
            s, nxt = jax.lax.cond(go, refill, lambda s, n: (s, n), s, nxt)
            c = Chunk(
                slots=s,
                queue=c.queue,
                qindex=c.qindex,
                next=nxt[None],
                out=out,
                written=written,
                executed=c.executed + width * _int(stepped),
                useful=c.useful + _count(live),
            )
            return i + 1, c

        return jax.lax.while_loop(cond, body, (jnp.asarray(0), c))[1]

    return _spread(local, mesh, 2)(dynamic, n_steps, chunk)


@cached_trace
@jit
def finalize(stepper: FlowStepper, slots: Slot, params0, positions, positions0):
    """Row values of the slots at ``positions``, started from the initial params at
    ``positions0``: losses, drift, labels, stats (one row per position)."""
    slots = jtu.tree_map(lambda x: x[positions], slots)
    params0 = jtu.tree_map(lambda x: x[positions0], params0)

    def one(s: Slot, p0):
        final = stepper.saved(s.y, s.acc["c0"])
        model, model0 = eqx.combine(final, stepper.static), eqx.combine(p0, stepper.static)
        row = metrics.loss_columns(model0, model, stepper.problem.data, stepper.problem.loss_fn)
        row.update(metrics.summarize(s.acc))
        status = flow_status(s.result)
        status = Status.where(
            (status == Status.successful) & ~jnp.isfinite(row["final_loss"]),
            cast(Status, Status.nonfinite),  # inherited from diffrax.RESULTS, typed as one; a Status item
            status,
        )
        row.update(controller_stats(s.controller_state))
        if stepper.problem.pinning is not None:
            row.update(pin_stats(s.solver_state, final, s.acc["c0"]))
        row.update(
            steps=s.steps,
            accepted=s.accepted,
            rejected=s.rejected,
            t_reached=s.tprev,
            status=status._value,
            label_start=s.acc["label0"],
            label_end=s.acc["label"],
            pathological=s.acc["pathological"],
            initial_params=p0,
            final_params=final,
        )
        if s.states is not None:
            row["states"] = s.states
        return row

    return jax.vmap(one)(slots, params0)
