"""Test helpers for the topology tests: networks from given arrays, without drawing them.

Building a :class:`ShallowReLU` or :class:`MLP` draws random weights, which compiles a
random-number kernel for every new shape (about a second on a busy CPU). Hypothesis
tests build hundreds of nets of many shapes, so they set the fields directly instead.
"""

import jax.numpy as jnp
import numpy as np

import gflow as gf


def _module(cls, **fields):
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


def shallow(W, b, V) -> gf.ShallowReLU:
    """``x -> V relu(W x + b)`` with the given arrays (``b`` may be None)."""
    W, V = jnp.asarray(W, float), jnp.asarray(V, float)
    return _module(
        gf.ShallowReLU,
        W=W,
        b=None if b is None else jnp.asarray(b, float),
        V=V,
        in_size=W.shape[1],
        width=W.shape[0],
        out_size=V.shape[0],
    )


def mlp(weights, biases) -> gf.MLP:
    """An MLP with the given weight matrices and hidden biases (entries may be None)."""
    weights = tuple(jnp.asarray(W, float) for W in weights)
    biases = tuple(None if b is None else jnp.asarray(b, float) for b in biases)
    return _module(
        gf.MLP,
        weights=weights,
        biases=biases,
        in_size=weights[0].shape[1],
        hidden=tuple(W.shape[0] for W in weights[:-1]),
        out_size=weights[-1].shape[0],
    )


def shallow_with_delta(rng, d, width, e, delta, bias=False):
    """A random shallow net moved exactly onto ``Q(delta)`` by Prop. 4 (numpy, no jax)."""
    W, V = rng.normal(size=(width, d)), rng.normal(size=(e, width))
    b = rng.normal(size=width) if bias else None
    w_sq = np.sum(W**2, axis=1) + (0 if b is None else b**2)
    v_sq = np.sum(V**2, axis=0)
    delta = np.asarray(delta, float)
    alpha = np.sqrt((delta + np.sqrt(delta**2 + 4 * w_sq * v_sq)) / (2 * w_sq))
    return shallow(W * alpha[:, None], None if b is None else b * alpha, V / alpha[None, :])


def shallow_batch(W, b, V) -> gf.ShallowReLU:
    """A batch of shallow nets: ``W`` (B, width, in), ``b`` (B, width) or None, ``V`` (B, out, width)."""
    W, V = jnp.asarray(W, float), jnp.asarray(V, float)
    return _module(
        gf.ShallowReLU,
        W=W,
        b=None if b is None else jnp.asarray(b, float),
        V=V,
        in_size=W.shape[-1],
        width=W.shape[-2],
        out_size=V.shape[-2],
    )


def toy_inits(rng, n, width=2, magnitudes=(0.1, 1.0)):
    """``n`` random toy-problem inits (d=2, e=1): Gaussian weights moved by Prop. 4 to
    ``|delta_k|`` drawn from ``magnitudes`` with random signs; random output signs."""
    W, V = rng.normal(size=(n, width, 2)) / np.sqrt(2), rng.normal(size=(n, 1, width)) / np.sqrt(width)
    delta = rng.choice((-1.0, 1.0), (n, width)) * rng.choice(magnitudes, (n, width))
    w_sq, v_sq = np.sum(W**2, axis=-1), V[:, 0] ** 2
    alpha = np.sqrt((delta + np.sqrt(delta**2 + 4 * w_sq * v_sq)) / (2 * w_sq))
    return shallow_batch(W * alpha[..., None], None, V / alpha[:, None, :]), delta
