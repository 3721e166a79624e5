"""Located activation changes (gflow.flow.locate): the smooth pieces' field, the signal that sizes
a kink's jump, the cheap sliding field, and a located solve against an independent piecewise
integration (SciPy, event location on every kink)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import tree_allclose
from scipy.integrate import solve_ivp

import gflow as gf
from gflow.flow.field import dense_sliding_field, flow_field, pattern_field, sliding_field
from gflow.flow.problem import make_problem


def _nets(key):
    k1, k2, k3 = jr.split(key, 3)
    return [
        gf.ShallowReLU(3, 4, key=k1),
        gf.ShallowReLU(3, 4, bias=True, key=k1),
        gf.MLP(3, (4, 3), bias=True, key=k2),
        gf.MLP(3, (4, 3), key=k3).as_dag(),
    ]


@pytest.mark.parametrize("which", range(4))
def test_masked_forward_is_the_network_and_its_pieces(getkey, which):
    """pattern None: the network itself and its pre-activations; the pattern of x itself: the same
    output; |u_h|^2 for the first hidden layer is |x|^2 (+1 with biases)."""
    net = _nets(getkey())[which]
    x = jr.normal(getkey(), (3,))
    out, pre, u_sq = net.masked_forward(x)
    assert jnp.allclose(out, net(x), rtol=1e-13, atol=1e-13)
    assert jnp.allclose(pre, net.hidden_preactivations(x), rtol=1e-13, atol=1e-13)
    same = net.masked_forward(x, (pre > 0).astype(x.dtype))[0]
    assert jnp.allclose(same, out, rtol=1e-13, atol=1e-13)
    bias = 1.0 if which in (1, 2) else 0.0
    assert jnp.allclose(u_sq[:4], jnp.sum(x**2) + bias, rtol=1e-13)
    # all units inactive: the output is 0 (no output bias)
    assert jnp.allclose(net.masked_forward(x, jnp.zeros_like(pre))[0], 0.0)


def test_dag_masked_forward_matches_the_mlp(getkey):
    """The MLP and its DAG form give the same pre-activations and input norms (unit order kept)."""
    mlp = gf.MLP(3, (4, 3), bias=True, key=getkey())
    x = jr.normal(getkey(), (3,))
    a, b = mlp.masked_forward(x), mlp.as_dag().masked_forward(x)
    for u, v in zip(a, b, strict=True):
        assert jnp.allclose(u, v, rtol=1e-12, atol=1e-12)


def test_signal_is_v_times_the_loss_gradient(getkey):
    """Locator.parts' s_kj = dL/d relu(z_kj) is v_k . dL/df(x_j) for a shallow net, on both sides
    of every kink (closed form)."""
    model = gf.ShallowReLU(2, 3, key=getkey())
    data = gf.teacher_student(gf.ShallowReLU(2, 2, key=getkey()), 16, getkey())
    problem = make_problem(model, data, "mse", 1.0, kinks="locate")
    params = eqx.filter(model, eqx.is_inexact_array)
    z, s, u_sq, w_sq = problem.locator.parts(params)
    pred = jax.vmap(model)(data.x_train)
    dpred = jax.grad(gf.mse)(pred, data.y_train)
    assert jnp.allclose(s, (dpred @ model.V).T, rtol=1e-12, atol=1e-15)
    assert jnp.allclose(u_sq, jnp.sum(data.x_train**2, axis=1)[None, :], rtol=1e-13)
    assert jnp.allclose(w_sq, jnp.sum(model.W**2, axis=1), rtol=1e-13)


@pytest.mark.parametrize("deep", [False, True])
def test_pattern_field_is_the_gradient_with_its_own_pattern(getkey, deep):
    """With the state's own pattern (no pre-activation at 0) the field of a piece is -grad L; the
    shallow hand-written field agrees with the autodiff one for any pattern."""
    model = gf.MLP(2, (3, 2), key=getkey()) if deep else gf.ShallowReLU(2, 3, key=getkey())
    data = gf.teacher_student(gf.ShallowReLU(2, 2, key=getkey()), 16, getkey())
    params, static = eqx.partition(model, eqx.is_inexact_array)
    pre = jax.vmap(model.hidden_preactivations)(data.x_train).T
    own = (pre > 0).astype(pre.dtype)
    plain = flow_field(static, data, gf.mse)(0.0, params, None)
    assert tree_allclose(pattern_field(static, data, gf.mse)(0.0, params, own), plain, rtol=1e-12, atol=1e-14)
    other = jr.bernoulli(getkey(), 0.5, own.shape).astype(own.dtype)
    auto = pattern_field(static, data, gf.mse)(0.0, params, other)
    if not deep:
        hand = sliding_field(static, data, gf.mse, None, 1e-8, 1e-8)(0.0, params, other)
        assert tree_allclose(hand, auto, rtol=1e-12, atol=1e-14)


def test_gated_sliding_field_equals_the_dense_one(getkey):
    """The gated correction (only when a pair is in the band) is the dense one: off every band,
    and with neuron 0 exactly on the kink of point 0."""
    model = gf.ShallowReLU(2, 3, key=getkey())
    data = gf.teacher_student(gf.ShallowReLU(2, 2, key=getkey()), 16, getkey())
    params, static = eqx.partition(model, eqx.is_inexact_array)
    w, z = params.W[0], data.x_train[0]
    on = eqx.tree_at(lambda p: p.W, params, params.W.at[0].set(w - (w @ z) / (z @ z) * z))
    args = (static, data, gf.mse, jnp.asarray(10.0), jnp.asarray(1e-6), jnp.asarray(1e-6))
    for p in (params, on):
        assert tree_allclose(sliding_field(*args)(0.0, p, None), dense_sliding_field(*args)(0.0, p, None))


@pytest.mark.parametrize("n_on", [3, 40])  # a few pairs, and more than cond_any's groups of members
def test_gated_correction_with_several_attractive_pairs(getkey, n_on):
    """``n_on`` points on neuron 0's kink, each attractive (their corrections averaged): the
    gated correction equals the dense one, for one net and under ``vmap`` with members on
    and off the kink (the sweep's batched branch).

    Neuron 0 is ``w = (1, 0)`` and the kink points ``(0, s_j)``, ``s_j in [2, 3]``; the one
    active point ``p = (1, 1)`` has ``g_p < 0`` and the kink points ``g_j > 0`` (targets
    +-100 on either side), so ``a_j = z_j . F_in = s_j |g_p| > 0`` and ``a_j < g_j |z_j|^2``:
    attractive. The other points have ``x_1 < 0``: inactive for neuron 0."""
    model = gf.ShallowReLU(2, 3, key=getkey())
    model = eqx.tree_at(lambda m: m.W, model, model.W.at[0].set(jnp.array([1.0, 0.0])))
    sign = jnp.sign(model.V[0, 0])
    on = jnp.stack([jnp.zeros(n_on), jr.uniform(getkey(), (n_on,), minval=2.0, maxval=3.0)], axis=1)
    rest = jr.normal(getkey(), (10, 2))
    x = jnp.concatenate([on, jnp.array([[1.0, 1.0]]), rest.at[:, 0].set(-jnp.abs(rest[:, 0]) - 0.5)])
    y = jnp.concatenate([jnp.full((n_on, 1), -100 * sign), jnp.full((1, 1), 100 * sign), jr.normal(getkey(), (10, 1))])
    data = gf.Dataset(x, y)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    args = (static, data, gf.mse, jnp.asarray(10.0), jnp.asarray(1e-6), jnp.asarray(1e-6))
    field, dense = sliding_field(*args), dense_sliding_field(*args)
    one_sided = sliding_field(static, data, gf.mse, None, 1e-6, 1e-6)
    assert not tree_allclose(field(0.0, params, None), one_sided(0.0, params, None))  # a correction ran
    assert tree_allclose(field(0.0, params, None), dense(0.0, params, None))
    off = eqx.tree_at(lambda p: p.W, params, params.W.at[0].add(0.1))
    batch = jax.tree_util.tree_map(lambda *a: jnp.stack(a), params, off, params, off)
    batched = jax.vmap(lambda p: field(0.0, p, None))(batch)
    assert tree_allclose(batched, jax.vmap(lambda p: dense(0.0, p, None))(batch))


def _kink_event(unpack, x, k, j):
    return lambda t, th, P: unpack(th)[0][k] @ x[j]


def _scipy_piecewise(model, data, t1, rtol):
    """An independent reference: the shallow MSE flow (no bias) integrated piece by piece with
    SciPy's DOP853, the pattern fixed on each piece and every kink located by SciPy's events."""
    x, y = np.asarray(data.x_train), np.asarray(data.y_train).reshape(-1)
    n = len(x)
    width, d = model.W.shape

    def unpack(th):
        return th[: width * d].reshape(width, d), th[width * d :]

    def field(t, th, P):
        W, v = unpack(th)
        H = W @ x.T
        A = P * H
        r = (v @ A - y) / n  # d mse / d pred, mse = 1/(2n) sum (pred - y)^2
        FW = -((v[:, None] * r[None, :]) * P) @ x
        Fv = -(A @ r)
        return np.concatenate([FW.ravel(), Fv])

    th = np.concatenate([np.asarray(model.W).ravel(), np.asarray(model.V).ravel()])
    t, pieces = 0.0, 0
    while t < t1 and pieces < 10_000:
        W = unpack(th)[0]
        H = W @ x.T
        P = (H > 0).astype(float)
        # pairs on their kink right now take the side the flow leaves to (both fields agree on it)
        events = []
        for k in range(width):
            for j in range(n):
                if abs(H[k, j]) > 1e-12:
                    ev = _kink_event(unpack, x, k, j)
                    ev.terminal = True
                    events.append(ev)
        sol = solve_ivp(field, (t, t1), th, method="DOP853", rtol=rtol, atol=rtol, args=(P,), events=events)
        t, th = sol.t[-1], sol.y[:, -1]
        pieces += 1
        if sol.status == 1:  # a kink: step a hair past it on the piece's own field, then switch
            th = th + 1e-13 * field(t, th, P)
            t += 1e-13
    return th, pieces


def test_located_solve_matches_an_independent_piecewise_integration():
    """Teacher-student, 12 points, width 3, t1 = 3 (9 smooth pieces): the located Tsit5 solve at
    rtol = atol = 1e-10 ends within 10 rtol (relative) of a piece-by-piece DOP853 integration at
    1e-12 with SciPy's event location (an independent implementation: NumPy field, SciPy stepping
    and root finding), in fewer steps than the plain field, which at the same tolerance chatters
    through the kinks and ends further than 10 rtol away (measured: 6.6e-11 vs 9.6e-9)."""
    teacher = gf.ShallowReLU(2, 2, key=jr.PRNGKey(3))
    data = gf.teacher_student(teacher, 12, jr.PRNGKey(10))
    model = gf.ShallowReLU(2, 3, key=jr.PRNGKey(20))
    ref, pieces = _scipy_piecewise(model, data, 3.0, 1e-12)
    assert pieces >= 5  # the flow crosses kinks
    errs, steps = {}, {}
    for kinks in ("locate", "none"):
        traj = gf.gradient_flow(model, data, "mse", 3.0, rtol=1e-10, atol=1e-10, n_save=2, kinks=kinks)
        th = np.concatenate([np.asarray(traj.final.W).ravel(), np.asarray(traj.final.V).ravel()])
        errs[kinks] = np.linalg.norm(th - ref) / np.linalg.norm(ref)
        steps[kinks] = int(traj.stats["steps"])
        if kinks == "locate":
            assert traj.stats["located"] > 0 and traj.stats["jumps"] > 0
    assert errs["locate"] < 1e-9, errs
    assert errs["none"] > 1e-9, errs
    assert steps["locate"] < steps["none"], steps


def _pair_at_its_kink(kinks: str):
    """One unit, two points; the pair (unit 0, point 0) sits 1e-13 short of its kink (w_1 = -1e-13):
    the locating controller of ``kinks``, the params and the controller's initial state."""
    x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    data = gf.Dataset(x, jnp.array([[1.0], [1.0]]))
    model = gf.ShallowReLU(2, 1, key=jr.PRNGKey(0))
    model = eqx.tree_at(lambda m: (m.W, m.V), model, (jnp.array([[-1e-13, 1.0]]), jnp.array([[1.0]])))
    problem = make_problem(model, data, "mse", 1.0, rtol=1e-10, atol=1e-10, kinks=kinks)
    term, solver, controller = problem.term(), problem.solver(None), problem.controller()
    y0 = eqx.filter(model, eqx.is_inexact_array)
    return controller, y0, controller.init(term, 0.0, 1.0, y0, None, None, solver.func, 5)[1]


def _step_across(controller, y0, state):
    """A step [0, 0.1] with zero error estimate whose end took the pair far past its kink (crossed
    early): ``keep, next t0, next t1, new state``."""
    y1 = eqx.tree_at(lambda p: p.W, y0, jnp.array([[0.05, 1.0]]))
    zero_error = jax.tree_util.tree_map(jnp.zeros_like, y0)
    keep, t0n, t1n, _, new, _ = controller.adapt_step_size(0.0, 0.1, y0, y1, None, zero_error, 5, state)
    return keep, t0n, t1n, new


@pytest.mark.parametrize("just_crossed", [False, True])
def test_a_crossing_at_the_step_start_is_located_unless_the_last_step_made_it(just_crossed):
    """With the sliding field (``slide+locate``), a pair left just short of its kink (a located
    step whose secant time fell short: z0 = -1e-13, within the time the tolerance allows past a
    kink) and crossed by the next step is located again -- the step is rejected and retried to
    end just past the kink -- instead of integrating the whole step on the wrong side's field
    (this missed one crossing of the toy's located Dopri8 at rtol 1e-12: 1.6e-6 off the
    converged flow at t = 0.4). A pair that the last accepted step took across its kink
    (chatter on an attractive kink) is left to the error control: that step is accepted."""
    controller, y0, state = _pair_at_its_kink("slide+locate")
    if just_crossed:
        state = state._replace(changed=state.changed.at[0, 0].set(True))
    keep, t0n, t1n, new = _step_across(controller, y0, state)
    if just_crossed:
        assert bool(keep)
    else:
        # rejected, retried from t0 to just past the crossing (about 2e-13 / 0.5 in time), not 0.1
        assert not bool(keep) and float(t0n) == 0.0 and 0.0 < float(t1n) < 1e-6
        assert int(new.located) == 1


def test_located_toy_matches_the_independent_piecewise_integration():
    """The toy (THEORY.md §5: 100 points, width 2, delta = -1, output signs (1, -1)), t1 = 2: located
    Tsit5 and Dopri8 at rtol = atol = 1e-11 end within 1e-9 (relative) of the piece-by-piece DOP853
    integration at 1e-12 (97 smooth pieces) and closer than the plain field's Tsit5 solve (measured:
    2.2e-10 and 2.1e-10 vs 1.9e-8). Many of the toy's crossings have no jump at the kink itself (a point
    where the target is 0 and no other unit is active has residual 0 there): when the jump was taken at
    the true side only, these crossings were never located and the located solves ended 4.9e-6 and
    1.5e-5 away, worse than the plain field."""
    from gflow.bench.problems import toy_problem

    p = toy_problem(100)
    ref, pieces = _scipy_piecewise(p.model, p.data, 2.0, 1e-12)
    assert pieces >= 50
    errs = {}
    for solver, kinks in (("tsit5", "slide+locate"), ("dopri8", "slide+locate"), ("tsit5", "none")):
        traj = gf.gradient_flow(
            p.model, p.data, "mse", 2.0, solver=solver, rtol=1e-11, atol=1e-11, n_save=2, kinks=kinks
        )
        assert traj.status_name == "successful"
        th = np.concatenate([np.asarray(traj.final.W).ravel(), np.asarray(traj.final.V).ravel()])
        errs[solver, kinks] = np.linalg.norm(th - ref) / np.linalg.norm(ref)
    assert errs["tsit5", "slide+locate"] < 1e-9 and errs["dopri8", "slide+locate"] < 1e-9, errs
    assert errs["tsit5", "slide+locate"] < errs["tsit5", "none"], errs


def test_vectorized_piecewise_reference_matches_the_per_pair_one():
    """gflow.bench.piecewise (one min event over all pairs, the benchmarks' independent reference) and
    the per-pair-event integration above agree on the toy (100 points, t1 = 2, 97 pieces) to 1e-12
    (measured 4.2e-14: the same pieces, both at DOP853 1e-12)."""
    from gflow.bench.piecewise import piecewise_flow
    from gflow.bench.problems import flat, toy_problem

    p = toy_problem(100)
    ref, pieces = _scipy_piecewise(p.model, p.data, 2.0, 1e-12)
    r = piecewise_flow(p.model, p.data, "mse", 2.0, 1e-12)
    assert r.status == "successful" and r.t == 2.0 and r.pieces == pieces
    assert np.linalg.norm(r.theta - ref) / np.linalg.norm(ref) < 1e-12
    assert r.theta.shape == flat(p.model).shape


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_piecewise_reference_field_is_the_gradient_flow_of_an_mlp(getkey, loss):
    """Before the first kink the piecewise reference's hand-written NumPy field (MLP (4, 3), bias-free)
    integrates the same flow as gflow's autodiff field: both at 1e-12 to a time before any crossing end
    within 1e-10 (relative) of each other."""
    from gflow.bench.piecewise import piecewise_flow
    from gflow.bench.problems import flat

    model = gf.MLP(2, (4, 3), key=getkey())
    data = gf.teacher_student(gf.ShallowReLU(2, 2, key=getkey()), 10, getkey())
    if loss == "bce":
        data = gf.Dataset(data.x_train, (data.y_train > jnp.median(data.y_train)).astype(data.x_train.dtype))
    first = piecewise_flow(model, data, loss, 5.0, 1e-12, max_pieces=1)
    t = 0.5 * first.t  # well inside the first smooth piece
    r = piecewise_flow(model, data, loss, t, 1e-12)
    assert r.pieces == 1 and r.status == "successful"
    traj = gf.gradient_flow(model, data, loss, t, solver="dopri8", rtol=1e-12, atol=1e-12, n_save=2, kinks="none")
    th = flat(traj.final)
    assert np.linalg.norm(th - r.theta) / np.linalg.norm(th) < 1e-10


def test_piecewise_reference_stops_at_an_attractive_kink():
    """One unit w, output weight v, points x0 = (1, 0) (target -1) and x1 = (1, 1) (target 2), MSE. On
    the kink z0 = w1 = 0 (with v near 1), dw1/dt = (1 - w2)/2 on the active side and (2 - w2)/2 on the
    inactive one: for 1 < w2 < 2 both sides drive z0 into the kink, a sliding mode. From w = (0.5, 1.5)
    z0 falls to 0 with w2 still near 1.5: the piecewise integration must stop there ('sliding'), not
    chatter through the kink."""
    from gflow.bench.piecewise import piecewise_flow

    x = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    data = gf.Dataset(x, jnp.array([[-1.0], [2.0]]))
    model = gf.ShallowReLU(2, 1, key=jr.PRNGKey(0))
    model = eqx.tree_at(lambda m: (m.W, m.V), model, (jnp.array([[0.5, 1.5]]), jnp.array([[1.0]])))
    r = piecewise_flow(model, data, "mse", 5.0, 1e-12, max_pieces=50)
    assert r.status == "sliding" and r.pieces == 1 and 0.1 < r.t < 5.0, (r.status, r.pieces, r.t)
    assert abs(r.theta[0]) < 1e-10  # stopped on the kink w1 = 0
    assert 1.0 < r.theta[1] < 2.0


@pytest.mark.parametrize("state_of_pair", ["fresh", "target", "relocated"])
def test_without_sliding_a_located_for_pair_left_short_is_located_again_once(state_of_pair):
    """Without the sliding field (``locate`` alone, as for deep nets) a pair crossed right at the
    step's start is left to the error control (a chattering pair on an attractive kink) -- unless a
    located step was aimed at it and fell short of its kink (``target``): then the step is
    rejected and retried to end just past the kink, once per pair (``relocated``: a second time it
    is left to the error control, as a sliding mode would otherwise cost ever shorter steps).
    Measured on the MLP (16, 16) on breast cancer: one such pair left located Tsit5 at 1e-10
    8e-8 off at t = 0.0117; with the rule the located Dopri8 1e-12 run is 1.3e-11 from the piecewise
    SciPy integration at t = 0.108 (3.1e-9 without)."""
    controller, y0, state = _pair_at_its_kink("locate")
    if state_of_pair != "fresh":
        state = state._replace(target=state.target.at[0, 0].set(True))
    if state_of_pair == "relocated":
        state = state._replace(relocated=state.relocated.at[0, 0].set(True))
    keep, t0n, t1n, new = _step_across(controller, y0, state)
    if state_of_pair == "target":
        assert not bool(keep) and float(t0n) == 0.0 and 0.0 < float(t1n) < 1e-6
        assert int(new.located) == 1 and bool(new.relocated[0, 0]) and not bool(new.target[0, 0])
    else:
        assert bool(keep) and int(new.located) == 0
