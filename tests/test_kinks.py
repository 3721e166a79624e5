"""Kink-aware integration (gflow.kinks, gflow.controller): escape condition, pinning,
sliding, the step floor and the activation-pattern diagnostics."""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import gflow as gf
from gflow.flow.activations import activation_stats
from gflow.flow.controller import FloorPIDController, controller_stats, default_max_steps
from gflow.flow.field import flow_field, sliding_field
from gflow.flow.pinning import escape_oracle
from gflow.trajectory import FLOW_STAT_KEYS, Trajectory


def _dense_min(z, g, n_dirs=20_000, seed=0):
    """min of phi(u) = sum_i g_i relu(u . z_i) over many unit vectors u (a Monte Carlo check)."""
    rng = np.random.default_rng(seed)
    D = z.shape[1]
    if D == 2:
        a = np.linspace(-np.pi, np.pi, n_dirs, endpoint=False)
        u = np.stack([np.cos(a), np.sin(a)], 1)
    else:
        u = rng.normal(size=(n_dirs, D))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
    return (np.maximum(u @ z.T, 0.0) @ g).min(axis=0)


@pytest.mark.parametrize("case", ["plane", "plane_bias_1d", "line", "rank3"])
def test_escape_rays_decide_the_sign(case):
    """Theorem of gflow.kinks: min over the finite rays < 0 iff phi < 0 somewhere (checked
    against many sampled unit directions)."""
    rng = np.random.default_rng(1)
    if case == "plane":
        z = rng.normal(size=(60, 2))
    elif case == "plane_bias_1d":  # d = 1 with a bias: z = (x, 1), rank 2
        z = np.stack([rng.normal(size=40), np.ones(40)], 1)
    elif case == "line":  # collinear data in 3-D: rank 1
        z = rng.normal(size=(30, 1)) * np.array([[1.0, -2.0, 0.5]])
    else:
        z = rng.normal(size=(12, 3))
    oracle = escape_oracle(z)
    assert oracle.kind == {"plane": "plane", "plane_bias_1d": "plane", "line": "general", "rank3": "general"}[case]
    g = rng.normal(size=(len(z), 300))
    g[:, :100] = np.abs(g[:, :100])  # phi >= 0 everywhere: never an escape
    g[:, 100:200] = np.abs(g[:, 100:200]) - 0.3 * (rng.random((len(z), 100)) < 0.1)  # a few small negatives
    ray_min = np.asarray(oracle.phi(jnp.asarray(g))).min(axis=0)
    dense = _dense_min(z, g)
    scale = np.abs(g).T @ np.linalg.norm(z, axis=1)
    # no escape missed: where every ray has phi >= 0, no sampled direction has phi < 0
    safe = ray_min >= 0
    assert np.all(dense[safe] >= -1e-12 * scale[safe])
    # every clear escape found by sampling is found by the rays
    clear = dense < -1e-3 * scale
    assert np.all(ray_min[clear] < 0)
    assert safe[100:].sum() > 5 and clear.sum() > 50
    assert np.all(safe[:100])
    # and the rays are unit vectors
    np.testing.assert_allclose(np.linalg.norm(np.asarray(oracle.rays), axis=1), 1.0, rtol=1e-12)


def test_escape_oracle_refuses_large_rank():
    z = np.random.default_rng(0).normal(size=(2000, 5))
    with pytest.raises(ValueError, match="rank"):
        escape_oracle(z)


def _single_neuron(w, v):
    m = gf.ShallowReLU(2, 1, key=jr.PRNGKey(0))
    return eqx.tree_at(lambda m: (m.W, m.V), m, (jnp.asarray([w], float), jnp.asarray([[v]], float)))


def test_collapsed_neuron_escapes_only_with_a_descent_direction(getkey):
    """A neuron at w = 0 with v = -1 (delta = -1). Target -relu(x1): phi(e1) < 0, the Clarke
    flow leaves w = 0 and fits the target; the plain field stays at its fixed point w = 0.
    Target +relu(x1): phi >= 0 for every u (g_i = v r_i = y_i / n >= 0), the neuron stays pinned."""
    x = jr.normal(getkey(), (200, 2))
    model = _single_neuron([0.0, 0.0], -1.0)
    down = gf.Dataset(x, -jax.nn.relu(x[:, 0]))
    pinned = gf.gradient_flow(model, down, "mse", 20.0, rtol=1e-6, atol=1e-6, kinks="pin", n_save=5)
    plain = gf.gradient_flow(model, down, "mse", 20.0, rtol=1e-6, atol=1e-6, kinks="none", n_save=5)
    assert pinned.status_name == plain.status_name == "successful"
    assert int(pinned.stats["unpins"]) == 1
    assert float(pinned.loss[-1]) < 1e-6 * float(pinned.loss[0])
    assert float(plain.loss[-1]) == float(plain.loss[0])  # relu'(0) = 0: w = 0 is a fixed point
    np.testing.assert_allclose(pinned.conserved, -1.0, rtol=1e-5)

    up = gf.Dataset(x, jax.nn.relu(x[:, 0]))
    stay = gf.gradient_flow(model, up, "mse", 20.0, rtol=1e-6, atol=1e-6, kinks="pin", n_save=5)
    assert int(stay.stats["unpins"]) == 0 and int(stay.stats["pinned"]) == 1
    np.testing.assert_array_equal(np.asarray(stay.models.W), 0.0)
    assert float(stay.loss[-1]) == float(stay.loss[0])


T1, N_SAVE, MAX_STEPS = 10.0, 41, 10_000  # one compiled solve per kinks mode


def _collapse_problem():
    """Toy problem (THEORY.md §5, n = 1000), both neurons pathological (delta = -1) and both
    output weights negative: one neuron's incoming weights collapse by t ~ 2."""
    data = gf.toy(n=1000, key=jr.PRNGKey(0), n_test=0)
    k1, _ = jr.split(jr.PRNGKey(34))
    model = gf.relocate(gf.ShallowReLU(2, 2, key=k1), -1.0)
    assert np.all(np.asarray(model.V) < 0)
    return model, data


def test_pinning_cuts_the_chatter_of_a_collapsed_neuron():
    """Plain Tsit5 chatters around w = 0 (rejections, back-and-forth patterns: `sliding`);
    the default mode pins the neuron (w = 0 exactly, delta exact) with >= 10x fewer steps
    and the same final loss."""
    model, data = _collapse_problem()
    kw = dict(rtol=1e-5, atol=1e-5, n_save=N_SAVE, max_steps=MAX_STEPS)
    plain = gf.gradient_flow(model, data, "mse", T1, kinks="none", **kw)  # measured: 1511 steps
    fast = gf.gradient_flow(model, data, "mse", T1, kinks="pin+slide", **kw)  # measured: 50
    # the default also locates activation changes (issue 16): more steps here (measured 173), still pinned
    auto = gf.gradient_flow(model, data, "mse", T1, **kw)
    assert auto.status_name == "successful" and int(auto.stats["pinned"]) == 1
    assert int(auto.stats["steps"]) * 5 <= int(plain.stats["steps"])
    assert plain.status_name == fast.status_name == "successful"
    assert bool(plain.stats["sliding"]) and not bool(fast.stats["sliding"])
    assert int(fast.stats["steps"]) * 10 <= int(plain.stats["steps"])
    assert int(fast.stats["pinned"]) == 1 and int(fast.stats["pins"]) == 1
    assert 0 < float(fast.stats["first_pin_time"]) < 5
    k = int(np.argmin(np.linalg.norm(np.asarray(fast.final.W), axis=1)))
    np.testing.assert_array_equal(np.asarray(fast.final.W[k]), 0.0)
    np.testing.assert_allclose(fast.conserved[-1, k], -1.0, rtol=1e-13)
    assert abs(float(fast.loss[-1]) - float(plain.loss[-1])) < 1e-6 * float(plain.loss[-1])
    for key in FLOW_STAT_KEYS:
        assert key in fast.stats


def _attractive_kink(seed):
    """A random shallow net with neuron 0 put exactly on the kink of one data point, and
    whether that kink is attractive (both one-sided fields push into it)."""
    key = jr.PRNGKey(seed)
    kx, ky, km = jr.split(key, 3)
    x = jr.normal(kx, (16, 2))
    data = gf.Dataset(x, jax.nn.relu(x[:, 0]) - 0.5 * jax.nn.relu(-x[:, 1]))
    m = gf.ShallowReLU(2, 3, key=km)
    z = x[3]
    w = m.W[0] - (m.W[0] @ z) / (z @ z) * z  # w . z_3 = 0
    return eqx.tree_at(lambda m: m.W, m, m.W.at[0].set(w)), data


@eqx.filter_jit
def _both_fields(model, data, tol=1e-8):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    plain = flow_field(static, data, gf.mse)(0.0, params, None)
    return plain, sliding_field(static, data, gf.mse, 10.0, tol, tol)(0.0, params, None)


def test_sliding_field_keeps_the_kink_and_the_conservation_law():
    found = 0
    for seed in range(400):
        if found == 5:
            break
        model, data = _attractive_kink(seed)
        plain, slide = _both_fields(model, data)
        z = data.x_train[3]
        if float(jnp.max(jnp.abs(slide.W[0] - plain.W[0]))) <= 1e-12 * float(jnp.max(jnp.abs(plain.W[0]))):
            continue  # not attractive: the field is the plain one
        found += 1
        assert abs(float(slide.W[0] @ z)) < 1e-12 * float(jnp.linalg.norm(slide.W[0]) * jnp.linalg.norm(z))
        # only neuron 0's incoming block changed, along z_3
        np.testing.assert_allclose(np.asarray(slide.V), np.asarray(plain.V), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(np.asarray(slide.W[1:]), np.asarray(plain.W[1:]), rtol=1e-13, atol=1e-15)
        diff = np.asarray(slide.W[0] - plain.W[0])
        cross = diff[0] * float(z[1]) - diff[1] * float(z[0])
        assert abs(cross) < 1e-12 * np.linalg.norm(diff) * float(jnp.linalg.norm(z))
        # <w_k, F_w> = <v_k, F_v> (so d delta_k / dt = 0) holds for the sliding field on S
        lhs = float(model.W[0] @ slide.W[0])
        rhs = float(model.V[:, 0] @ slide.V[:, 0])
        assert abs(lhs - rhs) < 1e-12 * (abs(lhs) + abs(rhs) + 1e-300)
    assert found == 5


def test_sliding_field_is_the_gradient_away_from_kinks(getkey):
    model = gf.ShallowReLU(3, 5, bias=True, key=getkey())
    x = jr.normal(getkey(), (50, 3))
    data = gf.Dataset(x, jnp.sin(x[:, 0]))
    a, b = _both_fields(model, data, 1e-10)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


# -------------------------------------------------------------------- never stall


def test_floor_controller_forces_and_counts_steps():
    """dy/dt = -sign(y) chatters at y = 0: with rtol = atol = 1e-12 a plain PID step size
    collapses; the floor dtmin = 1e-3 bounds it, forced steps are counted, t1 is reached."""
    term = diffrax.ODETerm(lambda t, y, args: -jnp.sign(y))
    ctrl = FloorPIDController(rtol=1e-12, atol=1e-12, dtmin=1e-3)
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5(),
        0.0,
        10.0,
        None,
        jnp.asarray(1.0),
        stepsize_controller=ctrl,
        saveat=diffrax.SaveAt(t1=True, controller_state=True),
        max_steps=100_000,
        throw=False,
    )
    assert sol.result == diffrax.RESULTS.successful
    forced = int(controller_stats(sol.controller_state)["dtmin_steps"])
    assert 1000 < forced <= int(sol.stats["num_accepted_steps"])
    assert int(sol.stats["num_steps"]) < 20_000  # about (10 - 1) / dtmin steps after the kink
    assert abs(float(sol.ys[0])) < 1e-2


def test_default_floor_is_relative_to_t():
    ctrl = FloorPIDController(rtol=1e-6, atol=1e-6)
    eps = float(jnp.finfo(jnp.float64).eps)
    assert float(ctrl._floor(jnp.asarray(1e6), jnp.asarray(10.0))) == pytest.approx(100 * eps * 1e6)
    assert float(ctrl._floor(jnp.asarray(0.0), jnp.asarray(10.0))) == pytest.approx(100 * eps * 10)


def test_default_max_steps_grows_with_t1():
    assert default_max_steps(1.0) == 16384
    assert default_max_steps(100.0) == 131072
    assert default_max_steps(1e9) == 2**24
    assert math.log2(default_max_steps(37.0)).is_integer()


def test_tight_tolerance_collapse_finishes_or_says_why():
    """At rtol = atol = 1e-9 the plain solve of the collapse problem cannot finish within a
    small step budget: it ends with a status, never hangs; the default mode finishes."""
    model, data = _collapse_problem()
    kw = dict(rtol=1e-9, atol=1e-9, n_save=N_SAVE, max_steps=MAX_STEPS)
    plain = gf.gradient_flow(model, data, "mse", T1, kinks="none", **kw)
    assert plain.status_name == "max_steps_reached"  # measured: > 50000 steps needed
    fast = gf.gradient_flow(model, data, "mse", T1, **kw)
    assert fast.status_name == "successful"  # measured: 3771 steps
    assert int(fast.stats["pinned"]) == 1


# -------------------------------------------------------------------- diagnostics


def test_activation_stats_counts_flips():
    m = gf.ShallowReLU(1, 2, key=jr.PRNGKey(0))
    signs = jnp.asarray([1.0, -1.0, 1.0, -1.0, 1.0, 1.0])
    W = jnp.stack([jnp.stack([s * jnp.ones(1), jnp.ones(1)]) for s in signs])  # neuron 0 flips 4 times
    models = eqx.tree_at(lambda m: (m.W, m.V), m, (W, jnp.ones((6, 1, 2))))
    x = jnp.asarray([[1.0], [2.0], [-1.0]])
    st = activation_stats(models, x)
    assert int(st["pattern_changes"]) == 3 * 4
    assert int(st["max_flips"]) == 4 and bool(st["sliding"])
    calm = eqx.tree_at(lambda m: m.W, models, jnp.abs(W))
    st = activation_stats(calm, x)
    assert int(st["pattern_changes"]) == 0 and not bool(st["sliding"])


def test_activation_stats_mlp_and_dag_agree(getkey):
    mlp = gf.MLP(2, (3, 2), key=getkey())
    dag = gf.as_dag(mlp)
    x = jr.normal(getkey(), (7, 2))

    a = jax.vmap(mlp.hidden_preactivations)(x)
    b = jax.vmap(dag.hidden_preactivations)(x)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_new_stats_round_trip(tmp_path):
    model, data = _collapse_problem()
    traj = gf.gradient_flow(model, data, "mse", T1, rtol=1e-5, atol=1e-5, n_save=N_SAVE, max_steps=MAX_STEPS)
    path = str(tmp_path / "t.npz")
    traj.save(path)
    back = Trajectory.load(path)
    assert back.summary() == traj.summary()
    s = traj.summary()
    assert isinstance(s["sliding"], bool) and isinstance(s["first_pin_time"], float)


def test_kinks_validation():
    model, data = _collapse_problem()
    with pytest.raises(ValueError, match="kinks"):
        gf.gradient_flow(model, data, "mse", 1.0, kinks="smooth")
    mlp = gf.MLP(2, (3,), key=jr.PRNGKey(0))
    with pytest.raises(ValueError, match="ShallowReLU"):
        gf.gradient_flow(mlp, data, "mse", 1.0, kinks="pin")
    # auto falls back to the plain field for other networks
    traj = gf.gradient_flow(mlp, data, "mse", 0.01, n_save=2)
    assert int(traj.stats["pins"]) == 0
    with pytest.raises(ValueError, match="pin_tol"):
        gf.gradient_flow(model, data, "mse", 1.0, pin_tol=-1.0)
    with pytest.raises(ValueError, match="dtmin"):
        gf.gradient_flow(model, data, "mse", 1.0, dtmin=-1.0)


def test_pinning_does_not_recompile_for_a_new_init():
    model, data = _collapse_problem()
    kw = dict(rtol=1e-5, atol=1e-5, n_save=N_SAVE, max_steps=MAX_STEPS)
    gf.gradient_flow(model, data, "mse", T1, **kw)
    size = gf.flow.solve_flow.jitted()._cached._cache_size()
    other = gf.relocate(gf.ShallowReLU(2, 2, key=jr.PRNGKey(5)), jnp.asarray([1.0, -1.0]))
    gf.gradient_flow(other, data, "mse", 7.0, **kw)
    assert gf.flow.solve_flow.jitted()._cached._cache_size() == size


def test_projection_with_pinning_keeps_delta_to_round_off():
    """project=True with the default mode: a pinned neuron (w = 0) is left alone by the Prop. 4
    projection (no 0/0), and every delta_k stays at its initial value to round-off."""
    model, data = _collapse_problem()
    traj = gf.gradient_flow(
        model, data, "mse", T1, rtol=1e-5, atol=1e-5, n_save=N_SAVE, max_steps=MAX_STEPS, project=True
    )
    assert traj.status_name == "successful" and int(traj.stats["pinned"]) == 1
    assert float(traj.drift[1]) < 1e-14


@pytest.mark.parametrize("size", [1, 5, 16, 37])
def test_cond_any_batched_is_a_per_member_cond(size):
    """Under ``vmap``, ``cond_any`` gives every member what its own ``lax.cond`` gives (here
    the branches differ, so running ``true_fn`` for a member whose predicate is false would
    show), for any number of true members: none, a few, more than one group, all."""
    from gflow.flow.batching import cond_any

    def f(p, x, y):
        return cond_any(p, lambda a, b: (a + b, a * b), lambda a, b: (-a, b), x, y)

    x = jnp.arange(size, dtype=float)
    y = 2.0 + jnp.arange(size, dtype=float)
    for pred in (jnp.zeros(size, bool), jnp.arange(size) % 3 == 1, jnp.ones(size, bool)):
        got = jax.vmap(f)(pred, x, y)
        want = (jnp.where(pred, x + y, -x), jnp.where(pred, x * y, y))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    got = jax.vmap(f, in_axes=(0, 0, None))(jnp.arange(size) % 2 == 0, x, 3.0)  # an unbatched operand
    np.testing.assert_array_equal(got[0], jnp.where(jnp.arange(size) % 2 == 0, x + 3.0, -x))
