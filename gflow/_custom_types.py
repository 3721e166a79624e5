"""Type aliases of gflow's public API, in one place (as Diffrax's ``_custom_types.py``).

Shapes follow jaxtyping's notation: ``" n"`` a vector of length ``n``, ``"n out"`` a matrix,
``""`` a scalar, ``"*batch"`` any leading axes. Under ``pytest`` the public API is checked at
run time against these annotations (jaxtyping's import hook with beartype).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import equinox as eqx
from jaxtyping import Array, ArrayLike, Float, Real

from .nets.schemes import Scheme as _Scheme

RealScalarLike: TypeAlias = float | int | Real[ArrayLike, ""]
"""A real number: a Python scalar or a 0-d array."""

Scalar: TypeAlias = Float[Array, ""]
"""A 0-d float array (a loss, a time, a norm)."""

PerUnit: TypeAlias = Float[Array, " hidden"]
"""One value per hidden unit (neuron of a shallow net, unit of every hidden layer of an MLP,
hidden node of a DAG), e.g. the conserved quantities ``c_h = Σ_in w² − Σ_out w²``."""

RealVectorLike: TypeAlias = Real[ArrayLike, " n"] | Sequence[float | int]
"""A vector of reals: an array, or a list or tuple of numbers."""

Delta: TypeAlias = RealScalarLike | Real[ArrayLike, " hidden"] | Sequence[float | int]
"""Conserved values to move to: one for every unit, or one per hidden unit."""

Signs: TypeAlias = Real[ArrayLike, "*hidden"] | Sequence[int] | None
"""Output-weight signs (``±1``) per hidden unit, or ``None`` to keep them."""

LossFn: TypeAlias = Callable[[Array, Array], Array]
"""``loss(pred, y) -> scalar``: predictions ``(n, out)`` against targets."""

LossLike: TypeAlias = str | LossFn
"""A loss name (``"mse"``, ``"bce"``, ``"cross_entropy"``) or a :data:`LossFn`."""

Model: TypeAlias = eqx.Module
"""A network: an Equinox module called on one input ``(in,) -> (out,)``."""

SchemeLike: TypeAlias = str | tuple[float, float] | _Scheme
"""An initialization scheme: ``"kaiming"``, ``"xavier"``, ``(σ_w, σ_v)`` or a :class:`gflow.Scheme`."""

__all__ = [
    "RealScalarLike",
    "RealVectorLike",
    "Scalar",
    "PerUnit",
    "Delta",
    "Signs",
    "LossFn",
    "LossLike",
    "Model",
    "SchemeLike",
]
