"""Batch helpers: :func:`cond_any` (a ``lax.cond`` that stays a branch under ``vmap``) and
:func:`where_rows` (a per-member select over a pytree)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cond_any", "where_rows"]


def cond_any(pred, true_fn, false_fn, *operands):
    """``lax.cond(pred, true_fn, false_fn, *operands)`` that stays a branch under ``vmap``.

    ``vmap`` turns a ``lax.cond`` with a batched predicate into a ``select`` that runs both
    branches for every member. Here the batched version runs ``vmap(false_fn)`` for the
    batch and ``vmap(true_fn)`` only for the members whose predicate holds, gathered ``k``
    at a time (``k`` = 1/8 of the batch), so it costs what those members' own conds cost;
    when more than half of the members need ``true_fn``, one batched call and a select.
    Operands that are not batched (data, tables) are passed to both branches unbatched.
    ``true_fn`` and ``false_fn`` must not close over traced values: pass them as operands.
    Differentiable: its derivative is that of the plain ``lax.cond`` (under ``vmap``, a select
    over both branches), so implicit solvers can linearize a field that uses it.
    """

    def plain(pred, *ops):
        return jax.lax.cond(pred, true_fn, false_fn, *ops)

    run = jax.custom_batching.custom_vmap(plain)

    @jax.custom_jvp
    def differentiable(pred, *ops):
        return run(pred, *ops)

    @differentiable.defjvp
    def _jvp(primals, tangents):  # a custom_vmap has no derivative of its own
        pred, *ops = primals
        return jax.jvp(lambda *ops: plain(pred, *ops), tuple(ops), tuple(tangents[1:]))

    @run.def_vmap
    def _rule(axis_size, in_batched, pred, *ops):
        # operands the batch shares (data, tables) stay unbatched (in_axes None), never copied
        # per member; with none batched at all, the operands are broadcast
        if not any(jax.tree_util.tree_leaves(in_batched[1:])):
            ops = tuple(
                jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)), o) for o in ops
            )
            in_batched = (in_batched[0],) + tuple(jax.tree_util.tree_map(lambda _: True, o) for o in ops)
        axes = tuple(jax.tree_util.tree_map(lambda b: 0 if b else None, b) for b in in_batched[1:])
        true_b = jax.vmap(true_fn, in_axes=axes)
        pred = jnp.broadcast_to(pred, (axis_size,))
        n_true = jnp.sum(pred)
        k = max(1, axis_size // 8)
        # members whose predicate holds, then padding (axis_size: dropped when scattering)
        which = jnp.nonzero(pred, size=axis_size + k, fill_value=axis_size)[0]

        def group(g, out):
            sel = jax.lax.dynamic_slice(which, (g * k,), (k,))
            sub = tuple(
                jax.tree_util.tree_map(lambda x, b: x[jnp.minimum(sel, axis_size - 1)] if b else x, o, b)
                for o, b in zip(ops, in_batched[1:], strict=True)
            )
            res = true_b(*sub)
            return jax.tree_util.tree_map(lambda o, r: o.at[sel].set(r, mode="drop"), out, res)

        def grouped(ops):
            n_groups = (n_true + k - 1) // k
            return jax.lax.fori_loop(0, n_groups, group, jax.vmap(false_fn, in_axes=axes)(*ops))

        def dense(ops):  # most members need the true branch: one batched call, then a select
            res_t = true_b(*ops)
            res_f = jax.vmap(false_fn, in_axes=axes)(*ops)
            return jax.tree_util.tree_map(
                lambda t, f: jnp.where(pred.reshape((-1,) + (1,) * (t.ndim - 1)), t, f), res_t, res_f
            )

        out = jax.lax.cond(2 * n_true > axis_size, dense, grouped, ops)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return differentiable(pred, *operands)


def where_rows(mask, new, old):
    """``new`` where ``mask`` holds, else ``old``, member by member along the leading axis of
    every leaf (``mask`` has that axis's length)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)
