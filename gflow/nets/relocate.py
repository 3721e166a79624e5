"""Initialization schemes and relocation onto a chosen invariant set (THEORY.md §1, Prop. 4)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .schemes import Scheme, get_scheme, kaiming, normal, xavier
from ..invariants import project
from .models import MLP, ShallowReLU

__all__ = ["Scheme", "get_scheme", "kaiming", "normal", "xavier", "relocate"]


def relocate(model, delta, signs=None):
    """Move every hidden unit to the conserved value ``delta`` (scalar or one per unit).

    Uses the exact rescaling of :func:`gflow.project` (Prop. 4): the network function is
    unchanged and ``conserved(relocate(model, delta)) == delta`` to round-off.

    ``signs`` (optional, +1/-1, broadcast against the output weights ``V`` of a
    :class:`ShallowReLU` or the last weight matrix of an :class:`MLP`) then forces the
    signs of the output weights, ``v -> signs * |v|``. This picks the component of the
    invariant set (THEORY.md Prop. 3) and, unlike the rescaling, changes the function;
    it leaves ``delta`` unchanged.
    """
    model = project(model, delta)
    if signs is None:
        return model
    signs = jnp.asarray(signs)
    if not isinstance(signs, jax.core.Tracer) and not bool(jnp.all(jnp.abs(signs) == 1)):
        raise ValueError("signs must contain only +1 and -1.")
    if isinstance(model, ShallowReLU):
        return eqx.tree_at(lambda m: m.V, model, jnp.abs(model.V) * signs)
    if isinstance(model, MLP):
        last = jnp.abs(model.weights[-1]) * signs
        return eqx.tree_at(lambda m: m.weights[-1], model, last)
    raise ValueError("signs is supported for ShallowReLU and MLP models only.")
