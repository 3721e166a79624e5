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
    at a time (``k`` = 1/8 of the batch), so it costs what those members' own conds cost.
    """

    @jax.custom_batching.custom_vmap
    def run(pred, *ops):
        return jax.lax.cond(pred, true_fn, false_fn, *ops)

    @run.def_vmap
    def _rule(axis_size, in_batched, pred, *ops):
        def batch(tree, batched):
            return jax.tree_util.tree_map(
                lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)), tree, batched
            )

        ops = tuple(batch(o, b) for o, b in zip(ops, in_batched[1:], strict=True))
        pred = jnp.broadcast_to(pred, (axis_size,))
        k = max(1, axis_size // 8)
        # members whose predicate holds, then padding (axis_size: dropped when scattering)
        which = jnp.nonzero(pred, size=axis_size + k, fill_value=axis_size)[0]

        def group(g, out):
            sel = jax.lax.dynamic_slice(which, (g * k,), (k,))
            sub = jax.tree_util.tree_map(lambda x: x[jnp.minimum(sel, axis_size - 1)], ops)
            res = jax.vmap(true_fn)(*sub)
            return jax.tree_util.tree_map(lambda o, r: o.at[sel].set(r, mode="drop"), out, res)

        n_groups = (jnp.sum(pred) + k - 1) // k
        out = jax.lax.fori_loop(0, n_groups, group, jax.vmap(false_fn)(*ops))
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return run(pred, *operands)


def where_rows(mask, new, old):
    """``new`` where ``mask`` holds, else ``old``, member by member along the leading axis of
    every leaf (``mask`` has that axis's length)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)
