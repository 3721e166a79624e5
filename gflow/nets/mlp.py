"""A ReLU multilayer perceptron: :class:`MLP`."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .base import AbstractReLUNet, signed_output_weights
from .dag import DAGNet, layered_as_dag
from .schemes import Scheme, check_perm, check_size, gaussian, get_scheme

__all__ = ["MLP"]


class MLP(AbstractReLUNet):
    """A ReLU multilayer perceptron ``x -> W_L relu(... relu(W_1 x + b_1) ...)``.

    **Fields:** ``weights`` (a tuple of matrices, ``weights[i]`` of shape
    ``(sizes[i+1], sizes[i])``) and ``biases`` (a tuple with one vector per hidden layer,
    or ``None`` entries). ``hidden`` gives the hidden widths; depth = ``len(hidden)``.
    Hidden unit ``j`` of layer ``i`` has incoming weights ``weights[i][j]`` (and
    ``biases[i][j]``) and outgoing weights ``weights[i+1][:, j]``; units are numbered
    layer by layer.
    """

    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"] | None, ...]
    in_size: int = eqx.field(static=True)
    hidden: tuple[int, ...] = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        hidden: Sequence[int],
        out_size: int = 1,
        *,
        bias: bool = False,
        init: str | Scheme = "kaiming",
        key: PRNGKeyArray,
    ):
        self.in_size = check_size("in_size", in_size)
        self.hidden = tuple(check_size("hidden width", h) for h in hidden)
        if not self.hidden:
            raise ValueError("hidden must list at least one hidden width.")
        self.out_size = check_size("out_size", out_size)
        scheme = get_scheme(init)
        sizes = (in_size, *self.hidden, out_size)
        keys = jr.split(key, 2 * (len(sizes) - 1))
        weights, biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            is_output = i == len(sizes) - 2
            std = scheme.std(fan_in, fan_out, is_output)
            weights.append(gaussian(keys[2 * i], (fan_out, fan_in), std))
            if not is_output:
                biases.append(gaussian(keys[2 * i + 1], (fan_out,), std) if bias else None)
        self.weights = tuple(weights)
        self.biases = tuple(biases)

    @property
    def bias(self) -> bool:
        return self.biases[0] is not None

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        for W, b in zip(self.weights[:-1], self.biases, strict=True):
            x = W @ x
            if b is not None:
                x = x + b
            x = jax.nn.relu(x)
        return self.weights[-1] @ x

    def in_out_squares(self):
        ins, outs = [], []
        for i, b in enumerate(self.biases):
            w_in = jnp.sum(self.weights[i] ** 2, axis=-1)
            ins.append(w_in if b is None else w_in + b**2)
            outs.append(jnp.sum(self.weights[i + 1] ** 2, axis=-2))
        return jnp.concatenate(ins, axis=-1), jnp.concatenate(outs, axis=-1)

    def rescale(self, alphas):
        splits = np.cumsum(self.hidden)[:-1]
        per_layer = jnp.split(alphas, splits)
        ones_in, ones_out = jnp.ones(self.in_size), jnp.ones(self.out_size)
        scales = [ones_in, *per_layer, ones_out]
        weights = tuple(W * scales[i + 1][:, None] / scales[i][None, :] for i, W in enumerate(self.weights))
        biases = tuple(None if b is None else b * per_layer[i] for i, b in enumerate(self.biases))
        return eqx.tree_at(lambda m: (m.weights, m.biases), self, (weights, biases), is_leaf=lambda x: x is None)

    def hidden_preactivations(self, x):
        out, a = [], x
        for W, b in zip(self.weights[:-1], self.biases, strict=True):
            z = W @ a if b is None else W @ a + b
            out.append(z)
            a = jax.nn.relu(z)
        return jnp.concatenate(out)

    def masked_forward(self, x, pattern=None, offset=None):
        pres, sqs, a, start = [], [], x, 0
        for W, b in zip(self.weights[:-1], self.biases, strict=True):
            z = W @ a if b is None else W @ a + b
            width = z.shape[0]
            sqs.append(jnp.broadcast_to(jnp.sum(a**2) + (0.0 if b is None else 1.0), z.shape))
            pres.append(z)
            a = jax.nn.relu(z) if pattern is None else pattern[start : start + width] * z
            if offset is not None:
                a = a + offset[start : start + width]
            start += width
        return self.weights[-1] @ a, jnp.concatenate(pres), jnp.concatenate(sqs)

    def output_weights(self):
        return self.weights[-1].reshape(-1)

    def spec(self) -> dict:
        return dict(type="MLP", in_size=self.in_size, hidden=list(self.hidden), out_size=self.out_size, bias=self.bias)

    def as_dag(self) -> DAGNet:
        return layered_as_dag(self.weights, self.biases, (self.in_size, *self.hidden, self.out_size))

    def with_output_signs(self, signs):
        return eqx.tree_at(lambda m: m.weights[-1], self, signed_output_weights(self.weights[-1], signs))

    def permute_units(self, perm):
        if len(perm) != len(self.hidden):
            raise ValueError(f"perm for an MLP must hold one permutation per hidden layer ({len(self.hidden)}).")
        ps = [check_perm(p, h, f"perm[{i}]") for i, (p, h) in enumerate(zip(perm, self.hidden, strict=True))]
        sizes = [np.arange(self.in_size), *ps, np.arange(self.out_size)]
        weights = tuple(W[sizes[i + 1]][:, sizes[i]] for i, W in enumerate(self.weights))
        biases = tuple(None if b is None else b[ps[i]] for i, b in enumerate(self.biases))
        return eqx.tree_at(lambda m: (m.weights, m.biases), self, (weights, biases), is_leaf=lambda x: x is None)
