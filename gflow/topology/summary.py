"""Everything gflow knows about one invariant set, as a plain dict: Betti numbers and
components of a shallow net (Theorem 1, Cor. 1), the DAG count ``2^{#rigid edges}``, the
point's label and its singular sub-networks (docs/theory.md §1-2). ``gflow topology``
prints these."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..invariants import conserved
from ..nets.base import AbstractReLUNet
from ..nets.dag import Graph
from ..nets.shallow import ShallowReLU
from . import shallow as tp
from .dag import dag_components, dag_rigid_edges, shallow_graph, singular_subnetworks

__all__ = ["shallow_summary", "delta_summary", "model_summary", "dag_summary"]


def shallow_summary(d: int, e: int, delta, bias: bool, tol: float) -> dict:
    """Counts, Betti numbers, Poincaré polynomial and components of ``Q(delta)`` of a shallow
    net with ``d`` inputs, ``e`` outputs (``delta``: one conserved value per neuron)."""
    pos, neg, zero = tp.neuron_counts(d, e, delta, bias, tol=tol)
    betti = tp.betti_numbers(d, e, delta, bias, tol=tol)
    out: dict[str, Any] = dict(
        in_size=d,
        out_size=e,
        bias=bias,
        delta=[float(x) for x in delta],
        n_positive=pos,
        n_negative=neg,
        n_zero=zero,
        betti_numbers=betti,
        poincare_polynomial=_poly(betti),
        n_components=tp.n_components(d, e, delta, bias, tol=tol),
    )
    try:
        out["n_effective_components"] = tp.n_effective_components(d, e, delta, bias, tol=tol)
    except ValueError:
        out["n_effective_components"] = None  # defined for e = 1, d(+bias) >= 2
    return out


def _poly(betti) -> str:
    terms = [
        (f"{b}" if j == 0 else f"{'' if b == 1 else b}t{'' if j == 1 else '^' + str(j)}")
        for j, b in enumerate(betti)
        if b
    ]
    return " + ".join(terms) or "0"


def delta_summary(d: int, e: int, delta, bias: bool, tol: float) -> dict:
    """:func:`shallow_summary` plus the DAG count of the same shallow net."""
    out = shallow_summary(d, e, delta, bias, tol)
    graph = shallow_graph(d, len(delta), e, bias=bias)
    out["dag_n_components"] = dag_components(graph, delta, tol=tol)[0]
    out.update(label=None, effective_label=None, singular_subnetworks=None)
    return out


def model_summary(model: AbstractReLUNet, tol: float) -> dict:
    """The summary of the invariant set through ``model``: for a shallow net the Betti numbers
    and its component label (Prop. 3), for every network the DAG count, label and singular
    sub-networks."""
    c = np.asarray(conserved(model), dtype=float)
    out: dict[str, Any] = dict(type=type(model).__name__)
    # the Betti numbers and Prop. 3's labels are the shallow-net formulas (one hidden layer, W and V)
    shallow = isinstance(model, ShallowReLU)
    if shallow:
        out.update(shallow_summary(model.in_size, model.out_size, c, model.bias, tol))
    else:
        out.update({k: v for k, v in model.spec().items() if k not in ("type", "graph")})
        out.update(c=c.tolist(), betti_numbers=None, n_effective_components=None)
    count, label = dag_components(model, c=c, tol=tol)
    assert label is not None  # a network brings its weights, so its component has a label
    out.update(dag_n_components=count, dag_label=list(label))
    if shallow and model.out_size == 1:
        lab = np.asarray(tp.component_label(model, tol=tol))
        out["label"] = [int(x) for x in lab[lab != 0]]
        out["effective_label"] = int(np.sum(lab < 0)) if out["n_effective_components"] is not None else None
    else:
        out.update(label=list(label), effective_label=None)
    out["singular_subnetworks"] = [sorted(s, key=lambda h: int(h[1:])) for s in singular_subnetworks(model)]
    return out


def dag_summary(graph: Graph, c=None, weights=None) -> dict:
    """Rigid edges, components, label and singular sub-networks of a DAG given its conserved
    values ``c`` (one per hidden node) or its ``weights`` (one per edge; ``c`` follows)."""
    if weights is not None:
        weights = np.asarray(weights, dtype=float)
        c = graph.incidence @ weights**2
    c = np.asarray(c, dtype=float)
    rigid = dag_rigid_edges(graph, c)
    count, label = dag_components(graph, c, weights)
    return dict(
        inputs=graph.n_in,
        hidden=graph.n_hidden,
        outputs=graph.n_out,
        n_edges=graph.n_edges,
        c=c.tolist(),
        betti_numbers=None,
        n_components=count,
        rigid_edges=[list(graph.edges[e]) for e in rigid],
        label=None if label is None else list(label),
        singular_subnetworks=None
        if weights is None
        else [sorted(s, key=lambda h: int(h[1:])) for s in singular_subnetworks(graph, weights)],
    )
