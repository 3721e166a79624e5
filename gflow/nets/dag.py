"""ReLU networks on a directed acyclic graph (docs/theory.md §2).

Nodes are a constant node ``"1"`` (a bias is an edge from it), inputs ``"x0".."x{d-1}"``,
hidden nodes ``"h0"..`` and outputs ``"y0"..``. Internally they are numbered
``[1, x0.., h0.., y0..]``. Each edge carries one weight; a hidden node computes
``relu(sum of weight * source value)``, an output the plain weighted sum.

Evaluation runs level by level (a hidden node's level is the length of the longest
path to it from an input), each level one dense ``(nodes, level width)`` matmul, so a
DAG costs about what an MLP of the same depth and size costs.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .base import AbstractReLUNet
from .schemes import Scheme, get_scheme

_NAME = re.compile(r"^(x|h|y)(\d+)$")


@dataclasses.dataclass(frozen=True)
class Graph:
    """A DAG over ``n_in`` inputs, ``n_hidden`` hidden nodes and ``n_out`` outputs.

    ``edges`` is a tuple of ``(source, target)`` node names, e.g.
    ``(("x0", "h0"), ("1", "h0"), ("h0", "y0"), ("x1", "y0"))``.
    """

    n_in: int
    n_hidden: int
    n_out: int
    edges: tuple[tuple[str, str], ...]

    def __post_init__(self):
        for name in ("n_in", "n_out"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"graph {name} must be a positive integer, got {getattr(self, name)!r}.")
        if not isinstance(self.n_hidden, int) or self.n_hidden < 0:
            raise ValueError(f"graph n_hidden must be a non-negative integer, got {self.n_hidden!r}.")
        object.__setattr__(self, "edges", tuple((str(s), str(t)) for s, t in self.edges))
        if len(set(self.edges)) != len(self.edges):
            raise ValueError("graph edges must not repeat.")
        for s, t in self.edges:
            si, ti = self.index(s), self.index(t)
            if si >= self.n_nodes - self.n_out:
                raise ValueError(f"graph edge {s}->{t}: an output node cannot be a source.")
            if ti <= self.n_in:
                raise ValueError(f"graph edge {s}->{t}: inputs and the constant node '1' cannot be targets.")
        _ = self.levels  # computed (and cached) now: raises on a cycle

    @property
    def n_nodes(self) -> int:
        return 1 + self.n_in + self.n_hidden + self.n_out

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    def index(self, name: str) -> int:
        """Internal index of a node name (``"1"``, ``"x3"``, ``"h0"``, ``"y1"``)."""
        if name == "1":
            return 0
        m = _NAME.match(name)
        limits = {"x": self.n_in, "h": self.n_hidden, "y": self.n_out}
        if m is None or int(m.group(2)) >= limits[m.group(1)]:
            raise ValueError(
                f"graph node {name!r} is not valid: use '1', x0..x{self.n_in - 1}, "
                f"h0..h{self.n_hidden - 1}, y0..y{self.n_out - 1}."
            )
        offset = {"x": 1, "h": 1 + self.n_in, "y": 1 + self.n_in + self.n_hidden}
        return offset[m.group(1)] + int(m.group(2))

    def hidden_index(self, name: str) -> int:
        return self.index(name) - 1 - self.n_in

    @functools.cached_property
    def edge_array(self) -> np.ndarray:
        """``(n_edges, 2)`` int array of internal (source, target) indices."""
        return np.array([(self.index(s), self.index(t)) for s, t in self.edges], dtype=np.int64).reshape(-1, 2)

    @functools.cached_property
    def incidence(self) -> np.ndarray:
        """Hidden-node x edge incidence ``B``: +1 for an edge into h, -1 out of h."""
        B = np.zeros((self.n_hidden, self.n_edges))
        first = 1 + self.n_in
        for e, (s, t) in enumerate(self.edge_array):
            if first <= t < first + self.n_hidden:
                B[t - first, e] += 1.0
            if first <= s < first + self.n_hidden:
                B[s - first, e] -= 1.0
        return B

    @functools.cached_property
    def levels(self) -> tuple[tuple[int, ...], ...]:
        """Hidden nodes (internal indices) grouped by longest-path depth, then outputs."""
        first, n = 1 + self.n_in, self.n_hidden
        preds = {h: [] for h in range(first, first + n)}
        for s, t in self.edge_array:
            if t in preds and s >= first:
                preds[int(t)].append(int(s))
        depth: dict[int, int] = {}
        visiting: set[int] = set()

        def visit(h):
            if h in depth:
                return depth[h]
            if h in visiting:
                raise ValueError("graph edges must not form a cycle.")
            visiting.add(h)
            depth[h] = 1 + max((visit(p) for p in preds[h]), default=0)
            visiting.discard(h)
            return depth[h]

        for h in preds:
            visit(h)
        n_levels = max(depth.values(), default=0)
        groups = [tuple(h for h in preds if depth[h] == lv) for lv in range(1, n_levels + 1)]
        groups.append(tuple(range(first + n, self.n_nodes)))
        return tuple(groups)

    def to_json(self) -> dict:
        return dict(inputs=self.n_in, hidden=self.n_hidden, outputs=self.n_out, edges=[list(e) for e in self.edges])

    @classmethod
    def from_json(cls, obj: dict) -> "Graph":
        """Parse ``{"inputs": d, "hidden": h, "outputs": e, "edges": [["x0","h0"], ...]}``."""
        missing = {"inputs", "hidden", "outputs", "edges"} - set(obj)
        if missing:
            raise ValueError(
                f"graph JSON is missing {', '.join(sorted(missing))}; it needs inputs, hidden, outputs and edges."
            )
        if any(not isinstance(e, (list, tuple)) or len(e) != 2 for e in obj["edges"]):
            raise ValueError("graph edges must be pairs [source, target] of node names.")
        return cls(obj["inputs"], obj["hidden"], obj["outputs"], tuple(tuple(e) for e in obj["edges"]))


def _fans(graph: Graph):
    """Per edge: (in-degree of target without the constant node, out-degree of source)."""
    ea = graph.edge_array
    indeg = np.bincount(ea[ea[:, 0] != 0, 1], minlength=graph.n_nodes)
    outdeg = np.bincount(ea[:, 0], minlength=graph.n_nodes)
    return np.maximum(indeg[ea[:, 1]], 1), outdeg[ea[:, 0]]


class DAGNet(AbstractReLUNet):
    """A ReLU network on a :class:`Graph`; ``weights[e]`` is the weight of ``graph.edges[e]``.

    Initial weights are Gaussian with ``std = scheme.std(fan_in, fan_out, is_output)``,
    where for an edge ``u -> v`` ``fan_in`` is ``v``'s number of non-constant inputs and
    ``fan_out`` is ``u``'s out-degree (this reproduces the layered conventions on MLPs).
    """

    weights: Float[Array, " edges"]
    graph: Graph = eqx.field(static=True)

    def __init__(
        self, graph: Graph, *, init: str | Scheme = "kaiming", key: PRNGKeyArray, weights: Array | None = None
    ):
        self.graph = graph
        if weights is None:
            scheme = get_scheme(init)
            fan_in, fan_out = _fans(graph)
            is_out = graph.edge_array[:, 1] >= graph.n_nodes - graph.n_out
            stds = [scheme.std(int(a), int(b), bool(o)) for a, b, o in zip(fan_in, fan_out, is_out, strict=True)]
            std = np.array(stds)
            weights = jnp.asarray(std) * jr.normal(key, (graph.n_edges,), jnp.result_type(float))
        self.weights = jnp.asarray(weights)

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        return self._forward(x)[1]

    def _forward(self, x):
        """``(hidden pre-activations, outputs)`` at one input, level by level."""
        out, pre, _ = self.masked_forward(x)
        return pre, out

    def masked_forward(self, x, pattern=None, offset=None):
        g = self.graph
        n_act = 1 + g.n_in + g.n_hidden
        first = 1 + g.n_in  # activation index of hidden node 0
        a = jnp.zeros(n_act, self.weights.dtype).at[0].set(1.0).at[1:first].set(x)
        pre = jnp.zeros(n_act, self.weights.dtype)
        in_sq = jnp.zeros(n_act, self.weights.dtype)
        for level, (nodes, eids, src, dst) in zip(g.levels, _level_edges(g), strict=True):
            M = jnp.zeros((n_act, len(nodes)), self.weights.dtype).at[src, dst].add(self.weights[eids])
            z = a @ M
            if level[0] >= n_act:  # the output level
                return z, pre[first:], in_sq[first:]
            idx = np.asarray(nodes)
            feeds = jnp.zeros((n_act, len(nodes)), self.weights.dtype).at[src, dst].set(1.0)
            in_sq = in_sq.at[idx].set(a**2 @ feeds)
            pre = pre.at[idx].set(z)
            act = jax.nn.relu(z) if pattern is None else pattern[idx - first] * z
            a = a.at[idx].set(act if offset is None else act + offset[idx - first])
        raise AssertionError("unreachable: the last level holds the outputs")

    def in_out_squares(self):
        B = self.graph.incidence
        sq = self.weights**2
        return sq @ np.maximum(B, 0).T, sq @ np.maximum(-B, 0).T

    def rescale(self, alphas):
        g = self.graph
        node_scale = jnp.concatenate([jnp.ones(1 + g.n_in, alphas.dtype), alphas, jnp.ones(g.n_out, alphas.dtype)])
        ea = g.edge_array
        return eqx.tree_at(lambda m: m.weights, self, self.weights * node_scale[ea[:, 1]] / node_scale[ea[:, 0]])

    def hidden_preactivations(self, x):
        return self._forward(x)[0]

    def output_weights(self):
        g = self.graph
        into_out = np.nonzero(g.edge_array[:, 1] >= g.n_nodes - g.n_out)[0]
        return self.weights[into_out]

    def spec(self) -> dict:
        return dict(type="DAGNet", graph=self.graph.to_json())

    def as_dag(self) -> DAGNet:
        return self


@functools.lru_cache(maxsize=256)
def _level_edges(graph: Graph):
    """Per level: (nodes, edge ids into them, their source indices, local target index)."""
    ea = graph.edge_array
    out = []
    for nodes in graph.levels:
        local = {n: i for i, n in enumerate(nodes)}
        eids = np.array([e for e in range(graph.n_edges) if int(ea[e, 1]) in local], dtype=np.int64)
        dst = np.array([local[int(ea[e, 1])] for e in eids], dtype=np.int64)
        out.append((nodes, eids, ea[eids, 0] if len(eids) else eids, dst))
    return tuple(out)


def layered_as_dag(mats, biases, sizes) -> DAGNet:
    """A layered network (weight matrices ``mats``, hidden-layer ``biases``, layer ``sizes``)
    as a :class:`DAGNet`, edges listed hidden unit by hidden unit (row ``j`` of each matrix,
    then its bias), so the DAG's conserved quantities come in the layered order."""
    offsets = np.cumsum((0,) + tuple(sizes[1:-1]))  # first hidden index of each hidden layer

    def name(layer, i):
        if layer == 0:
            return f"x{i}"
        if layer == len(sizes) - 1:
            return f"y{i}"
        return f"h{offsets[layer - 1] + i}"

    edges, values = [], []
    for layer, (W, b) in enumerate(zip(mats, (*biases, None), strict=True)):
        for j in range(W.shape[0]):
            edges.extend((name(layer, i), name(layer + 1, j)) for i in range(W.shape[1]))
            if b is not None:
                edges.append(("1", name(layer + 1, j)))
        # row j of W, then b[j]: the order of the edges above, in one array op
        values.append((W if b is None else jnp.concatenate([W, b[:, None]], axis=1)).reshape(-1))
    graph = Graph(sizes[0], int(sum(sizes[1:-1])), sizes[-1], tuple(edges))
    return DAGNet(graph, key=jr.PRNGKey(0), weights=jnp.concatenate(values))
