"""Connected components and singular points of the invariant set of a DAG ReLU net.

docs/theory.md §2 (DAG paper). For every hidden node h, ``c_h = sum_{e into h} w_e^2 -
sum_{e out of h} w_e^2`` is conserved. With ``u = w * w`` and ``B`` the hidden x edge
incidence matrix (``graph.incidence``) the invariant set ``{w : B (w*w) = c}`` maps onto
the polytope ``P(c) = {u >= 0 : B u = c}``.

**Components.** An edge is *rigid* when ``min u_e > 0`` over ``P(c)``. Along a path in the
invariant set a weight can only change sign by passing through zero, so rigid signs are
fixed; every other sign can be flipped on its own (move in the convex ``P(c)`` to a point
with ``u_e = 0`` and back). Hence ``b_0 = 2^{#rigid}`` and a point's component is
labelled by the signs of its rigid weights. One linear program per edge decides
rigidity (HiGHS via :func:`scipy.optimize.linprog`).

**Singularities.** The Jacobian ``2 B diag(w)`` of ``w -> B(w*w)`` loses rank exactly when
a set S of hidden nodes, connected through non-zero edges, has every edge between S and
the rest of the graph equal to zero (then ``sum_{h in S} c_h = 0``).

Shallow nets and MLPs go through the same code (via :func:`gflow.as_dag`); Corollary 1's
closed form (:func:`gflow.n_components`) is the special case, checked in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
from jaxtyping import ArrayLike, Real

from ..nets.base import AbstractReLUNet
from ..nets.dag import Graph
from ..nets.spec import as_dag

GraphLike: TypeAlias = Graph | AbstractReLUNet
"""A :class:`Graph`, or a ReLU network (shallow, MLP, DAG) whose graph and weights are used."""
HiddenValues: TypeAlias = Real[ArrayLike, " hidden"] | Sequence[float | int]
"""One value per hidden node (the conserved values ``c``)."""
EdgeValues: TypeAlias = Real[ArrayLike, " edges"] | Sequence[float | int]
"""One value per edge (the weights), in ``graph.edges`` order."""

__all__ = [
    "shallow_graph",
    "dag_rigid_edges",
    "dag_components",
    "singular_subnetworks",
    "is_singular",
    "TOL",
    "LP_TOL",
]

TOL = 1e-9
"""The one tolerance of the component counts, shallow (:func:`gflow.n_components`) and DAG
(:func:`dag_components`) alike: a conserved value ``c_h`` counts as zero when ``|c_h| <=
TOL * max(1, max_h |c_h|)``. Relative to the largest value, so that scaling a network does
not change its count; ``1e-9`` sits far above float64 round-off of ``conserved`` and ten
times above the feasibility tolerance the linear programs are solved to (``1e-10``), so
both counts decide every conserved value the same way (tested on a grid of values in
``[-1e-6, 1e-6]``)."""

LP_TOL = TOL
"""Former name of :data:`TOL` (the DAG count's tolerance), kept for old code."""

_HIGHS = dict(primal_feasibility_tolerance=1e-10, dual_feasibility_tolerance=1e-10)


def zero_scale(c, tol: float) -> float:
    """``tol * max(1, max |c|)``: conserved values at or below it in magnitude count as zero."""
    return tol * max(1.0, float(np.max(np.abs(c), initial=0.0)))


def check_tol(tol) -> float:
    """``tol`` as a finite number >= 0, or one sentence naming it."""
    from .._validate import FIELDS

    return FIELDS["tol"](tol, "tol")


def _graph_c_w(graph, c=None, weights=None):
    """Resolve ``(graph, c, weights)`` from a Graph or a ShallowReLU / MLP / DAGNet."""
    if isinstance(graph, AbstractReLUNet):  # any ReLU network is a DAG (interface: as_dag)
        model = as_dag(graph)
        own = np.asarray(model.weights, dtype=float)
        if own.ndim != 1:
            raise ValueError("give one network, not a batch (vmap-ed leading axes).")
        graph = model.graph
        if c is None:  # = conserved(model), in the same order (hidden nodes h0, h1, ...)
            c = graph.incidence @ own**2
        if weights is None:
            weights = own
    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a gflow Graph or a ShallowReLU, MLP or DAGNet; got {type(graph).__name__}.")
    if c is not None:
        c = np.asarray(c, dtype=float).reshape(-1)
        if c.shape != (graph.n_hidden,) or not np.all(np.isfinite(c)):
            raise ValueError(
                f"c must be a finite vector with one value per hidden node ({graph.n_hidden}), got shape {c.shape}."
            )
    if weights is not None:
        weights = np.asarray(weights, dtype=float).reshape(-1)
        if weights.shape != (graph.n_edges,) or not np.all(np.isfinite(weights)):
            raise ValueError(
                f"weights must be a finite vector with one value per edge ({graph.n_edges}), got shape {weights.shape}."
            )
    return graph, c, weights


def shallow_graph(in_size: int, width: int, out_size: int = 1, *, bias: bool = False) -> Graph:
    """The :class:`Graph` of a shallow net, edges in :func:`gflow.as_dag`'s order (no weights drawn)."""
    edges = []
    for k in range(width):
        edges += [(f"x{i}", f"h{k}") for i in range(in_size)] + ([("1", f"h{k}")] if bias else [])
    edges += [(f"h{k}", f"y{j}") for j in range(out_size) for k in range(width)]
    return Graph(in_size, width, out_size, tuple(edges))


def dag_rigid_edges(graph: GraphLike, c: HiddenValues | None = None, *, tol: float = TOL) -> list[int]:
    """Indices (into ``graph.edges``) of the rigid edges for conserved values ``c``.

    **Tolerance** (:data:`TOL` = 1e-9 by default, the same as :func:`gflow.n_components`):
    with ``s = max(1, max|c|)``, every ``|c_h| <= tol s`` counts as zero, and edge ``e`` is
    rigid when ``min {u_e : u >= 0, B u = c} > tol s / 2`` for the ``c`` so rounded (the
    linear programs are solved to 1e-10 of ``s``). For a shallow net this is Corollary 1's
    count with the same ``tol``. One LP per edge; an optimum that also has ``u_f ~ 0`` for
    other edges proves them non-rigid too, so their LPs are skipped. ``graph`` may be a
    network (then ``c`` defaults to its conserved values).

    **Raises:** ``ValueError`` when ``P(c)`` is empty (no weights have these conserved
    values), e.g. a hidden node with no outgoing edge and ``c_h < 0``.
    """
    graph, c, _ = _graph_c_w(graph, c)
    if c is None:
        raise ValueError("c (one conserved value per hidden node) is required with a Graph.")
    tol = check_tol(tol)
    B = graph.incidence
    n = graph.n_edges
    if B.shape[0] == 0:
        return []
    scale = max(1.0, float(np.max(np.abs(c), initial=0.0)))
    c = np.where(np.abs(c) <= tol * scale, 0.0, c / scale)  # solved at scale 1, near-zero values exactly 0
    threshold = tol / 2
    proven_flexible = np.zeros(n, dtype=bool)
    proven_flexible[~np.any(B != 0, axis=0)] = True  # input -> output edges: unconstrained
    # deliberately lazy: scipy.optimize is slow to import, and `import gflow` should not pay it (issue 21)
    import scipy.optimize

    rigid = []
    for e in range(n):
        if proven_flexible[e]:
            continue
        cost = np.zeros(n)
        cost[e] = 1.0
        res = scipy.optimize.linprog(cost, A_eq=B, b_eq=c, bounds=(0, None), method="highs", options=_HIGHS)
        if res.status == 2:
            raise ValueError(
                "c is not attainable on this graph: no weights have these conserved values "
                "(the polytope {u >= 0 : B u = c} is empty)."
            )
        if res.status != 0:
            raise RuntimeError(f"linprog failed on edge {graph.edges[e]}: {res.message}")
        if res.fun > threshold:
            rigid.append(e)
        else:
            proven_flexible |= res.x <= threshold
    return rigid


def dag_components(
    graph: GraphLike,
    c: HiddenValues | None = None,
    weights: EdgeValues | None = None,
    *,
    tol: float = TOL,
) -> tuple[int, tuple[int, ...] | None]:
    """Number of connected components ``2^{#rigid edges}`` of ``{w : B(w*w) = c}`` and the
    label of ``weights``: the signs (+1/-1; 0 for an exactly zero weight, which cannot lie on
    this set) of its rigid edges, in edge order, or ``None`` without weights.

    A conserved value counts as zero when ``|c_h| <= tol * max(1, max|c|)`` (:data:`TOL` =
    1e-9, the tolerance of :func:`gflow.n_components` too: for a shallow net both counts
    agree for every ``c``; see :func:`dag_rigid_edges`).

    ``graph`` may be a :class:`ShallowReLU`, :class:`MLP` or :class:`DAGNet`: then ``c``
    and ``weights`` default to the network's conserved values and weights.
    """
    graph, c, weights = _graph_c_w(graph, c, weights)
    rigid = dag_rigid_edges(graph, c, tol=tol)
    label = None if weights is None else tuple(int(np.sign(weights[e])) for e in rigid)
    return 2 ** len(rigid), label


def singular_subnetworks(
    graph: GraphLike, weights: EdgeValues | None = None, *, tol: float = 0.0
) -> list[frozenset[str]]:
    """Sets S of hidden node names, connected through non-zero edges, whose every edge to the
    rest of the graph (inputs, the constant node, outputs, other hidden nodes) is zero.

    These are exactly the points where the Jacobian ``2 B diag(w)`` of the conserved map
    loses rank: the rank deficit equals the number of sets returned (docs/theory.md §2).
    A weight with ``|w_e| <= tol`` counts as zero. ``graph`` may be a network (weights then
    default to its own). Sets are returned sorted by their smallest hidden index.
    """
    graph, _, weights = _graph_c_w(graph, None, weights)
    if weights is None:
        raise ValueError("weights (one per edge) are required with a Graph.")
    nonzero = np.abs(weights) > check_tol(tol)
    first, h = 1 + graph.n_in, graph.n_hidden
    parent = list(range(h))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ea = graph.edge_array - first
    is_hidden = (ea >= 0) & (ea < h)
    for (s, t), (hs, ht), nz in zip(ea, is_hidden, nonzero, strict=True):
        if hs and ht and nz:
            parent[find(s)] = find(t)
    roots = [find(i) for i in range(h)]
    touches_outside = np.zeros(h, dtype=bool)  # per root: a non-zero edge leaves the set
    for (s, t), (hs, ht), nz in zip(ea, is_hidden, nonzero, strict=True):
        if nz and hs != ht:
            touches_outside[roots[s] if hs else roots[t]] = True
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(roots):
        groups.setdefault(r, []).append(i)
    found = [sorted(members) for r, members in groups.items() if not touches_outside[r]]
    return [frozenset(f"h{i}" for i in members) for members in sorted(found)]


def is_singular(graph: GraphLike, weights: EdgeValues | None = None, *, tol: float = 0.0) -> bool:
    """Whether the Jacobian of the conserved map is rank-deficient at ``weights``
    (some :func:`singular_subnetworks` exists)."""
    return bool(singular_subnetworks(graph, weights, tol=tol))
