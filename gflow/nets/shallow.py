"""One hidden layer: :class:`ShallowReLU`, ``f(x) = V relu(W x + b)``."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .base import AbstractReLUNet, signed_output_weights
from .dag import DAGNet, layered_as_dag
from .schemes import Scheme, check_perm, check_size, gaussian, get_scheme

__all__ = ["ShallowReLU"]


class ShallowReLU(AbstractReLUNet):
    """One hidden layer: ``f(x) = V relu(W x + b)``.

    **Fields:** ``W`` (width, in), ``b`` (width,) or ``None``, ``V`` (out, width).
    Hidden neuron k has incoming weights ``w_k = W[k]`` (with ``b[k]`` appended when
    biases are on) and outgoing weights ``v_k = V[:, k]``; its conserved quantity is
    ``delta_k = ||w_k||^2 - ||v_k||^2``.
    """

    W: Float[Array, "width in"]
    b: Float[Array, " width"] | None
    V: Float[Array, "out width"]
    in_size: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    decoupled_units: ClassVar[bool] = True
    kink_handling: ClassVar[bool] = True

    def __init__(
        self,
        in_size: int,
        width: int,
        out_size: int = 1,
        *,
        bias: bool = False,
        init: str | Scheme = "kaiming",
        key: PRNGKeyArray,
    ):
        self.in_size = check_size("in_size", in_size)
        self.width = check_size("width", width)
        self.out_size = check_size("out_size", out_size)
        scheme = get_scheme(init)
        kw, kb, kv = jr.split(key, 3)
        sw = scheme.std(in_size, width, False)
        self.W = gaussian(kw, (width, in_size), sw)
        self.b = gaussian(kb, (width,), sw) if bias else None
        self.V = gaussian(kv, (out_size, width), scheme.std(width, out_size, True))

    @property
    def bias(self) -> bool:
        return self.b is not None

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        z = self.W @ x
        if self.b is not None:
            z = z + self.b
        return self.V @ jax.nn.relu(z)

    def in_out_squares(self):
        w_in = jnp.sum(self.W**2, axis=-1)
        if self.b is not None:
            w_in = w_in + self.b**2
        return w_in, jnp.sum(self.V**2, axis=-2)

    def rescale(self, alphas):
        new = (self.W * alphas[:, None], None if self.b is None else self.b * alphas, self.V / alphas[None, :])
        return eqx.tree_at(lambda m: (m.W, m.b, m.V), self, new, is_leaf=lambda x: x is None)

    def hidden_preactivations(self, x):
        z = self.W @ x
        return z if self.b is None else z + self.b

    def masked_forward(self, x, pattern=None, offset=None):
        z = self.hidden_preactivations(x)
        a = jax.nn.relu(z) if pattern is None else pattern * z
        if offset is not None:
            a = a + offset
        in_sq = jnp.broadcast_to(jnp.sum(x**2) + (0.0 if self.b is None else 1.0), z.shape)
        return self.V @ a, z, in_sq

    def output_weights(self):
        return self.V.reshape(-1)

    def spec(self) -> dict:
        return dict(type="ShallowReLU", in_size=self.in_size, width=self.width, out_size=self.out_size, bias=self.bias)

    def as_dag(self) -> DAGNet:
        return layered_as_dag((self.W, self.V), (self.b,), (self.in_size, self.width, self.out_size))

    def with_output_signs(self, signs):
        return eqx.tree_at(lambda m: m.V, self, signed_output_weights(self.V, signs))

    def permute_units(self, perm):
        p = check_perm(perm, self.width, "perm")
        new = (self.W[p], None if self.b is None else self.b[p], self.V[:, p])
        return eqx.tree_at(lambda m: (m.W, m.b, m.V), self, new, is_leaf=lambda x: x is None)


def require_shallow(model, what: str, hint: str = "") -> ShallowReLU:
    """``model`` if it is a :class:`ShallowReLU`, else one clear ``ValueError``: the one
    check that the shallow-only formulas (component labels, canonical forms, reachability)
    share, since they read ``W``, ``b`` and ``V`` directly."""
    if not isinstance(model, ShallowReLU):
        raise ValueError(f"{what} needs a ShallowReLU, got {type(model).__name__}{hint}.")
    return model
