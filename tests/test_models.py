"""Networks, initialization schemes, losses and data sets: the problem definition.

Forward passes are checked against hand-written numpy code (float64), so the tolerance
is round-off: a few ulps of the largest intermediate, hence ``1e-12`` for O(1) values.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gflow as gf

RTOL = ATOL = 1e-12  # float64 round-off of O(1) sums of at most ~100 terms

# A few fixed architectures, and inputs from numpy: every new array shape costs an XLA
# compile of the eager random / arithmetic ops, which dominates the run time otherwise.
SHALLOW = dict(in_size=3, width=6, out_size=2)
MLP_ARCH = dict(in_size=3, hidden=(4, 3, 5), out_size=2)


def inputs(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def relu(z):
    return np.maximum(z, 0.0)


@eqx.filter_jit
def _apply(model, x):
    return jax.vmap(model)(x)


def batch(model, x):
    """``model`` on every row of ``x`` (jitted: one compile instead of many eager ops)."""
    return np.asarray(_apply(model, jnp.asarray(x)))


# ----------------------------------------------------------------------------- shapes


def test_shallow_shapes(getkey):
    m = gf.ShallowReLU(**SHALLOW, key=getkey())
    assert m.W.shape == (6, 3) and m.b is None and m.V.shape == (2, 6)
    assert m(jnp.ones(3)).shape == (2,)
    mb = gf.ShallowReLU(3, 6, bias=True, key=getkey())
    assert mb.b.shape == (6,) and mb.V.shape == (1, 6) and mb.bias
    assert m.W.dtype == jnp.float64


def test_mlp_shapes(getkey):
    m = gf.MLP(**MLP_ARCH, bias=True, key=getkey())
    assert [w.shape for w in m.weights] == [(4, 3), (3, 4), (5, 3), (2, 5)]
    assert [b.shape for b in m.biases] == [(4,), (3,), (5,)]
    assert m(jnp.ones(3)).shape == (2,)
    m0 = gf.MLP(**MLP_ARCH, key=getkey())
    assert m0.biases == (None, None, None) and not m0.bias


def test_dag_shapes(getkey):
    g = gf.Graph(2, 1, 2, (("x0", "h0"), ("x1", "h0"), ("h0", "y0"), ("h0", "y1"), ("x1", "y1")))
    m = gf.DAGNet(g, key=getkey())
    assert m.weights.shape == (5,)
    assert m(jnp.ones(2)).shape == (2,)
    assert g.incidence.shape == (1, 5)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_sizes(getkey, bad):
    with pytest.raises(ValueError, match="width"):
        gf.ShallowReLU(3, bad, key=getkey())
    with pytest.raises(ValueError, match="hidden"):
        gf.MLP(3, (4, bad), key=getkey())


# ------------------------------------------------------------------ forward passes


@pytest.mark.parametrize("bias", [False, True])
def test_shallow_forward_numpy(getkey, bias):
    m = gf.ShallowReLU(**SHALLOW, bias=bias, key=getkey())
    x = inputs(50, 3)
    W, V = np.asarray(m.W), np.asarray(m.V)
    b = np.asarray(m.b) if bias else np.zeros(6)
    expected = np.stack([V @ relu(W @ xi + b) for xi in x])
    np.testing.assert_allclose(batch(m, x), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("bias", [False, True])
def test_mlp_forward_numpy(getkey, bias):
    m = gf.MLP(**MLP_ARCH, bias=bias, key=getkey())
    x = inputs(50, 3)
    Ws = [np.asarray(w) for w in m.weights]
    bs = [np.asarray(b) if bias else np.zeros(w.shape[0]) for b, w in zip(m.biases, Ws[:-1], strict=True)]
    h = x.T
    for W, b in zip(Ws[:-1], bs, strict=True):
        h = relu(W @ h + b[:, None])
    np.testing.assert_allclose(batch(m, x), (Ws[-1] @ h).T, rtol=RTOL, atol=ATOL)


# A DAG with skip connections (input -> output, hidden -> non-adjacent hidden), a bias
# edge, and hidden names NOT in topological order (h2 feeds h0), so evaluation must sort.
SKIP_EDGES = (
    ("x0", "h1"),
    ("x1", "h1"),
    ("1", "h1"),  # h1 = relu(a0 x0 + a1 x1 + a2)
    ("x1", "h2"),
    ("h1", "h2"),  # h2 = relu(a3 x1 + a4 h1)
    ("h2", "h0"),
    ("x0", "h0"),
    ("h1", "h0"),  # h0 = relu(a5 h2 + a6 x0 + a7 h1)
    ("h0", "y0"),
    ("h1", "y0"),
    ("x1", "y0"),  # y0 = a8 h0 + a9 h1 + a10 x1
    ("h2", "y1"),
    ("x0", "y1"),  # y1 = a11 h2 + a12 x0
)


def skip_graph():
    return gf.Graph(2, 3, 2, SKIP_EDGES)


def test_dag_skip_forward_by_hand(getkey):
    a = np.array([1.0, -0.7, 0.2, 0.5, -1.3, 0.8, -2.0, 0.9, 1.1, -0.6, 0.3, -1.2, 0.7])
    m = gf.DAGNet(skip_graph(), key=getkey(), weights=jnp.asarray(a))
    x = inputs(60, 2)
    x0, x1 = x[:, 0], x[:, 1]
    h1 = relu(a[0] * x0 + a[1] * x1 + a[2])
    h2 = relu(a[3] * x1 + a[4] * h1)
    h0 = relu(a[5] * h2 + a[6] * x0 + a[7] * h1)
    y0 = a[8] * h0 + a[9] * h1 + a[10] * x1
    y1 = a[11] * h2 + a[12] * x0
    np.testing.assert_allclose(batch(m, x), np.stack([y0, y1], 1), rtol=RTOL, atol=ATOL)
    # every hidden node is active on some inputs and off on others, so relu is exercised
    for h in (h0, h1, h2):
        assert (h == 0).any() and (h > 0).any()


@pytest.mark.slow
def test_dag_random_forward_numpy(getkey):
    """A random DAG (edges only from lower to higher node order) vs a node-by-node loop."""
    rng = np.random.default_rng(0)
    n_in, n_h, n_out = 3, 12, 2
    names = [f"x{i}" for i in range(n_in)] + [f"h{i}" for i in range(n_h)] + [f"y{i}" for i in range(n_out)]
    edges = [("1", f"h{i}") for i in range(0, n_h, 3)]
    for j in range(n_in, len(names)):
        for i in range(min(j, n_in + n_h)):
            if rng.random() < 0.4 or i == j - 1:
                edges.append((names[i], names[j]))
    g = gf.Graph(n_in, n_h, n_out, tuple(edges))
    m = gf.DAGNet(g, key=getkey())
    w = np.asarray(m.weights)
    x = inputs(30, n_in)
    out = []
    for xi in x:
        val = {"1": 1.0, **{f"x{i}": xi[i] for i in range(n_in)}}
        for name in names[n_in:]:
            z = sum(w[e] * val[s] for e, (s, t) in enumerate(edges) if t == name)
            val[name] = z if name[0] == "y" else max(z, 0.0)
        out.append([val[f"y{i}"] for i in range(n_out)])
    np.testing.assert_allclose(batch(m, x), np.array(out), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "make",
    [
        lambda k: gf.ShallowReLU(**SHALLOW, key=k),
        lambda k: gf.ShallowReLU(**SHALLOW, bias=True, key=k),
        lambda k: gf.MLP(**MLP_ARCH, bias=True, key=k),
        lambda k: gf.MLP(**MLP_ARCH, key=k),
    ],
    ids=["shallow", "shallow-bias", "mlp3-bias", "mlp3"],
)
def test_as_dag_same_function_and_conserved(getkey, make):
    m = make(getkey())
    d = gf.as_dag(m)
    assert isinstance(d, gf.DAGNet)
    x = inputs(50, m.in_size)
    np.testing.assert_allclose(batch(d, x), batch(m, x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gf.conserved(d), gf.conserved(m), rtol=RTOL, atol=ATOL)
    assert gf.as_dag(d) is d


# ------------------------------------------------------------------ graph validation


@pytest.mark.parametrize(
    "graph_args, match",
    [
        ((1, 2, 1, (("x0", "h0"), ("h0", "h1"), ("h1", "h0"), ("h1", "y0"))), "cycle"),
        ((1, 1, 1, (("x0", "h0"), ("h0", "h0"), ("h0", "y0"))), "cycle"),
        ((1, 1, 1, (("x0", "h0"), ("h0", "z0"))), "'z0' is not valid"),
        ((1, 1, 1, (("x0", "h1"), ("h0", "y0"))), "'h1' is not valid"),
        ((1, 1, 1, (("x3", "h0"), ("h0", "y0"))), "'x3' is not valid"),
        ((2, 1, 1, (("x0", "h0"), ("h0", "x1"))), "cannot be targets"),
        ((1, 1, 1, (("x0", "h0"), ("h0", "1"))), "cannot be targets"),
        ((1, 1, 2, (("x0", "h0"), ("h0", "y0"), ("y0", "y1"))), "output node cannot be a source"),
        ((1, 1, 1, (("x0", "h0"), ("x0", "h0"))), "repeat"),
        ((0, 1, 1, ()), "n_in"),
        ((1, -1, 1, ()), "n_hidden"),
    ],
)
def test_graph_validation(graph_args, match):
    with pytest.raises(ValueError, match=match):
        gf.Graph(*graph_args)


def test_graph_json_round_trip():
    g = skip_graph()
    assert gf.Graph.from_json(g.to_json()) == g
    with pytest.raises(ValueError, match="missing"):
        gf.Graph.from_json({"inputs": 1, "edges": []})


def test_graph_incidence_by_hand():
    # edges: x0->h0, h0->h1, 1->h1, h1->y0, h0->y0
    g = gf.Graph(1, 2, 1, (("x0", "h0"), ("h0", "h1"), ("1", "h1"), ("h1", "y0"), ("h0", "y0")))
    B = np.array([[1, -1, 0, 0, -1], [0, 1, 1, -1, 0]], dtype=float)
    np.testing.assert_array_equal(g.incidence, B)


# ------------------------------------------------------------------ init variances
# The entries of a layer are i.i.d. N(0, s^2). For N samples the sample variance has
# relative standard deviation sqrt(2/(N-1)); the sample mean has standard deviation
# s/sqrt(N). We allow 5 standard deviations (false-alarm rate < 1e-6 per check; the keys
# are fixed, so the test is deterministic anyway). N >= 10^5 makes the variance bound
# ~2%, which separates kaiming (2/fan_in) from xavier (2/(fan_in+fan_out)) clearly.


def check_gaussian(a, var):
    a = np.asarray(a).ravel()
    n = a.size
    assert abs(a.mean()) < 5 * np.sqrt(var / n)
    assert abs(a.var(ddof=1) / var - 1) < 5 * np.sqrt(2 / (n - 1)), (a.var(ddof=1), var)


def test_kaiming_shallow_variances(getkey):
    d, w, e = 200, 500, 200  # W: 1e5 entries; V (e, w): 1e5 entries
    m = gf.ShallowReLU(d, w, e, bias=True, key=getkey())  # default init is kaiming
    check_gaussian(m.W, 2 / d)
    check_gaussian(m.V, 2 / w)
    # biases: same std as the layer's weights (only w = 500 samples, same 5-sigma rule)
    check_gaussian(m.b, 2 / d)
    assert gf.kaiming().shallow_variances(d, w, e) == pytest.approx((2 / d, 2 / w))


def test_xavier_shallow_variances(getkey):
    d, w, e = 200, 500, 200
    m = gf.ShallowReLU(d, w, e, init="xavier", key=getkey())
    check_gaussian(m.W, 2 / (d + w))
    check_gaussian(m.V, 2 / (w + e))
    assert gf.xavier().shallow_variances(d, w, e) == pytest.approx((2 / (d + w), 2 / (w + e)))


def test_normal_scheme_and_mlp_variances(getkey):
    m = gf.ShallowReLU(200, 500, 200, init=gf.normal(0.3, 0.7), key=getkey())
    check_gaussian(m.W, 0.09)
    check_gaussian(m.V, 0.49)
    mlp = gf.MLP(200, (500, 200), 500, init="xavier", key=getkey())  # (500, 200) and (200, 500) again
    for W, (fi, fo) in zip(mlp.weights, [(200, 500), (500, 200), (200, 500)], strict=True):
        check_gaussian(W, 2 / (fi + fo))
    with pytest.raises(ValueError, match="init"):
        gf.ShallowReLU(2, 2, init="he", key=getkey())
    with pytest.raises(ValueError, match="positive"):
        gf.normal(0.0, 1.0)


def test_dag_init_matches_layered_convention(getkey):
    """On a layered graph, DAGNet's per-edge fans reproduce the MLP's layer variances."""
    d, w, e = 100, 200, 100  # 2e4 samples per layer: the 5-sigma band is +-5%
    edges = [(f"x{i}", f"h{k}") for k in range(w) for i in range(d)]
    edges += [(f"h{k}", f"y{j}") for j in range(e) for k in range(w)]
    g = gf.Graph(d, w, e, tuple(edges))
    for init, (vw, vv) in [("kaiming", (2 / d, 2 / w)), ("xavier", (2 / (d + w), 2 / (w + e)))]:
        wts = np.asarray(gf.DAGNet(g, init=init, key=getkey()).weights)
        check_gaussian(wts[: d * w], vw)
        check_gaussian(wts[d * w :], vv)


# ----------------------------------------------------------------------------- losses


def test_mse_normalization():
    pred = jnp.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    y = jnp.array([[0.0, 2.5], [1.0, 1.0], [3.0, 0.0]])
    by_hand = 0.5 * np.sum((np.asarray(pred) - np.asarray(y)) ** 2) / 3  # 1/(2n) sum ||.||^2
    assert float(gf.mse(pred, y)) == pytest.approx(by_hand, rel=1e-15)
    # one point, one output: 1/2 (f - y)^2 (the normalization of THEORY.md's closed form)
    assert float(gf.mse(jnp.array([[0.5]]), jnp.array([2.0]))) == pytest.approx(0.5 * 1.5**2, rel=1e-15)


def test_bce_stable_and_exact():
    z = jnp.array([-1000.0, -30.0, -2.0, 0.0, 1.5, 30.0, 1000.0])
    for label in (0.0, 1.0):
        y = jnp.full_like(z, label)
        per_point = np.array([float(gf.bce(zi[None, None], yi[None])) for zi, yi in zip(z, y, strict=True)])
        assert np.all(np.isfinite(per_point))
        zn = np.asarray(z)
        safe = np.abs(zn) < 50  # where log1p(exp(z)) is itself accurate
        ref = np.log1p(np.exp(zn[safe])) - label * zn[safe]
        np.testing.assert_allclose(per_point[safe], ref, rtol=1e-14, atol=1e-15)
        # asymptotics: softplus(z) = max(z, 0) + log1p(e^{-|z|}), exactly max(z,0) at |z|=1000
        big = np.abs(zn) == 1000
        np.testing.assert_allclose(per_point[big], np.maximum(zn[big], 0) - label * zn[big], rtol=1e-15)
    # gradient finite at extreme logits too
    g = jax.grad(lambda z: gf.bce(z[:, None], jnp.array([1.0, 0.0])))(jnp.array([-1000.0, 1000.0]))
    assert np.all(np.isfinite(g)) and np.allclose(g, [-0.5, 0.5])


def test_cross_entropy_int_labels_equal_one_hot(getkey):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(3 * rng.normal(size=(20, 5)))
    labels = jnp.asarray(rng.integers(0, 5, size=20))
    one_hot = jax.nn.one_hot(labels, 5, dtype=logits.dtype)
    a, b = gf.cross_entropy(logits, labels), gf.cross_entropy(logits, one_hot)
    assert float(a) == pytest.approx(float(b), rel=1e-14)
    L = np.asarray(logits)
    ref = np.mean(np.log(np.exp(L).sum(1)) - L[np.arange(20), np.asarray(labels)])
    assert float(a) == pytest.approx(ref, rel=1e-13)


def test_get_loss():
    assert gf.get_loss("mse") is gf.mse
    f = lambda p, y: jnp.sum(p)  # noqa: E731
    assert gf.get_loss(f) is f
    with pytest.raises(ValueError, match="loss must be one of"):
        gf.get_loss("hinge")


# ------------------------------------------------------------------------------- data


def test_breast_cancer_split_and_standardization():
    data = gf.breast_cancer()
    assert data.x_train.shape == (398, 30) and data.y_train.shape == (398, 1)
    assert data.x_test.shape == (171, 30) and data.y_test.shape == (171, 1)
    x = np.asarray(data.x_train)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)  # standardized on the train split
    np.testing.assert_allclose(x.std(0), 1, atol=1e-12)
    assert set(np.unique(data.y_train)) == {0.0, 1.0}
    # stratified: class proportions of the two splits agree to one sample
    assert abs(data.y_train.mean() * 398 - data.y_test.mean() * 398) < 398 / 171 + 1
    # fixed by the seed
    again = gf.breast_cancer()
    np.testing.assert_array_equal(again.x_train, data.x_train)
    assert not np.array_equal(gf.breast_cancer(seed=1).x_train, data.x_train)


def test_toy_target(getkey):
    data = gf.toy(n=500, key=getkey())
    assert data.x_train.shape == (500, 2) and data.x_test.shape == (125, 2)
    for x, y in [(data.x_train, data.y_train), (data.x_test, data.y_test)]:
        x = np.asarray(x)
        np.testing.assert_array_equal(np.asarray(y)[:, 0], relu(x[:, 0]) - relu(x[:, 1]))
    assert gf.toy(n=10, key=getkey(), n_test=0).x_test is None


def test_teacher_student_targets(getkey):
    teacher = gf.ShallowReLU(**SHALLOW, bias=True, key=getkey())
    data = gf.teacher_student(teacher, 500, getkey())
    assert data.x_train.shape == (500, 3) and data.y_train.shape == (500, 2) and data.x_test.shape == (500, 3)
    np.testing.assert_array_equal(data.y_train, batch(teacher, data.x_train))
    np.testing.assert_array_equal(data.y_test, batch(teacher, data.x_test))
    noisy = gf.teacher_student(teacher, 500, getkey(), noise=0.1)
    r = np.asarray(noisy.y_train) - batch(teacher, noisy.x_train)
    assert abs(r.std() / 0.1 - 1) < 5 * np.sqrt(1 / (2 * r.size))  # 5 sigma on the sample std


def test_dataset_validation():
    with pytest.raises(ValueError, match="x_test and y_test"):
        gf.Dataset(np.zeros((3, 2)), np.zeros(3), x_test=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="y_train"):
        gf.Dataset(np.zeros((3, 2)), np.zeros(4))
    d = gf.Dataset(np.zeros((3, 2)), np.zeros(3))
    assert d.y_train.shape == (3, 1) and not d.has_test and d.in_size == 2 and d.out_size == 1
