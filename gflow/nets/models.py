"""ReLU networks as Equinox modules: :class:`ShallowReLU`, :class:`MLP`, :class:`DAGNet`.

Every network is called on ONE input ``x`` of shape ``(in_size,)`` and returns shape
``(out_size,)``; batch with ``jax.vmap`` outside. Hidden units apply ``relu``; outputs
are linear. Biases, when on, belong to hidden units only (they are one more incoming
weight, THEORY.md §1), so the conserved quantities stay per hidden unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import numpy as np
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .dag import DAGNet, Graph
from .schemes import Scheme, get_scheme

__all__ = ["ShallowReLU", "MLP", "DAGNet", "Graph", "as_dag", "model_spec", "model_from_spec"]


def _gaussian(key, shape, std, dtype=None):
    dtype = dtype or jnp.result_type(float)
    return std * jr.normal(key, shape, dtype)


def _check_size(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


class ShallowReLU(eqx.Module):
    """One hidden layer: ``f(x) = V relu(W x + b)``.

    **Fields:** ``W`` (width, in), ``b`` (width,) or ``None``, ``V`` (out, width).
    Hidden neuron k has incoming weights ``w_k = W[k]`` (with ``b[k]`` appended when
    biases are on) and outgoing weights ``v_k = V[:, k]``.
    """

    W: Float[Array, "width in"]
    b: Float[Array, " width"] | None
    V: Float[Array, "out width"]
    in_size: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

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
        self.in_size = _check_size("in_size", in_size)
        self.width = _check_size("width", width)
        self.out_size = _check_size("out_size", out_size)
        scheme = get_scheme(init)
        kw, kb, kv = jr.split(key, 3)
        sw = scheme.std(in_size, width, False)
        self.W = _gaussian(kw, (width, in_size), sw)
        self.b = _gaussian(kb, (width,), sw) if bias else None
        self.V = _gaussian(kv, (out_size, width), scheme.std(width, out_size, True))

    @property
    def bias(self) -> bool:
        return self.b is not None

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        z = self.W @ x
        if self.b is not None:
            z = z + self.b
        return self.V @ jax.nn.relu(z)


class MLP(eqx.Module):
    """A ReLU multilayer perceptron ``x -> W_L relu(... relu(W_1 x + b_1) ...)``.

    **Fields:** ``weights`` (a tuple of matrices, ``weights[i]`` of shape
    ``(sizes[i+1], sizes[i])``) and ``biases`` (a tuple with one vector per hidden layer,
    or ``None`` entries). ``hidden`` gives the hidden widths; depth = ``len(hidden)``.
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
        self.in_size = _check_size("in_size", in_size)
        self.hidden = tuple(_check_size("hidden width", h) for h in hidden)
        if not self.hidden:
            raise ValueError("hidden must list at least one hidden width.")
        self.out_size = _check_size("out_size", out_size)
        scheme = get_scheme(init)
        sizes = (in_size, *self.hidden, out_size)
        keys = jr.split(key, 2 * (len(sizes) - 1))
        weights, biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            is_output = i == len(sizes) - 2
            std = scheme.std(fan_in, fan_out, is_output)
            weights.append(_gaussian(keys[2 * i], (fan_out, fan_in), std))
            if not is_output:
                biases.append(_gaussian(keys[2 * i + 1], (fan_out,), std) if bias else None)
        self.weights = tuple(weights)
        self.biases = tuple(biases)

    @property
    def bias(self) -> bool:
        return self.biases[0] is not None

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        for W, b in zip(self.weights[:-1], self.biases):
            x = W @ x
            if b is not None:
                x = x + b
            x = jax.nn.relu(x)
        return self.weights[-1] @ x


def model_spec(model) -> dict:
    """A JSON-serializable description of a network's architecture (not its weights)."""
    if isinstance(model, ShallowReLU):
        return dict(
            type="ShallowReLU", in_size=model.in_size, width=model.width, out_size=model.out_size, bias=model.bias
        )
    if isinstance(model, MLP):
        return dict(
            type="MLP", in_size=model.in_size, hidden=list(model.hidden), out_size=model.out_size, bias=model.bias
        )
    if isinstance(model, DAGNet):
        return dict(type="DAGNet", graph=model.graph.to_json())
    raise ValueError(f"model must be a ShallowReLU, MLP or DAGNet, got {type(model).__name__}.")


def model_from_spec(spec: dict, key: PRNGKeyArray | None = None):
    """Build a network from :func:`model_spec` output (weights drawn with ``key``)."""
    key = jr.PRNGKey(0) if key is None else key
    kind = spec.get("type")
    if kind == "ShallowReLU":
        return ShallowReLU(spec["in_size"], spec["width"], spec["out_size"], bias=spec["bias"], key=key)
    if kind == "MLP":
        return MLP(spec["in_size"], spec["hidden"], spec["out_size"], bias=spec["bias"], key=key)
    if kind == "DAGNet":
        return DAGNet(Graph.from_json(spec["graph"]), key=key)
    raise ValueError(f"model type must be ShallowReLU, MLP or DAGNet, got {kind!r}.")


def as_dag(model) -> DAGNet:
    """The same network as a :class:`DAGNet` (edges listed hidden unit by hidden unit).

    A :class:`ShallowReLU` or :class:`MLP` is the special case of a DAG whose nodes are
    arranged in layers (THEORY.md §2); the returned ``DAGNet`` computes the same function
    and has the same conserved quantities, in the same order.
    """
    if isinstance(model, DAGNet):
        return model
    if isinstance(model, ShallowReLU):
        mats, biases = (model.W, model.V), (model.b,)
        sizes = (model.in_size, model.width, model.out_size)
    elif isinstance(model, MLP):
        mats, biases = model.weights, model.biases
        sizes = (model.in_size, *model.hidden, model.out_size)
    else:
        raise ValueError(f"model must be a ShallowReLU, MLP or DAGNet, got {type(model).__name__}.")
    offsets = np.cumsum((0,) + sizes[1:-1])  # first hidden index of each hidden layer

    def name(layer, i):
        if layer == 0:
            return f"x{i}"
        if layer == len(sizes) - 1:
            return f"y{i}"
        return f"h{offsets[layer - 1] + i}"

    edges, values = [], []
    for layer, (W, b) in enumerate(zip(mats, (*biases, None))):
        for j in range(W.shape[0]):
            edges.extend((name(layer, i), name(layer + 1, j)) for i in range(W.shape[1]))
            if b is not None:
                edges.append(("1", name(layer + 1, j)))
        # row j of W, then b[j]: the order of the edges above, in one array op
        values.append((W if b is None else jnp.concatenate([W, b[:, None]], axis=1)).reshape(-1))
    graph = Graph(sizes[0], int(sum(sizes[1:-1])), sizes[-1], tuple(edges))
    return DAGNet(graph, key=jr.PRNGKey(0), weights=jnp.concatenate(values))
