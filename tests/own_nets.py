"""Users' own networks for tests/test_own_networks.py: plain Equinox modules, a class
implementing the ReLU-network interface, and sweep factories (``own_nets:name``)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import gflow as gf


def eqx_mlp(in_size, width, depth, *, bias, key, activation=jax.nn.relu, final_bias=False):
    return eqx.nn.MLP(
        in_size, 1, width, depth, activation=activation, use_bias=bias, use_final_bias=final_bias, key=key
    )


def sequential(in_size, key):
    k1, k2, k3 = jr.split(key, 3)
    return eqx.nn.Sequential(
        [
            eqx.nn.Linear(in_size, 4, key=k1),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Linear(4, 3, use_bias=False, key=k2),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Linear(3, 1, key=k3),
        ]
    )


def cnn(key, channels=(2, 3)):
    """Two ReLU conv layers on 1x8x8 inputs and a linear head (channel-major flatten)."""
    k1, k2, k3 = jr.split(key, 3)
    c1, c2 = channels
    return eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(1, c1, 3, padding=1, key=k1),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Conv2d(c1, c2, 3, padding=1, key=k2),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Lambda(jnp.ravel),
            eqx.nn.Linear(c2 * 64, 1, key=k3),
        ]
    )


class SkipNet(gf.AbstractReLUNet):
    """``f(x) = V relu(W x + b) + U x``: a ReLU layer plus a linear skip connection, written
    by a user against the interface (the skip weights belong to no hidden unit)."""

    W: jax.Array
    b: jax.Array
    V: jax.Array
    U: jax.Array

    def __init__(self, in_size, width, *, key):
        kw, kb, kv, ku = jr.split(key, 4)
        self.W = jr.normal(kw, (width, in_size)) / np.sqrt(in_size)
        self.b = 0.1 * jr.normal(kb, (width,))
        self.V = jr.normal(kv, (1, width)) / np.sqrt(width)
        self.U = 0.1 * jr.normal(ku, (1, in_size))

    def __call__(self, x):
        return self.V @ jax.nn.relu(self.W @ x + self.b) + self.U @ x

    def in_out_squares(self):
        return jnp.sum(self.W**2, axis=-1) + self.b**2, jnp.sum(self.V**2, axis=-2)

    def rescale(self, alphas):
        return eqx.tree_at(
            lambda m: (m.W, m.b, m.V), self, (self.W * alphas[:, None], self.b * alphas, self.V / alphas[None, :])
        )

    def hidden_preactivations(self, x):
        return self.W @ x + self.b

    def output_weights(self):
        return self.V.reshape(-1)

    def spec(self):
        return dict(type="SkipNet")

    def as_dag(self):
        raise NotImplementedError


class Quadratic(eqx.Module):
    """No homogeneity at all: ``f(x) = a . x + (b . x)^2 + c``."""

    a: jax.Array
    b: jax.Array
    c: jax.Array

    def __init__(self, in_size, *, key):
        ka, kb = jr.split(key)
        self.a = jr.normal(ka, (1, in_size)) / np.sqrt(in_size)
        self.b = 0.3 * jr.normal(kb, (in_size,))
        self.c = jnp.zeros(1)

    def __call__(self, x):
        return self.a @ x + jnp.dot(self.b, x) ** 2 + self.c


# ---------------------------------------------------------------- sweep factories (toy data: in_size 2)


def gflow_mlp_factory(key):
    return gf.MLP(2, (3,), 1, key=key)


def eqx_mlp_factory(key):
    """An ``eqx.nn.MLP`` holding exactly the weights ``gf.MLP(2, (3,), 1, key=key)`` draws."""
    own = gf.MLP(2, (3,), 1, key=key)
    net = eqx_mlp(2, 3, 1, bias=False, key=key)
    return eqx.tree_at(lambda m: (m.layers[0].weight, m.layers[1].weight), net, own.weights)


def tanh_factory(key):
    return eqx_mlp(2, 3, 1, bias=True, key=key, activation=jnp.tanh)


def quadratic_factory(key):
    return Quadratic(2, key=key)


def not_a_module(key):
    return 3


def wrong_output(key):
    return eqx.nn.MLP(2, 2, 3, 1, activation=jax.nn.relu, key=key)


def toy_data():
    x = np.asarray(jr.normal(jr.PRNGKey(7), (24, 2)))
    return x, np.maximum(x[:, 0], 0) - np.maximum(x[:, 1], 0)


NOT_CALLABLE = 5
