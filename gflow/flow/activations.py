"""Activation-pattern diagnostics of a trajectory: how often pre-activations cross their kinks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["activation_stats", "SLIDING_FLIPS"]

SLIDING_FLIPS = 4


def activation_stats(models, x: Float[Array, "n d"]) -> dict:
    """Activation-pattern diagnostics over saved models (leading time axis).

    - ``pattern_changes``: number of (saved interval, hidden unit, data point) with a change
      of ``1[pre-activation > 0]`` between consecutive saved times.
    - ``max_flips``: the largest number of pattern changes of one (unit, point) pair.
    - ``sliding``: ``max_flips >= SLIDING_FLIPS`` -- a pre-activation that goes back and forth
      across its kink is held near zero: a sliding mode, or a solver chattering on a kink.
    """
    pattern = lambda m: jax.vmap(lambda xi: m.hidden_preactivations(xi) > 0)(x)
    first = jax.tree_util.tree_map(lambda a: a[0], models)
    rest = jax.tree_util.tree_map(lambda a: a[1:], models)

    def body(carry, m):
        prev, flips = carry
        cur = pattern(m)
        return (cur, flips + (cur != prev).astype(jnp.int32)), None

    p0 = pattern(first)
    (_, flips), _ = jax.lax.scan(body, (p0, jnp.zeros(p0.shape, jnp.int32)), rest)
    max_flips = jnp.max(flips)
    return dict(pattern_changes=jnp.sum(flips), max_flips=max_flips, sliding=max_flips >= SLIDING_FLIPS)
