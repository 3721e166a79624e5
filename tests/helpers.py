"""Shared helpers for the tests."""

import jax
import jax.numpy as jnp


def tree_allclose(a, b, rtol=1e-12, atol=1e-12):
    """Whether two pytrees have the same structure and allclose leaves."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
        return False
    return all(jnp.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(la, lb, strict=True))


def tree_max_abs_diff(a, b):
    """``max |a - b|`` over all leaves of two pytrees of the same structure."""
    return max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )
