"""The exact gradient flow (issue 3, must-show 2, 4, 6 and 7).

- Conservation: c_h(t) is constant along the flow (THEORY.md §1-2), so the recorded
  drift is pure integration error, bounded by the solver tolerance.
- Closed form: d=l=e=1, one point, ``p = v relu(w)`` solves a scalar ODE (THEORY.md §1).
- Convergence order of the fixed-step solvers and of GD (= explicit Euler) as lr -> 0,
  by the slope of log error vs log step on a problem where no ReLU kink is crossed.
- Failure is a status, never an exception.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import gflow as gf


def set_params(model, **arrays):
    names = tuple(arrays)
    return eqx.tree_at(
        lambda m: tuple(getattr(m, n) for n in names),
        model,
        tuple(jnp.asarray(a, jnp.float64) for a in arrays.values()),
    )


def param_dist(a, b):
    """Euclidean distance between two networks' parameter vectors."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return float(np.sqrt(sum(np.sum((np.asarray(x) - np.asarray(y)) ** 2) for x, y in zip(la, lb, strict=True))))


# ----------------------------------------------------- must-show 2: conservation
# Tolerance: the claim of issue 3 is relative drift < 1e-7 at rtol = atol = 1e-10. The
# local error per accepted step is ~1e-10 of the state, the c_h are quadratic in it, and
# ~10^4 steps accumulate at worst linearly: 1e-7 is the guaranteed order; measured
# relative drifts: 4.3e-12 (breast cancer, 11k steps), 3.1e-12 (MLP), 5.9e-12 (DAG). ``max_steps`` is set high so
# that a slow stretch near a kink ends the test as a failure of conservation only if
# conservation fails.

DRIFT_REL = 1e-7
MAX_STEPS = 200_000


def _check_conservation(traj):
    assert traj.status_name == "successful"
    d_abs, d_rel = (float(v) for v in traj.drift)
    c = np.asarray(traj.conserved)
    by_hand = np.max(np.abs(c - c[0])) / float(jnp.max(gf.unit_norms(traj.model_at(0))))
    assert d_rel == pytest.approx(by_hand, rel=1e-12)
    assert d_rel < DRIFT_REL, d_rel
    # the flow moved: the loss fell by a non-trivial amount (a frozen run would pass too)
    assert float(traj.loss[-1]) < 0.8 * float(traj.loss[0])
    # loss is non-increasing along a gradient flow (up to the solver tolerance)
    assert np.all(np.diff(np.asarray(traj.loss)) < 1e-9)
    return d_rel


def test_conservation_breast_cancer_shallow(getkey):
    data = gf.breast_cancer()
    model = gf.ShallowReLU(30, 8, key=getkey())
    traj = gf.gradient_flow(
        model, data, "bce", 10.0, solver="tsit5", rtol=1e-10, atol=1e-10, n_save=21, max_steps=MAX_STEPS
    )
    _check_conservation(traj)


def test_conservation_mlp_depth3():
    # Teacher-student in d = 3, keys chosen so the solve takes ~1.5k steps: at this
    # tolerance other draws (and the toy problem) can take 10^5 steps in sliding modes
    # along kinks, which would only slow the check down.
    data = gf.teacher_student(gf.ShallowReLU(3, 2, key=jr.PRNGKey(30)), 100, jr.PRNGKey(40))
    model = gf.MLP(3, (8, 8, 8), key=jr.PRNGKey(50))
    traj = gf.gradient_flow(
        model, data, "mse", 1.0, solver="tsit5", rtol=1e-10, atol=1e-10, n_save=11, max_steps=MAX_STEPS
    )
    assert traj.conserved.shape == (11, 24)
    _check_conservation(traj)


def skip_dag(key):
    """Four hidden nodes over three levels with input->hidden, hidden->hidden and
    input->output skip connections and two bias edges."""
    edges = (
        ("x0", "h0"),
        ("x1", "h0"),
        ("x2", "h1"),
        ("x0", "h1"),
        ("1", "h1"),
        ("h0", "h2"),
        ("h1", "h2"),
        ("x1", "h2"),
        ("1", "h2"),
        ("h2", "h3"),
        ("h0", "h3"),
        ("h3", "y0"),
        ("h2", "y0"),
        ("h1", "y0"),
        ("x2", "y0"),
    )
    return gf.DAGNet(gf.Graph(3, 4, 1, edges), key=key)


def test_conservation_dag_skip(getkey):
    teacher = gf.ShallowReLU(3, 2, key=getkey())
    data = gf.teacher_student(teacher, 100, getkey())
    traj = gf.gradient_flow(
        skip_dag(getkey()), data, "mse", 2.0, solver="tsit5", rtol=1e-10, atol=1e-10, n_save=11, max_steps=MAX_STEPS
    )
    _check_conservation(traj)


# --------------------------------------------------------- must-show 4: closed form
# d = l = e = 1, x = 1, y = 2, L = mse = 1/2 (v relu(w) - y)^2 for one point (gflow's mse
# is 1/(2n) sum ||f - y||^2). With p = v w (w > 0) and delta = w^2 - v^2:
#   dp/dt = -(p - y) sqrt(delta^2 + 4 p^2);  delta = 0: p(t) = y / (1 + (y/p0 - 1) e^{-2yt}).
# tsit5 at rtol = atol = 1e-12 is accurate to ~1e-11 here (measured 2.5e-12), so 1e-8 is
# the bound with margin.

ONE_POINT = dict(x=np.array([[1.0]]), y=np.array([2.0]))


def one_neuron(w, v, key):
    return set_params(gf.ShallowReLU(1, 1, key=key), W=[[w]], V=[[v]])


def test_closed_form_balanced(getkey):
    data = gf.Dataset(ONE_POINT["x"], ONE_POINT["y"])
    y, p0 = 2.0, 0.5
    model = one_neuron(np.sqrt(p0), np.sqrt(p0), getkey())
    ts = np.linspace(0.0, 5.0, 51)
    traj = gf.gradient_flow(model, data, "mse", ts=ts, solver="tsit5", rtol=1e-12, atol=1e-12)
    assert traj.status_name == "successful"
    p = np.asarray(traj.models.V[:, 0, 0] * jax.nn.relu(traj.models.W[:, 0, 0]))
    exact = y / (1 + (y / p0 - 1) * np.exp(-2 * y * ts))
    assert np.max(np.abs(p - exact)) < 1e-8
    assert exact[-1] > 1.99  # the window covers the whole sigmoid, not just its start
    # the loss recorded is 1/2 (p - y)^2
    np.testing.assert_allclose(traj.loss, 0.5 * (p - y) ** 2, rtol=1e-12, atol=1e-20)


def test_closed_form_unbalanced(getkey):
    """delta != 0: compare to scipy's DOP853 on the reduced 1-D ODE for p (an independent
    integrator on an independent equation). Measured agreement 5e-12; bound 1e-8."""
    data = gf.Dataset(ONE_POINT["x"], ONE_POINT["y"])
    y = 2.0
    for w0, v0 in [(1.2, 0.3), (0.4, 0.9)]:  # delta = 1.35 > 0 and -0.65 < 0
        model = one_neuron(w0, v0, getkey())
        ts = np.linspace(0.0, 5.0, 51)
        traj = gf.gradient_flow(model, data, "mse", ts=ts, solver="tsit5", rtol=1e-12, atol=1e-12)
        p = np.asarray(traj.models.V[:, 0, 0] * jax.nn.relu(traj.models.W[:, 0, 0]))
        delta = w0**2 - v0**2
        ref = solve_ivp(
            lambda t, p, d=delta: -(p - y) * np.sqrt(d**2 + 4 * p**2),
            (0, 5),
            [w0 * v0],
            t_eval=ts,
            method="DOP853",
            rtol=1e-13,
            atol=1e-14,
        )
        assert np.max(np.abs(p - ref.y[0])) < 1e-8
        assert np.all(np.asarray(traj.models.W) > 0)  # the reduction assumed w > 0
        np.testing.assert_allclose(traj.conserved[:, 0], delta, atol=1e-10)


# ------------------------------------------- must-show 6: orders of convergence
# A problem on which the flow is smooth: inputs in [0.5, 1]^2, positive incoming weights,
# no bias, so every pre-activation w_k . x_i starts > 0.3; the test checks that none gets
# near 0 on [0, T] (so no ReLU kink is crossed and the vector field is analytic).


# One saved-time shape and one max_steps for every solve of this problem, so that compiled
# solves are shared between tests (t1, rtol, atol, step_size are arrays, not compile keys).
N_SAVE = 11
SMALL_MAX_STEPS = 4096


def smooth_problem(key):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, (16, 2))
    data = gf.Dataset(x, np.sin(2 * x[:, 0]) + x[:, 1] ** 2)
    model = set_params(gf.ShallowReLU(2, 3, key=key), W=rng.uniform(0.3, 0.8, (3, 2)), V=[[0.8, -0.4, 0.6]])
    return model, data


def _min_preactivation(traj, data):
    return float(jnp.min(jnp.einsum("tkd,nd->tkn", traj.models.W, data.x_train)))


def _slope(steps, errors):
    return np.polyfit(np.log(steps), np.log(errors), 1)[0]


@pytest.fixture(scope="module")
def smooth_reference():
    model, data = smooth_problem(jr.PRNGKey(0))
    T = 0.5
    ref = gf.gradient_flow(
        model, data, "mse", T, solver="dopri8", rtol=1e-13, atol=1e-13, n_save=N_SAVE, max_steps=SMALL_MAX_STEPS
    )
    assert ref.status_name == "successful"
    assert _min_preactivation(ref, data) > 0.3  # no activation pattern changes on [0, T]
    return model, data, T, ref.final


# Steps: three halvings each, small enough to be in the asymptotic regime (largest
# eigenvalue of the loss Hessian ~3.4, so lambda*dt <= 0.1) and large enough that the
# error stays far above the reference's ~1e-13. Measured slopes: euler 1.01, heun 2.09,
# tsit5 ~6 (its leading error coefficient is small here; the formal order is 5). Bounds:
# euler and heun within 10% of their order; tsit5 >= 4.5.
@pytest.mark.parametrize(
    "solver, n_steps, lo, hi",
    [("euler", (25, 50, 100), 0.9, 1.1), ("heun", (10, 20, 40), 1.8, 2.2), ("tsit5", (4, 8, 16), 4.5, 7.0)],
)
def test_solver_convergence_order(smooth_reference, solver, n_steps, lo, hi):
    model, data, T, ref = smooth_reference
    dts, errs = [], []
    for n in n_steps:
        traj = gf.gradient_flow(
            model, data, "mse", T, solver=solver, step_size=T / n, n_save=N_SAVE, max_steps=SMALL_MAX_STEPS
        )
        assert traj.status_name == "successful"
        assert int(traj.stats["steps"]) == n
        assert _min_preactivation(traj, data) > 0.3
        dts.append(T / n)
        errs.append(param_dist(traj.final, ref))
    assert min(errs) > 1e-10  # far above the reference error
    assert lo < _slope(dts, errs) < hi, (errs, _slope(dts, errs))


def test_gd_converges_to_flow_linearly():
    """GD with step lr is explicit Euler: at t = 1, ||theta_GD - theta_flow|| = O(lr).
    Measured slope 1.002 on this problem (a log-log fit over lr = 1e-2, 5e-3, 2.5e-3);
    bound [0.9, 1.1]. Reference: dopri8 at rtol = atol = 1e-12.

    Also: ``train(gd, lr, n)`` and ``gradient_flow(euler, step_size=lr, t1=n lr)`` take
    the same steps, so they agree to round-off accumulated over n steps (1e-12)."""
    model, data = smooth_problem(jr.PRNGKey(0))
    ref = gf.gradient_flow(
        model, data, "mse", 1.0, solver="dopri8", rtol=1e-12, atol=1e-12, n_save=N_SAVE, max_steps=SMALL_MAX_STEPS
    )
    assert _min_preactivation(ref, data) > 0.3
    lrs = np.array([1e-2, 5e-3, 2.5e-3])
    errs = []
    for lr in lrs:
        traj = gf.train(model, data, "mse", "gd", float(lr), steps=int(round(1 / lr)), n_save=2)
        assert float(traj.ts[-1]) == pytest.approx(1.0, rel=1e-14)
        errs.append(param_dist(traj.final, ref.final))
    slope = _slope(lrs, errs)
    assert 0.9 < slope < 1.1, (errs, slope)
    assert errs[-1] < 1e-3
    euler = gf.gradient_flow(
        model, data, "mse", 1.0, solver="euler", step_size=0.01, n_save=N_SAVE, max_steps=SMALL_MAX_STEPS
    )
    gd = gf.train(model, data, "mse", "gd", 0.01, steps=100, n_save=11)
    assert int(euler.stats["steps"]) == 100
    np.testing.assert_allclose(euler.ts, gd.ts, rtol=1e-14)
    for a, b in zip(jax.tree_util.tree_leaves(euler.models), jax.tree_util.tree_leaves(gd.models), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# -------------------------------------------------- must-show 7: status, not raise


# Each solver in the mode this file already compiles elsewhere where there is one (fixed
# steps for euler/heun, adaptive tsit5 as in the projection test, adaptive dopri8 as the
# reference), so the check adds only the dopri5 and kvaerno5 compiles; the remaining
# modes are the slow test below.
MODES = {
    "euler": "fixed",
    "heun": "fixed",
    "tsit5": "adaptive",
    "dopri5": "adaptive",
    "dopri8": "adaptive",
    "kvaerno5": "adaptive",
}


def _run_small(solver, mode):
    model, data = smooth_problem(jr.PRNGKey(0))
    step = 0.5 / 100 if mode == "fixed" else None
    traj = gf.gradient_flow(
        model,
        data,
        "mse",
        0.5,
        solver=solver,
        rtol=1e-6,
        atol=1e-6,
        step_size=step,
        n_save=N_SAVE,
        max_steps=SMALL_MAX_STEPS,
    )
    assert traj.status_name == "successful"
    assert np.all(np.isfinite(np.asarray(traj.loss)))
    assert float(traj.loss[-1]) < 0.5 * float(traj.loss[0])
    # loose tolerance (and euler's O(dt) = 5e-3 steps), loose bound: measured <= 1.2e-4
    assert float(traj.drift[1]) < 1e-3
    s = traj.stats
    assert int(s["steps"]) == int(s["accepted"]) + int(s["rejected"])
    assert int(s["grad_evals"]) >= int(s["steps"])


def test_solvers_table_is_complete():
    assert set(MODES) == set(gf.SOLVERS)


@pytest.mark.parametrize("solver", list(gf.SOLVERS))
def test_every_solver_runs(solver):
    _run_small(solver, MODES.get(solver, "adaptive"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "solver, mode", [("heun", "adaptive"), ("tsit5", "fixed"), ("dopri5", "fixed"), ("dopri8", "fixed")]
)
def test_every_solver_other_mode(solver, mode):
    _run_small(solver, mode)


def test_max_steps_is_a_status():
    model, data = smooth_problem(jr.PRNGKey(0))
    traj = gf.gradient_flow(
        model, data, "mse", 0.5, solver="euler", step_size=0.5 / 5000, n_save=N_SAVE, max_steps=SMALL_MAX_STEPS
    )
    assert traj.status_name == "max_steps_reached"
    assert int(traj.stats["steps"]) == SMALL_MAX_STEPS


def _compiled_solves():
    """Number of compiled versions of the flow's jitted core (None if not inspectable)."""
    size = getattr(getattr(gf.flow.solve_flow, "_cached", None), "_cache_size", None)
    return size() if size is not None else None


def test_projection_removes_drift_and_no_recompile():
    """At a loose tolerance the plain solve drifts; ``project=True`` pins every c_h to its
    initial value to round-off (relative < 1e-12) at the same tolerance.

    Also: t1, rtol and atol travel as arrays, so a solve with new values reuses the
    compiled one."""
    model, data = smooth_problem(jr.PRNGKey(0))
    kw = dict(solver="tsit5", n_save=N_SAVE, max_steps=SMALL_MAX_STEPS)
    plain = gf.gradient_flow(model, data, "mse", 3.0, rtol=1e-3, atol=1e-3, **kw)
    n = _compiled_solves()
    again = gf.gradient_flow(model, data, "mse", 2.0, rtol=1e-4, atol=1e-5, **kw)
    assert _compiled_solves() == n
    assert again.status_name == "successful" and float(again.ts[-1]) == 2.0
    proj = gf.gradient_flow(model, data, "mse", 3.0, rtol=1e-3, atol=1e-3, project=True, **kw)
    assert plain.status_name == proj.status_name == "successful"
    d_plain, d_proj = float(plain.drift[1]), float(proj.drift[1])
    assert d_proj < 1e-12, d_proj
    assert d_plain > 1e3 * d_proj and d_plain > 1e-8, (d_plain, d_proj)
    # both still solve the same flow: losses agree to the tolerance's order
    np.testing.assert_allclose(proj.loss, plain.loss, rtol=1e-2)


# ------------------------------------------------------------------ validation


def test_flow_validation_errors():
    model, data = smooth_problem(jr.PRNGKey(0))
    cases = [
        (dict(t1=1.0, solver="rk4"), "solver"),
        (dict(t1=0.0), "t1"),
        (dict(t1=-1.0), "t1"),
        (dict(t1=1.0, rtol=0.0), "rtol"),
        (dict(t1=1.0, atol=-1.0), "atol"),
        (dict(t1=1.0, n_save=1), "n_save"),
        (dict(t1=1.0, max_steps=0), "max_steps"),
        (dict(t1=1.0, step_size=0.0), "step_size"),
        (dict(t1=1.0, solver="kvaerno5", step_size=0.1), "step_size"),
        (dict(ts=[0.0, 1.0, 0.5]), "ts"),
        (dict(t1=1.0, n_save=3, loss="hinge"), "loss"),
    ]
    for kw, field in cases:
        loss = kw.pop("loss", "mse")
        with pytest.raises(ValueError, match=field):
            gf.gradient_flow(model, data, loss, **kw)
