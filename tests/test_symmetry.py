"""Symmetries, canonical forms, reachability and recovery (THEORY.md §1, §3)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topo_nets import mlp, shallow

import gflow as gf
from gflow.topology.symmetry import canonical_form, equivalent, permute, reachable, recovered, rescale


def relu(z):
    return np.maximum(z, 0.0)


def evaluate(W, b, V, x):
    """``V relu(W x + b)`` for rows of ``x``, in numpy."""
    z = x @ np.asarray(W).T + (0.0 if b is None else np.asarray(b))
    return relu(z) @ np.asarray(V).T


def arrays(model):
    return np.array(model.W), None if model.b is None else np.array(model.b), np.array(model.V)


# ---------------------------------------------------------------- symmetries leave the canonical form unchanged


def transform(rng, W, b, V, kind):
    """A function-preserving change of parameters (numpy), returning new (W, b, V)."""
    width = len(W)
    if kind == "rescale":
        a = rng.uniform(0.2, 5.0, width)
        return W * a[:, None], None if b is None else b * a, V / a[None, :]
    if kind == "permute":
        p = rng.permutation(width)
        return W[p], None if b is None else b[p], V[:, p]
    if kind == "split":  # neuron k -> two rescaled copies on the same hyperplane sharing v_k
        k, t = rng.integers(width), rng.uniform(-1.0, 2.0)
        a1, a2 = rng.uniform(0.3, 3.0, 2)
        W2 = np.vstack([W, W[k] * a2])
        b2 = None if b is None else np.append(b, b[k] * a2)
        V2 = np.hstack([V, (1 - t) * V[:, k : k + 1] / a2])
        W2[k], V2[:, k] = W[k] * a1, t * V[:, k] / a1
        if b is not None:
            b2[k] = b[k] * a1
        return W2, b2, V2
    if kind == "flip":
        # v relu(z) = v relu(-z) + v (w.x + b), with the linear part written on the axes,
        # v w_i x_i = v w_i relu(x_i) - v w_i relu(-x_i), and the constant v b = v b relu(1).
        k = rng.integers(width)
        w, v = W[k].copy(), V[:, k].copy()
        d = W.shape[1]
        rows = [-w] + [s * np.eye(d)[i] for i in range(d) for s in (1, -1)]
        outs = [v] + [s * w[i] * v for i in range(d) for s in (1, -1)]
        biases = [] if b is None else [-b[k]] + [0.0] * (2 * d)
        if b is not None:
            rows.append(np.zeros(d))
            outs.append(b[k] * v)
            biases.append(1.0)
        keep = [j for j in range(width) if j != k]
        W2 = np.vstack([W[keep], *rows])
        V2 = np.hstack([V[:, keep], np.stack(outs, axis=1)])
        b2 = None if b is None else np.concatenate([b[keep], biases])
        return W2, b2, V2
    raise AssertionError(kind)


@settings(max_examples=220, deadline=None, derandomize=True)
@given(
    d=st.integers(1, 3),
    e=st.integers(1, 2),
    width=st.integers(1, 4),
    bias=st.booleans(),
    kinds=st.lists(st.sampled_from(("rescale", "permute", "split", "flip")), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_canonical_form_invariant_under_symmetries(d, e, width, bias, kinds, seed):
    rng = np.random.default_rng(seed)
    W, V = rng.normal(size=(width, d)), rng.normal(size=(e, width))
    b = rng.normal(size=width) if bias else None
    W2, b2, V2 = W, b, V
    for kind in kinds:
        W2, b2, V2 = transform(rng, W2, b2, V2, kind)
    x = rng.normal(size=(64, d)) * 3
    np.testing.assert_allclose(evaluate(W2, b2, V2, x), evaluate(W, b, V, x), atol=1e-10)
    a, a2 = shallow(W, b, V), shallow(W2, b2, V2)
    assert equivalent(a, a2)
    ca, ca2 = canonical_form(a), canonical_form(a2)
    assert ca.n_neurons == ca2.n_neurons <= width
    np.testing.assert_allclose(ca.affine, ca2.affine, atol=1e-8)
    # the canonical form computes the same function
    np.testing.assert_allclose(ca(x), evaluate(W, b, V, x), atol=1e-10)
    np.testing.assert_allclose(ca2(x), evaluate(W, b, V, x), atol=1e-10)
    # a genuine change of one weight is detected
    W3 = W.copy()
    W3[0, 0] += 1e-3
    assert not equivalent(a, shallow(W3, b, V))


def test_theory_example():
    # relu(x1) - relu(-x1) + relu(x2) - relu(-x2)  vs  relu(x1 + x2) - relu(-x1 - x2): both x1 + x2
    a = shallow([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], None, [[1.0, -1.0, 1.0, -1.0]])
    b = shallow([[1.0, 1.0], [-1.0, -1.0]], None, [[1.0, -1.0]])
    assert equivalent(a, b)
    ca = canonical_form(a)
    assert ca.n_neurons == 0
    np.testing.assert_allclose(ca.affine, [[1.0, 1.0, 0.0]])
    # relu(x1) + relu(x2) is a different function from relu(x1 + x2)
    c = shallow([[1.0, 0.0], [0.0, 1.0]], None, [[1.0, 1.0]])
    d = shallow([[1.0, 1.0]], None, [[1.0]])
    assert not equivalent(c, d) and not equivalent(a, c)
    # a bias-free net equals the same net written with zero biases
    assert equivalent(c, shallow([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0], [[1.0, 1.0]]))


def test_canonical_form_details():
    # dead neurons (v = 0 or w = b = 0) vanish; a w = 0 neuron is the constant v relu(b)
    m = shallow([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [1.0, 1.0]], [3.0, -1.0, 0.0, 0.5], [[2.0, 5.0, 0.5, 0.0]])
    cf = canonical_form(m)
    np.testing.assert_allclose(cf.hyperplanes, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(cf.coefficients, [[1.0]])
    np.testing.assert_allclose(cf.affine, [[0.0, 0.0, 6.0]])
    with pytest.raises(ValueError, match="ShallowReLU"):
        canonical_form(mlp([np.ones((2, 2)), np.ones((1, 2))], [None]))


def test_rescale_and_permute_models():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 3))
    model = shallow(rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(2, 4)))
    moved = permute(rescale(model, jnp.array([0.5, 2.0, 3.0, 0.1])), [2, 0, 3, 1])
    np.testing.assert_allclose(evaluate(*arrays(moved), x), evaluate(*arrays(model), x), atol=1e-12)
    assert equivalent(model, moved)
    np.testing.assert_allclose(
        np.asarray(gf.conserved(permute(model, [2, 0, 3, 1]))), np.asarray(gf.conserved(model))[[2, 0, 3, 1]]
    )
    weights = [rng.normal(size=(4, 3)), rng.normal(size=(2, 4)), rng.normal(size=(1, 2))]
    biases = [rng.normal(size=4), rng.normal(size=2)]
    net = mlp(weights, biases)
    shuffled = permute(net, [[3, 1, 0, 2], [1, 0]])

    def forward(m):
        h = x
        for W, b in zip(m.weights[:-1], m.biases, strict=True):
            h = relu(h @ np.asarray(W).T + np.asarray(b))
        return h @ np.asarray(m.weights[-1]).T

    np.testing.assert_allclose(forward(shuffled), forward(net), atol=1e-12)
    assert not np.allclose(np.asarray(shuffled.weights[0]), np.asarray(net.weights[0]))
    with pytest.raises(ValueError, match="permutation"):
        permute(model, [0, 0, 1, 2])
    with pytest.raises(ValueError, match="one permutation per hidden layer"):
        permute(net, [[0, 1, 2, 3]])


def test_recovered():
    U = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    teacher = shallow(U, None, [[1.0, -2.0, 0.5]])
    # a student: rescaled copies, the -2 kink split over two neurons, a switched-off
    # pathological neuron (w ~ 0, v = 1.5) and a non-pathological one with v ~ 0
    W = np.vstack([2 * U[0], 2 * U[1], 2 * U[2], 0.5 * U[1], [1e-7, 3e-8], [0.3, 0.9]])
    V = np.array([[0.5, -0.5, 0.25, -2.0, 1.5, 2e-7]])
    student = shallow(W, None, V)
    assert recovered(student, teacher)
    assert not equivalent(student, teacher)  # exactly, the tiny neurons are still there
    W[0] = [1.0, 0.1]
    assert not recovered(shallow(W, None, V), teacher)


# ---------------------------------------------------------------- reachability vs brute force

ANGLES = (0.0, np.pi / 3, 2 * np.pi / 3)  # pairwise non-parallel teacher directions in d = 2


def brute_force_reachable(a, kinds, rng, check):
    """Search all assignments of student neurons to teacher kinks (or 'off') and all sign
    choices of the free neurons; for the first that can work, build the student weights on
    the right Q(delta), in the right component, and verify the function numerically."""
    U = np.array([[np.cos(t), np.sin(t)] for t in ANGLES[: len(a)]])
    free = [k for k, kind in enumerate(kinds) if kind in ("F+", "F0")]
    for assign in itertools.product(range(-1, len(a)), repeat=len(kinds)):
        for free_signs in itertools.product((1, -1), repeat=len(free)):
            sign = {k: {"P": 1, "M": -1}.get(kind) for k, kind in enumerate(kinds)}
            sign.update(zip(free, free_signs, strict=True))
            ok = all(any(assign[k] == j and sign[k] == np.sign(a[j]) for k in range(len(kinds))) for j in range(len(a)))
            if ok:
                check(construct(a, U, kinds, assign, sign, rng), a, U, kinds)
                return True
    return False


def student_delta(kind):
    return {"P": -1.0, "M": -1.0, "F+": 1.0, "F0": 0.0}[kind]


def construct(a, U, kinds, assign, sign, rng):
    """Weights realizing sum_j a_j relu(u_j.x) with the given assignment (see brute force)."""
    W, V = np.zeros((len(kinds), 2)), np.zeros(len(kinds))
    for j in range(len(a)):
        S = [k for k in range(len(kinds)) if assign[k] == j]
        wrong = [k for k in S if sign[k] != np.sign(a[j])]
        right = [k for k in S if sign[k] == np.sign(a[j])]
        coef = {k: sign[k] * rng.uniform(0.5, 1.5) for k in wrong}
        rest = a[j] - sum(coef.values())
        coef.update({k: rest / len(right) for k in right})
        for k, c in coef.items():  # neuron c relu(u.x) on Q(delta_k): alpha^2 (alpha^2 - delta) = c^2
            delta = student_delta(kinds[k])
            alpha = np.sqrt((delta + np.sqrt(delta**2 + 4 * c**2)) / 2)
            W[k], V[k] = alpha * U[j], c / alpha
    for k in range(len(kinds)):
        if assign[k] == -1:  # switched off, staying on Q(delta_k) with the component's sign
            delta = student_delta(kinds[k])
            if delta < 0:
                V[k] = sign[k] * np.sqrt(-delta)
            else:
                W[k] = np.sqrt(delta) * np.array([1.0, 0.0])
    return W, V


def test_reachable_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)) * 2

    def check(weights, a, U, kinds):
        W, V = weights
        np.testing.assert_allclose(relu(x @ W.T) @ V, relu(x @ U.T) @ a, atol=1e-10)
        delta = np.sum(W**2, axis=1) - V**2
        np.testing.assert_allclose(delta, [student_delta(k) for k in kinds], atol=1e-12)
        for k, kind in enumerate(kinds):  # pathological signs = the component's label
            if kind in ("P", "M"):
                assert np.sign(V[k]) == {"P": 1, "M": -1}[kind]

    n_cases = n_true = 0
    for n_t in (1, 2, 3):
        for a_signs in itertools.combinations_with_replacement((1, -1), n_t):
            a = np.array(a_signs, float) * rng.uniform(0.5, 2.0, n_t)
            U = np.array([[np.cos(t), np.sin(t)] for t in ANGLES[:n_t]])
            scale = rng.uniform(0.5, 2.0, n_t)  # the same teacher function, rescaled neurons
            teacher = shallow(U * scale[:, None], None, (a / scale)[None, :])
            for n_s in (1, 2, 3, 4):
                for kinds in itertools.combinations_with_replacement(("P", "M", "F+", "F0"), n_s):
                    # any point of that component: random weights moved onto Q(delta) (Prop. 4)
                    W, v = rng.normal(size=(n_s, 2)), np.abs(rng.normal(size=n_s)) + 0.1
                    v *= np.array([-1.0 if k == "M" else 1.0 if k == "P" else rng.choice((-1, 1)) for k in kinds])
                    delta = np.array([student_delta(k) for k in kinds])
                    w_sq, v_sq = np.sum(W**2, axis=1), v**2
                    alpha = np.sqrt((delta + np.sqrt(delta**2 + 4 * w_sq * v_sq)) / (2 * w_sq))
                    student = shallow(W * alpha[:, None], None, (v / alpha)[None, :])
                    expected = brute_force_reachable(a, kinds, rng, check)
                    assert reachable(teacher, student) == expected, (a_signs, kinds)
                    n_cases += 1
                    n_true += expected
    assert n_cases == 9 * 69 and 0 < n_true < n_cases


def test_reachable_formula_examples():
    # the toy target relu(x1) - relu(x2) needs a convex and a concave kink
    teacher = shallow([[1.0, 0.0], [0.0, 1.0]], None, [[1.0, -1.0]])
    both_positive_pathological = shallow([[0.1, 0.0], [0.0, 0.1]], None, [[1.0, 2.0]])  # P = 2, M = F = 0
    assert not reachable(teacher, both_positive_pathological)
    one_free = shallow([[2.0, 0.0], [0.0, 0.1]], None, [[1.0, 2.0]])  # F = 1, P = 1
    assert reachable(teacher, one_free)
    with pytest.raises(ValueError, match="non-parallel"):
        reachable(shallow([[1.0, 0.0], [-2.0, 0.0]], None, [[1.0, 1.0]]), one_free)
    with pytest.raises(ValueError, match="no bias"):
        reachable(teacher, shallow([[1.0, 0.0]], [0.0], [[1.0]]))
