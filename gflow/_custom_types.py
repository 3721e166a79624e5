"""Type aliases of gflow's public API, in one place (as Diffrax's ``_custom_types.py``).

Shapes follow jaxtyping's notation: ``" n"`` a vector of length ``n``, ``"n out"`` a matrix,
``""`` a scalar, ``"*batch"`` any leading axes. Under ``pytest`` the public API is checked at
run time against these annotations (jaxtyping's import hook with beartype).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

from jaxtyping import Array, ArrayLike, Float, Real

from .nets.schemes import Scheme as _Scheme

RealScalarLike: TypeAlias = float | int | Real[ArrayLike, ""]
"""A real number: a Python scalar or a 0-d array."""

Scalar: TypeAlias = Float[Array, ""]
"""A 0-d float array (a loss, a time, a norm)."""


Delta: TypeAlias = RealScalarLike | Real[ArrayLike, " hidden"] | Sequence[float | int]
"""Conserved values to move to: one for every unit, or one per hidden unit."""


LossFn: TypeAlias = Callable[[Array, Array], Array]
"""``loss(pred, y) -> scalar``: predictions ``(n, out)`` against targets."""

LossLike: TypeAlias = str | LossFn
"""A loss name (``"mse"``, ``"bce"``, ``"cross_entropy"``) or a :data:`LossFn`."""


SchemeLike: TypeAlias = str | tuple[float, float] | _Scheme
"""An initialization scheme: ``"kaiming"``, ``"xavier"``, ``(σ_w, σ_v)`` or a :class:`gflow.Scheme`."""

__all__ = [
    "RealScalarLike",
    "Scalar",
    "Delta",
    "LossFn",
    "LossLike",
    "SchemeLike",
]
