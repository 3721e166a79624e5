"""Components and singularities of DAG invariant sets (THEORY.md §2).

Rigidity is checked three independent ways: Corollary 1's closed form for shallow nets,
counts derived by hand for small DAGs with skip connections, and a brute-force dual:
by LP duality ``min {u_e : u >= 0, B u = c} = max {c.y : y_t - y_s <= [f = e] for every
edge f = s -> t}`` (``y = 0`` on inputs, the constant node and outputs). The constraint
matrix is a network matrix (totally unimodular) and, when every hidden node lies on an
input-to-output path, every feasible ``y`` lies in ``[-1, 1]^H``; so the maximum is
attained on ``{-1, 0, 1}^H``, which we enumerate.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topo_nets import mlp, shallow, shallow_with_delta

import gflow as gf
from gflow.topology.dag import dag_components, dag_rigid_edges, is_singular, singular_subnetworks


def rigid_by_potentials(graph, c, tol=1e-9):
    """Rigid edges by enumerating the dual potentials ``y in {-1, 0, 1}^H`` (see module doc)."""
    H = graph.n_hidden
    first = 1 + graph.n_in
    Y = np.array(list(itertools.product((-1, 0, 1), repeat=H)), dtype=float).reshape(-1, H)
    Yfull = np.zeros((len(Y), graph.n_nodes))
    Yfull[:, first : first + H] = Y
    ea = graph.edge_array
    D = Yfull[:, ea[:, 1]] - Yfull[:, ea[:, 0]]  # y_t - y_s per potential and edge
    value = Y @ np.asarray(c)
    rigid = []
    for e in range(graph.n_edges):
        others = np.delete(D, e, axis=1)
        feasible = np.all(others <= 0, axis=1) & (D[:, e] <= 1)
        if np.max(value[feasible]) > tol:
            rigid.append(e)
    return rigid


def edge(graph, s, t):
    return graph.edges.index((s, t))


# ---------------------------------------------------------------- shallow nets: Corollary 1


NEAR_ZERO = sorted(
    {s * x for s in (1, -1) for x in (0.0, 1e-13, 1e-11, 1e-10, 4e-10, 9e-10, 1.2e-9, 3e-9, 1e-8, 1e-7, 1e-6)}
)


@pytest.mark.parametrize("d,e,bias", [(1, 1, False), (2, 1, False), (1, 2, False), (1, 1, True), (2, 2, True)])
def test_one_tolerance_for_both_counts(d, e, bias):
    """``n_components`` and ``dag_components`` agree for shallow nets with a conserved value
    anywhere in [-1e-6, 1e-6], on both sides of the shared tolerance ``TOL * max(1, max|c|)``
    (the example of issue 17: delta = (-1e-8, 1, 1) counts 2 components both ways, d = e = 1;
    with the others scaled by 300 the same value is zero for both)."""
    assert gf.topology.TOL == 1e-9
    for x in NEAR_ZERO:
        for rest in ([1.0, 1.0], [-1.0, 2.0], [300.0, -1.0]):
            delta = [x, *rest]
            graph = gf.topology.dag.shallow_graph(d, 3, e, bias=bias)
            assert dag_components(graph, delta)[0] == gf.n_components(d, e, delta, bias), (x, rest)
    assert (
        gf.n_components(1, 1, [-1e-8, 1.0, 1.0])
        == dag_components(gf.topology.dag.shallow_graph(1, 3), [-1e-8, 1, 1])[0]
        == 8
    )
    assert gf.neuron_counts(1, 1, [1e-8, 1.0]) == (2, 0, 0) and gf.neuron_counts(1, 1, [1e-10, 1.0]) == (1, 0, 1)
    assert gf.neuron_counts(1, 1, [1e-6, 300.0]) == (2, 0, 0) and gf.neuron_counts(1, 1, [2e-7, 300.0]) == (1, 0, 1)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(
    d=st.integers(1, 3),
    e=st.integers(1, 3),
    signs=st.lists(st.sampled_from((-1, 0, 1)), min_size=1, max_size=4),
    bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_shallow_components_match_corollary1(d, e, signs, bias, seed):
    rng = np.random.default_rng(seed)
    delta = np.array(signs, float) * rng.uniform(0.2, 2.0, len(signs))
    model = shallow_with_delta(rng, d, len(signs), e, delta, bias)
    count, label = dag_components(model)
    assert count == gf.n_components(d, e, delta, bias)
    # which edges: outputs of delta<0 neurons when e=1, inputs of delta>0 neurons when d(+bias)=1
    dag = gf.as_dag(model)
    graph = dag.graph
    expected = set()
    for k, s in enumerate(signs):
        if s < 0 and e == 1:
            expected.add(edge(graph, f"h{k}", "y0"))
        if s > 0 and d + bias == 1:
            expected.add(edge(graph, "x0", f"h{k}"))
    assert set(dag_rigid_edges(graph, graph.incidence @ np.asarray(dag.weights) ** 2)) == expected
    if e == 1 and d + bias > 1:  # Prop. 3's label: signs of v over pathological neurons
        v = np.asarray(model.V[0])
        assert label == tuple(int(np.sign(v[k])) for k, s in enumerate(signs) if s < 0)


# ---------------------------------------------------------------- MLPs and random DAGs: dual brute force


@settings(max_examples=90, deadline=None, derandomize=True)
@given(
    d=st.integers(1, 3),
    hidden=st.lists(st.integers(1, 3), min_size=2, max_size=2),
    e=st.integers(1, 2),
    bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_mlp_components_match_brute_force(d, hidden, e, bias, seed):
    rng = np.random.default_rng(seed)
    sizes = [d, *hidden, e]
    scales = rng.uniform(0.3, 2.0, len(sizes) - 1)  # vary which layers dominate c
    weights = [s * rng.normal(size=(b, a)) for s, a, b in zip(scales, sizes[:-1], sizes[1:], strict=True)]
    biases = [scales[i] * rng.normal(size=h) if bias else None for i, h in enumerate(hidden)]
    model = mlp(weights, biases)
    dag = gf.as_dag(model)
    c = dag.graph.incidence @ np.asarray(dag.weights) ** 2
    rigid = dag_rigid_edges(dag.graph, c)
    assert rigid == rigid_by_potentials(dag.graph, c)
    count, label = dag_components(model)
    assert count == 2 ** len(rigid)
    assert label == tuple(int(np.sign(dag.weights[i])) for i in rigid)


def random_dag(rng, n_in, n_hidden, n_out):
    """A random DAG in which every hidden node lies on an input-to-output path."""
    edges = set()
    for j in range(n_hidden):
        for i in range(n_in):
            if rng.random() < 0.5:
                edges.add((f"x{i}", f"h{j}"))
        if rng.random() < 0.3:
            edges.add(("1", f"h{j}"))
        for i in range(j):
            if rng.random() < 0.4:
                edges.add((f"h{i}", f"h{j}"))
        if not any(t == f"h{j}" and s != "1" for s, t in edges):
            edges.add((f"x{rng.integers(n_in)}", f"h{j}"))
    for j in reversed(range(n_hidden)):
        for o in range(n_out):
            if rng.random() < 0.5:
                edges.add((f"h{j}", f"y{o}"))
        if not any(s == f"h{j}" for s, t in edges):
            edges.add((f"h{j}", f"y{rng.integers(n_out)}"))
    for i in range(n_in):
        for o in range(n_out):
            if rng.random() < 0.3:
                edges.add((f"x{i}", f"y{o}"))
    return gf.Graph(n_in, n_hidden, n_out, tuple(sorted(edges)))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n_in=st.integers(1, 2), n_hidden=st.integers(1, 6), n_out=st.integers(1, 2), seed=st.integers(0, 2**32 - 1))
def test_random_dag_components_match_brute_force(n_in, n_hidden, n_out, seed):
    rng = np.random.default_rng(seed)
    graph = random_dag(rng, n_in, n_hidden, n_out)
    w = rng.normal(size=graph.n_edges) * rng.uniform(0.3, 2.0, graph.n_edges)
    c = graph.incidence @ w**2
    assert dag_rigid_edges(graph, c) == rigid_by_potentials(graph, c)


# ---------------------------------------------------------------- hand-made DAGs

CHAIN = gf.Graph(1, 2, 1, (("x0", "h0"), ("h0", "h1"), ("h1", "y0"), ("x0", "h1"), ("x0", "y0")))
#        u0           u1           u2           u3 (skip)    u4 (skip)
# h0: u0 - u1 = c0;   h1: u1 + u3 - u2 = c1;   u4 appears in no constraint (never rigid).
CHAIN_NO_SKIP = gf.Graph(1, 2, 1, (("x0", "h0"), ("h0", "h1"), ("h1", "y0")))

BOTTLENECK = gf.Graph(2, 3, 1, (("x0", "h0"), ("x1", "h1"), ("h0", "h2"), ("h1", "h2"), ("h2", "y0"), ("x0", "y0")))
#                               u0            u1            u2            u3            u4            u5 (skip)
# Every path from h0, h1 to the output passes through the bottleneck h2.
# h0: u0 - u2 = c0;   h1: u1 - u3 = c1;   h2: u2 + u3 - u4 = c2.

TWO_LAYER = gf.Graph(
    1,
    3,
    2,
    (("x0", "h0"), ("x0", "h1"), ("1", "h2"), ("h0", "h2"), ("h1", "h2"), ("h2", "y0"), ("h0", "y1"), ("x0", "h2")),
)
#                               u0 u1 u2 (bias) u3 u4 u5 u6 (skip over layer 2) u7 (skip over layer 1)
# h0: u0 - u3 - u6 = c0;   h1: u1 - u4 = c1;   h2: u2 + u3 + u4 + u7 - u5 = c2.

DEAD_END = gf.Graph(1, 1, 1, (("x0", "h0"), ("x0", "y0")))  # h0 has no outgoing edge: u0 = c0

HAND = [
    # c = (2, 1): u0 = 2 + u1 >= 2 rigid. u1 = 0 is feasible (u3 = 1 + u2), u2 = 0 too
    # (u1 + u3 = 1), u3 = 0 too (u1 = 1 + u2). Rigid {u0}: 2 components.
    (CHAIN, (2.0, 1.0), [0]),
    # Without the skip edge u1 = 1 + u2 >= 1 and u0 = 2 + u1 >= 3: 4 components.
    (CHAIN_NO_SKIP, (2.0, 1.0), [0, 1]),
    # c = (1, -2): u0 = 1 + u1 >= 1, u2 = u1 + u3 + 2 >= 2 rigid; u1 = u3 = 0 feasible: 4.
    (CHAIN, (1.0, -2.0), [0, 2]),
    # c = (-1, 1): u1 = u0 + 1 >= 1 rigid; u2 = u1 + u3 - 1 can be 0 (u0 = u3 = 0), u0 = u3 = 0: 2.
    (CHAIN, (-1.0, 1.0), [1]),
    # c = (1, 1, -3): u0 = 1 + u2, u1 = 1 + u3, u4 = u2 + u3 + 3 rigid; u2 = u3 = 0 feasible: 8.
    (BOTTLENECK, (1.0, 1.0, -3.0), [0, 1, 4]),
    # c = (-1, 0, 2): u2 = u0 + 1 >= 1 rigid. u3 = u1, u4 = u0 + u1 - 1: u0 = 0 (u1 = 1) and
    # u1 = 0 (u0 = 1) are feasible, so are u3 = 0 and u4 = 0. h2 has c > 0 and two inputs (a
    # shallow neuron's inputs would both be flexible), but h0 forces one of them: 2 components.
    (BOTTLENECK, (-1.0, 0.0, 2.0), [2]),
    # c = (-1, -1, 1): u2 = u0 + 1, u3 = u1 + 1, u4 = u2 + u3 - 1 >= 1 all rigid: 8.
    (BOTTLENECK, (-1.0, -1.0, 1.0), [2, 3, 4]),
    # c = (1, 2, -1): u0 = 1 + u3 + u6, u1 = 2 + u4, u5 = u2 + u3 + u4 + u7 + 1 rigid;
    # the others can all be 0 at once: 8.
    (TWO_LAYER, (1.0, 2.0, -1.0), [0, 1, 5]),
    # c = (-1, 1, 0): u3 + u6 = 1 + u0 >= 1 but either can be 0, so neither is rigid (h0 has two
    # outputs); u1 = 1 + u4 rigid; u5 = u2 + u3 + u4 + u7 can be 0 (take u6 = 1): 2.
    (TWO_LAYER, (-1.0, 1.0, 0.0), [1]),
    # c = (1,): u0 = 1: 2 components.
    (DEAD_END, (1.0,), [0]),
]


@pytest.mark.parametrize("graph,c,rigid", HAND)
def test_hand_made_dags(graph, c, rigid):
    assert dag_rigid_edges(graph, c) == rigid
    assert rigid_by_potentials(graph, c) == rigid or graph is DEAD_END  # brute force assumes paths to outputs
    count, label = dag_components(graph, c)
    assert count == 2 ** len(rigid) and label is None
    w = np.where(np.arange(graph.n_edges) % 2 == 0, 1.0, -1.0)
    assert dag_components(graph, c, w)[1] == tuple(int(w[i]) for i in rigid)


def test_dag_net_and_label_from_model(getkey):
    net = gf.DAGNet(BOTTLENECK, key=getkey())
    c = np.asarray(gf.conserved(net))
    count, label = dag_components(net)
    assert (count, label) == dag_components(BOTTLENECK, c, np.asarray(net.weights))


def test_infeasible_and_bad_input():
    with pytest.raises(ValueError, match="not attainable"):
        dag_rigid_edges(DEAD_END, (-1.0,))  # h0 cannot send anything out
    with pytest.raises(ValueError, match="one value per hidden node"):
        dag_rigid_edges(CHAIN, (1.0,))
    with pytest.raises(ValueError, match="required"):
        dag_rigid_edges(CHAIN)
    with pytest.raises(ValueError, match="one value per edge"):
        dag_components(CHAIN, (1.0, 1.0), np.ones(3))
    with pytest.raises(ValueError, match="Graph"):
        dag_components("x0->h0", (1.0,))


# ---------------------------------------------------------------- singular points


def test_cone_point_of_balanced_neuron():
    rng = np.random.default_rng(0)
    model = shallow_with_delta(rng, 2, 3, 1, [1.0, 0.0, -1.0])
    assert singular_subnetworks(model) == [] and not is_singular(model)
    W, V = np.array(model.W), np.array(model.V)
    W[1], V[:, 1] = 0.0, 0.0  # the apex of the cone ||w||^2 = ||v||^2
    cone = shallow(W, None, V)
    assert singular_subnetworks(cone) == [frozenset({"h1"})] and is_singular(cone)
    assert float(gf.conserved(cone)[1]) == 0.0


def test_cut_off_two_node_subnetwork():
    graph = gf.Graph(1, 3, 1, (("x0", "h0"), ("h0", "h1"), ("h1", "y0"), ("h0", "h2"), ("x0", "h2"), ("h2", "y0")))
    w = np.array([0.0, 1.3, 0.0, 0.0, 0.7, -0.4])  # only h0 -> h1 is non-zero around {h0, h1}
    assert singular_subnetworks(graph, w) == [frozenset({"h0", "h1"})]
    c = graph.incidence @ w**2
    assert c[0] + c[1] == 0.0 and c[0] != 0.0
    assert singular_subnetworks(graph, np.ones(6)) == []
    assert singular_subnetworks(graph, w + 1e-3, tol=1e-2) == [frozenset({"h0", "h1"})]


def test_mlp_generic_and_pruned_points():
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=(3, 2)), rng.normal(size=(2, 3)), rng.normal(size=(1, 2))]
    biases = [rng.normal(size=3), rng.normal(size=2)]
    assert not is_singular(mlp(weights, biases))
    # prune hidden unit 1 of the first layer (h1): its inputs, bias and outputs are zero
    weights[0][1], biases[0][1], weights[1][:, 1] = 0.0, 0.0, 0.0
    assert singular_subnetworks(mlp(weights, biases)) == [frozenset({"h1"})]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    n_in=st.integers(1, 2),
    n_hidden=st.integers(1, 6),
    n_out=st.integers(1, 2),
    seed=st.integers(0, 2**32 - 1),
    p_zero=st.sampled_from((0.0, 0.3, 0.6)),
)
def test_singular_sets_match_jacobian_rank(n_in, n_hidden, n_out, seed, p_zero):
    rng = np.random.default_rng(seed)
    graph = random_dag(rng, n_in, n_hidden, n_out)
    w = rng.normal(size=graph.n_edges) * (rng.random(graph.n_edges) >= p_zero)
    sets = singular_subnetworks(graph, w)
    B = graph.incidence
    rank = np.linalg.matrix_rank(2 * B * w[None, :]) if graph.n_edges else 0
    assert len(sets) == n_hidden - rank  # the rank deficit of the Jacobian 2 B diag(w)
    assert is_singular(graph, w) == (rank < n_hidden)
    c = B @ w**2
    names = [f"h{i}" for i in range(n_hidden)]
    for S in sets:
        idx = [names.index(h) for h in S]
        assert abs(np.sum(c[idx])) <= 1e-12 * max(1.0, np.abs(c).max())
        for k, (s, t) in enumerate(graph.edges):  # every edge between S and the rest is zero
            if (s in S) != (t in S):
                assert w[k] == 0.0
    assert len(set().union(*sets)) == sum(len(S) for S in sets)  # disjoint
