"""Conserved quantities, the Euler identity behind them, rescaling, Prop. 4 projection and
``relocate`` (THEORY.md §1-2; must-show 5 of issue 3).

Tolerances: every check here is exact in exact arithmetic, so it is round-off. Weights
and targets are O(1) and a rescaling multiplies each weight by one factor, so outputs and
conserved values agree to a few ulps times the number of summed terms: ``1e-12``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gflow as gf

TOL = 1e-12


@eqx.filter_jit
def _apply(model, x):
    return jax.vmap(model)(x)


def skip_dag(key):
    """Three hidden nodes, skip connections input->output and h0->y0, biases on h1, h2."""
    edges = (
        ("x0", "h0"),
        ("x1", "h0"),
        ("x2", "h0"),
        ("x0", "h1"),
        ("h0", "h1"),
        ("1", "h1"),
        ("h0", "h2"),
        ("h1", "h2"),
        ("x2", "h2"),
        ("1", "h2"),
        ("h2", "y0"),
        ("h1", "y0"),
        ("h0", "y0"),
        ("x1", "y0"),
    )
    return gf.DAGNet(gf.Graph(3, 3, 1, edges), key=key)


# The architectures of test_models (shared eager compiles when run together).
MODELS = {
    "shallow": lambda k: gf.ShallowReLU(3, 6, 2, key=k),
    "shallow-bias": lambda k: gf.ShallowReLU(3, 6, 2, bias=True, key=k),
    "mlp3": lambda k: gf.MLP(3, (4, 3, 5), 2, key=k),
    "mlp3-bias": lambda k: gf.MLP(3, (4, 3, 5), 2, bias=True, key=k),
    "dag-skip": skip_dag,
}


def inputs(n, d, seed=0):
    """Inputs from numpy (a jax.random draw per new shape would cost an XLA compile)."""
    return np.random.default_rng(seed).normal(size=(n, d))


# ------------------------------------------------------------- conserved() by hand


@pytest.mark.parametrize("bias", [False, True])
def test_conserved_shallow_by_hand(getkey, bias):
    m = MODELS["shallow-bias" if bias else "shallow"](getkey())
    W, V = np.asarray(m.W), np.asarray(m.V)
    b = np.asarray(m.b) if bias else np.zeros(6)
    expected = [W[k] @ W[k] + b[k] ** 2 - V[:, k] @ V[:, k] for k in range(6)]
    np.testing.assert_allclose(gf.conserved(m), expected, rtol=TOL, atol=TOL)
    norms = [W[k] @ W[k] + b[k] ** 2 + V[:, k] @ V[:, k] for k in range(6)]
    np.testing.assert_allclose(gf.unit_norms(m), norms, rtol=TOL, atol=TOL)


def test_conserved_mlp_by_hand(getkey):
    m = MODELS["mlp3-bias"](getkey())
    Ws, bs = [np.asarray(w) for w in m.weights], [np.asarray(b) for b in m.biases]
    expected = []
    for layer, h in enumerate(m.hidden):
        for k in range(h):
            w_in = Ws[layer][k] @ Ws[layer][k] + bs[layer][k] ** 2
            w_out = Ws[layer + 1][:, k] @ Ws[layer + 1][:, k]
            expected.append(w_in - w_out)
    np.testing.assert_allclose(gf.conserved(m), expected, rtol=TOL, atol=TOL)


def test_conserved_dag_is_B_w_squared(getkey):
    m = skip_dag(getkey())
    w = np.asarray(m.weights)
    B = np.zeros((3, len(w)))  # built from the edge list by hand, independently of Graph.incidence
    for e, (s, t) in enumerate(m.graph.edges):
        if t.startswith("h"):
            B[int(t[1:]), e] += 1
        if s.startswith("h"):
            B[int(s[1:]), e] -= 1
    np.testing.assert_allclose(gf.conserved(m), B @ w**2, rtol=TOL, atol=TOL)
    # h0: three inputs in; out to h1, h2, y0
    c0 = w[0] ** 2 + w[1] ** 2 + w[2] ** 2 - w[4] ** 2 - w[6] ** 2 - w[12] ** 2
    assert float(gf.conserved(m)[0]) == pytest.approx(c0, abs=TOL)


def test_conserved_on_a_batch_of_models(getkey):
    ms = [MODELS["shallow"](getkey()) for _ in range(3)]
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *ms)
    np.testing.assert_allclose(gf.conserved(stacked), np.stack([gf.conserved(m) for m in ms]), atol=TOL)


# ---------------------------------------- the Euler identity behind conservation
# <w_in, dL/dw_in> = <w_out, dL/dw_out> for each hidden unit, for any loss of f: the
# derivative of L along the rescaling curve alpha -> (alpha w_in, w_out / alpha) at 1.


@eqx.filter_jit
def _mse_grad(model, x, y):
    return eqx.filter_grad(lambda m: gf.mse(jax.vmap(m)(x), y))(model)


# the DAG and the biased MLP in the default run (together they have every kind of edge);
# the other three are slow-marked (each model costs its own compiles)
SLOW_MODELS = [
    pytest.param(n, marks=pytest.mark.slow) if n in ("shallow", "shallow-bias", "mlp3") else n for n in MODELS
]


@pytest.mark.parametrize("name", SLOW_MODELS)
def test_balance_identity_via_autodiff(getkey, name):
    m = MODELS[name](getkey())
    d = gf.as_dag(m)  # compare per edge on the DAG form, where B encodes in/out
    x = inputs(40, d.graph.n_in, 1)
    y = inputs(40, d.graph.n_out, 2)
    g = np.asarray(_mse_grad(d, x, y).weights)
    w = np.asarray(d.weights)
    B = d.graph.incidence
    # per hidden node: sum_in w_e g_e - sum_out w_e g_e = 0, relative to sum |w_e g_e|
    lhs, scale = B @ (w * g), np.abs(B) @ np.abs(w * g)
    assert (scale > 1e-3).mean() > 0.5  # most units alive: the identity is not 0 = 0
    assert np.all(np.abs(lhs) <= 1e-14 * scale), (lhs, scale)


# ----------------------------------------------------------------- rescale / project


@pytest.mark.parametrize("name", SLOW_MODELS)
def test_rescale_keeps_function(getkey, name):
    m = MODELS[name](getkey())
    n = gf.conserved(m).shape[0]
    alphas = np.exp(np.random.default_rng(1).uniform(-1.5, 1.5, n))
    x = inputs(64, _in_size(m))
    np.testing.assert_allclose(_apply(gf.rescale(m, alphas), x), _apply(m, x), rtol=TOL, atol=TOL)


def _in_size(m):
    return m.graph.n_in if isinstance(m, gf.DAGNet) else m.in_size


def _targets(n):
    return {
        "scalar-neg": -0.7,
        "scalar-zero": 0.0,
        "scalar-pos": 0.9,
        "per-unit": np.linspace(-1.0, 1.0, n),  # includes negative, 0 (n odd) and positive
    }


@pytest.mark.parametrize("target", ["scalar-neg", "scalar-zero", "scalar-pos", "per-unit"])
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("fn", ["project", "relocate"])
def test_project_and_relocate(getkey, name, target, fn):
    m = MODELS[name](getkey())
    n = gf.conserved(m).shape[0]
    delta = _targets(n)[target]
    new = gf.project(m, delta) if fn == "project" else gf.relocate(m, delta)
    x = inputs(200, _in_size(m))
    out_err = float(jnp.max(jnp.abs(_apply(new, x) - _apply(m, x))))
    c_err = float(jnp.max(jnp.abs(gf.conserved(new) - jnp.broadcast_to(delta, (n,)))))
    assert out_err < TOL, out_err
    assert c_err < TOL, c_err
    assert type(new) is type(m)
    # a genuine move, not a no-op: the weights changed somewhere
    assert float(jnp.max(jnp.abs(gf.conserved(m) - jnp.broadcast_to(delta, (n,))))) > 1e-2


def test_project_shallow_is_prop4_closed_form(getkey):
    m = MODELS["shallow-bias"](getkey())
    delta = np.array([-1.3, -0.2, 0.0, 0.4, 2.0, -0.01])
    W, b, V = (np.asarray(a) for a in (m.W, m.b, m.V))
    w_sq = (W**2).sum(1) + b**2
    v_sq = (V**2).sum(0)
    alpha = np.sqrt((delta + np.sqrt(delta**2 + 4 * w_sq * v_sq)) / (2 * w_sq))
    # alpha solves alpha^2 |w|^2 - |v|^2 / alpha^2 = delta
    np.testing.assert_allclose(alpha**2 * w_sq - v_sq / alpha**2, delta, atol=TOL)
    p = gf.project(m, delta)
    np.testing.assert_allclose(p.W, W * alpha[:, None], rtol=TOL)
    np.testing.assert_allclose(p.b, b * alpha, rtol=TOL)
    np.testing.assert_allclose(p.V, V / alpha[None, :], rtol=TOL)


def test_project_is_idempotent_and_unique(getkey):
    """Projecting twice changes nothing; a pre-rescaled copy projects to the same point
    (the rescaling orbit meets Q(delta) once, THEORY.md Prop. 4 / strict convexity)."""
    for name in ("shallow-bias", "mlp3-bias", "dag-skip"):
        m = MODELS[name](getkey())
        n = gf.conserved(m).shape[0]
        delta = np.linspace(-0.5, 0.5, n)
        p = gf.project(m, delta)
        pp = gf.project(p, delta)
        moved = gf.rescale(m, np.exp(np.random.default_rng(1).uniform(-1, 1, n)))
        q = gf.project(moved, delta)
        for other in (pp, q):
            for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(other), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_relocate_signs(getkey):
    m = MODELS["shallow"](getkey())  # two outputs: signs (width,) broadcast over V's rows
    signs = np.array([1, -1, -1, 1, -1, 1])
    delta = np.array([-0.5, -0.5, 0.3, 0.3, 0.0, -1.0])
    r = gf.relocate(m, delta, signs=signs)
    np.testing.assert_array_equal(np.sign(r.V), np.broadcast_to(signs, (2, 6)))
    np.testing.assert_allclose(gf.conserved(r), delta, atol=TOL)
    # |V| and W are those of the plain relocation: only signs changed
    p = gf.relocate(m, delta)
    np.testing.assert_array_equal(r.W, p.W)
    np.testing.assert_array_equal(jnp.abs(r.V), jnp.abs(p.V))
    # broadcast scalar sign, and an MLP's last layer
    mlp = MODELS["mlp3"](getkey())
    r = gf.relocate(mlp, 0.25, signs=-1)
    assert bool(jnp.all(r.weights[-1] < 0))
    np.testing.assert_allclose(gf.conserved(r), 0.25, atol=TOL)
    with pytest.raises(ValueError, match="signs"):
        gf.relocate(m, 0.0, signs=np.array([1, 0, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match="signs"):
        gf.relocate(skip_dag(getkey()), 0.0, signs=1)


def test_drift_function():
    c = jnp.array([[1.0, -2.0], [1.5, -2.0], [0.7, -1.0]])
    assert float(gf.drift(c)) == pytest.approx(1.0)
    d_abs, d_rel = gf.drift(c, jnp.array([2.0, 4.0]))
    assert float(d_abs) == pytest.approx(1.0) and float(d_rel) == pytest.approx(0.25)


def test_projection_of_collapsing_neuron_hits_delta():
    """delta < 0 and a nearly collapsed w (|w|^2 = 1e-24): the textbook root (delta + s)/(2|w|^2)
    cancels to 0 in float64; the cancellation-free form hits delta to round-off and keeps
    the function (alpha * w, v / alpha)."""
    import jax.numpy as jnp

    from gflow.invariants import conserved, project, prop4_alpha

    w_sq, v_sq, delta = jnp.array([1e-24, 0.3]), jnp.array([2.0, 0.5]), jnp.array([-1.5, -0.2])
    textbook = (delta + jnp.sqrt(delta**2 + 4 * w_sq * v_sq)) / (2 * w_sq)
    assert textbook[0] == 0.0  # the cancellation this guards against
    alpha = prop4_alpha(w_sq, v_sq, delta)
    np.testing.assert_allclose(alpha**2 * w_sq - v_sq / alpha**2, delta, rtol=1e-14)
    model = gf.ShallowReLU(2, 2, key=jax.random.PRNGKey(0))
    model = eqx.tree_at(lambda m: m.W, model, model.W.at[0].multiply(1e-12))
    projected = project(model, delta)
    np.testing.assert_allclose(conserved(projected), delta, rtol=1e-14)
    x = jnp.array([[0.3, -1.2], [1.0, 0.5]])
    np.testing.assert_allclose(jax.vmap(projected)(x), jax.vmap(model)(x), rtol=1e-12, atol=1e-300)
