"""Initialization schemes: the standard deviation of each layer's weights.

A scheme maps a layer's ``(fan_in, fan_out)`` and whether it is the output layer to
the standard deviation of i.i.d. Gaussian weights. For a shallow net ``x -> V relu(Wx)``
with ``W in R^{l x d}`` and ``V in R^{e x l}`` this gives the ``(sigma_w, sigma_v)`` of
docs/theory.md §1 (App. F):

- ``kaiming()``: Kaiming/He normal in *fan-in* mode (PyTorch's ``kaiming_normal_``
  default, gain sqrt(2)): ``sigma^2 = 2 / fan_in``, so ``sigma_w^2 = 2/d``,
  ``sigma_v^2 = 2/l``.
- ``xavier()``: Glorot normal, ``sigma^2 = 2 / (fan_in + fan_out)``, so
  ``sigma_w^2 = 2/(d+l)``, ``sigma_v^2 = 2/(l+e)``.
- ``normal(sigma_w, sigma_v)``: fixed ``sigma_w`` for every hidden layer's incoming
  weights and ``sigma_v`` for the output layer.

Biases, when present, are treated as one more incoming weight (docs/theory.md: d -> d+1) and
drawn with the same standard deviation as the layer's weights; the fan-in stays the
number of inputs.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np


@dataclasses.dataclass(frozen=True)
class Scheme:
    """A Gaussian initialization scheme. ``std(fan_in, fan_out, is_output)`` -> sigma."""

    name: str
    sigma_w: float | None = None
    sigma_v: float | None = None

    def std(self, fan_in: int, fan_out: int, is_output: bool) -> float:
        if self.name == "kaiming":
            return math.sqrt(2.0 / fan_in)
        if self.name == "xavier":
            return math.sqrt(2.0 / (fan_in + fan_out))
        sigma = self.sigma_v if is_output else self.sigma_w
        if sigma is None:
            raise ValueError(
                f"scheme {self.name!r} has no sigma_w/sigma_v: use kaiming(), xavier() or normal(sigma_w, sigma_v)."
            )
        return float(sigma)

    def shallow_variances(self, in_size: int, width: int, out_size: int = 1):
        """``(sigma_w^2, sigma_v^2)`` of a shallow net ``in_size -> width -> out_size``."""
        return (
            self.std(in_size, width, False) ** 2,
            self.std(width, out_size, True) ** 2,
        )


def kaiming() -> Scheme:
    """Kaiming normal, fan-in mode: ``sigma^2 = 2 / fan_in`` (PyTorch's default mode)."""
    return Scheme("kaiming")


def xavier() -> Scheme:
    """Xavier/Glorot normal: ``sigma^2 = 2 / (fan_in + fan_out)``."""
    return Scheme("xavier")


def normal(sigma_w: float, sigma_v: float) -> Scheme:
    """Fixed standard deviations: ``sigma_w`` for hidden layers, ``sigma_v`` for the output."""
    if not (sigma_w > 0 and sigma_v > 0):
        raise ValueError(f"normal(sigma_w, sigma_v) needs positive values, got {sigma_w}, {sigma_v}.")
    return Scheme("normal", float(sigma_w), float(sigma_v))


SCHEMES = ("kaiming", "xavier")


def get_scheme(init: str | Scheme) -> Scheme:
    """Resolve ``"kaiming"``, ``"xavier"`` or a :class:`Scheme`."""
    if isinstance(init, Scheme):
        return init
    if init == "kaiming":
        return kaiming()
    if init == "xavier":
        return xavier()
    raise ValueError(f"init must be one of {', '.join(SCHEMES)} or gflow.normal(sigma_w, sigma_v); got {init!r}.")


def gaussian(key, shape, std, dtype=None):
    """``std`` times i.i.d. standard normal entries (dtype: the default float)."""
    dtype = dtype or jnp.result_type(float)
    return std * jr.normal(key, shape, dtype)


def check_size(name: str, value) -> int:
    """``value`` if it is a positive integer (not a bool), else one clear ``ValueError``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_perm(perm, n: int, name: str) -> np.ndarray:
    """``perm`` as an array if it is a permutation of ``range(n)``, else a ``ValueError``."""
    p = np.asarray(perm)
    if p.shape != (n,) or not np.array_equal(np.sort(p), np.arange(n)):
        raise ValueError(f"{name} must be a permutation of range({n}), got {perm!r}.")
    return p
