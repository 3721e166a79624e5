"""Events (gflow.events) on the scalar net of THEORY.md §1, where every event time is known.

d = l = e = 1, one data point x = 1, L = 1/2 (v relu(w) - y)^2, p = v w, delta = w^2 - v^2:
dp/dt = -(p - y) sqrt(delta^2 + 4 p^2). Balanced (delta = 0), y > 0:
p(t) = y / (1 + (y/p0 - 1) e^{-2yt}). With y < 0, p falls to 0 at
t* = int_0^{p0} dp / ((p - y) sqrt(delta^2 + 4p^2)); there w reaches 0 if delta < 0 (the
neuron dies) and v reaches 0 if delta > 0 (the output weight changes sign).
"""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq

import gflow as gf
from gflow.trajectory import Trajectory

TOL = 1e-10
T1 = 5.0
KW = dict(rtol=TOL, atol=TOL, n_save=11, max_steps=20_000)  # one compiled solve per (on_event, kinks)


def scalar(w, v):
    m = gf.ShallowReLU(1, 1, key=jr.PRNGKey(0))
    return eqx.tree_at(lambda m: (m.W, m.V), m, (jnp.array([[w]]), jnp.array([[v]])))


def one_point(y):
    return gf.Dataset(jnp.ones((1, 1)), jnp.array([y]))


def all_events(loss_thr=0.0, grad_thr=0.0):
    """The four kinds, always in this order (same structure: the thresholds are arrays)."""
    return [gf.LossBelow(loss_thr), gf.GradNormBelow(grad_thr), gf.OutputSignChange(), gf.NeuronDies()]


Y, P0 = 2.0, 0.25  # balanced: w = v = 0.5


def p_balanced(t):
    return Y / (1 + (Y / P0 - 1) * np.exp(-2 * Y * t))


def t_of_p(p):
    return -np.log((Y / p - 1) / (Y / P0 - 1)) / (2 * Y)


def t_zero(p0, delta, y):
    integrand = lambda p: 1.0 / ((p - y) * np.sqrt(delta**2 + 4 * p * p))
    return quad(integrand, 0.0, p0, epsabs=0.0, epsrel=1e-12, limit=200)[0]


def test_record_loss_and_grad_norm():
    """Balanced, y = 2: L = 1/2 (p - y)^2 reaches 1e-3 at p = y - sqrt(2e-3); ||grad L|| =
    (y - p) sqrt(w^2 + v^2) = (y - p) sqrt(2p) first rises (p < y/3), then reaches 1e-2 on the
    way down. Record mode notes both and integrates on to t1 through the restarts."""
    p_grad = brentq(lambda p: (Y - p) * np.sqrt(2 * p) - 1e-2, Y / 3, Y, xtol=1e-15)
    traj = gf.gradient_flow(
        scalar(0.5, 0.5), one_point(Y), "mse", T1, events=all_events(1e-3, 1e-2), on_event="record", **KW
    )
    s = traj.summary()
    assert s["status"] == "successful" and float(traj.ts[-1]) == T1
    assert s["t_loss_below"] == pytest.approx(t_of_p(Y - np.sqrt(2e-3)), abs=1e-8)
    assert s["t_grad_norm_below"] == pytest.approx(t_of_p(p_grad), abs=1e-8)
    assert s["t_output_sign_change"] == s["t_neuron_dies"] == float("inf")
    assert s["event"] == 0 and s["event_time"] == s["t_loss_below"]
    # the saved trajectory is the closed form at every saved time, across the restarts
    p = np.asarray(traj.models.V[:, 0, 0] * traj.models.W[:, 0, 0])
    np.testing.assert_allclose(p, p_balanced(np.asarray(traj.ts)), rtol=1e-8)


def test_stop_at_loss_below():
    thr = 1e-3
    traj = gf.gradient_flow(scalar(0.5, 0.5), one_point(Y), "mse", T1, events=all_events(thr), **KW)
    s = traj.summary()
    assert s["status"] == "event_occurred" and s["event"] == 0
    assert s["event_time"] == pytest.approx(t_of_p(Y - np.sqrt(2 * thr)), abs=1e-8)
    assert float(traj.ts[-1]) == s["event_time"] and np.all(np.diff(np.asarray(traj.ts)) >= 0)
    assert s["final_loss"] == pytest.approx(thr, rel=1e-7)


@pytest.mark.parametrize("kinks", ["none", "pin"])
def test_neuron_dies(kinks):
    """delta = -0.75 < 0, y = -1: w reaches 0 at t*, v stays at sqrt(0.75). Plain field: the
    crossing of w = 0 is located; pinned: the neuron is pinned when ||w|| <= pin_tol sqrt(-delta),
    i.e. early by about pin_tol sqrt(0.75) / |dw/dt| (pin_tol = sqrt(TOL) = 1e-5)."""
    t_star = t_zero(0.5, -0.75, -1.0)
    traj = gf.gradient_flow(scalar(0.5, 1.0), one_point(-1.0), "mse", T1, kinks=kinks, events=all_events(), **KW)
    s = traj.summary()
    assert s["status"] == "event_occurred" and s["event_time"] == s["t_neuron_dies"]
    assert s["t_output_sign_change"] == float("inf")
    if kinks == "none":
        assert s["event"] == 3 and s["event_time"] == pytest.approx(t_star, abs=1e-8)
    else:
        assert 0 < t_star - s["event_time"] < 3e-5
        assert s["pinned"] == 1 and float(traj.final.W[0, 0]) == 0.0
        # the pinned neuron is a Clarke steady state: the field vanishes at the same time
        assert s["t_grad_norm_below"] == s["t_neuron_dies"]


def test_output_sign_change():
    """delta = +0.75 > 0, y = -1: v reaches 0 at the same t* (w stays >= sqrt(0.75))."""
    t_star = t_zero(0.5, 0.75, -1.0)
    traj = gf.gradient_flow(scalar(1.0, 0.5), one_point(-1.0), "mse", T1, kinks="none", events=all_events(), **KW)
    s = traj.summary()
    assert s["event"] == 2 and s["event_time"] == pytest.approx(t_star, abs=1e-8)
    assert abs(float(traj.final.V[0, 0])) < 1e-8


def test_record_keeps_going_and_orders_events():
    """Record mode on y = -1, delta = +0.75: the output weight changes sign at t*, then the
    loss falls below 1e-4 later; both are recorded, the solve reaches t1."""
    t_star = t_zero(0.5, 0.75, -1.0)
    traj = gf.gradient_flow(
        scalar(1.0, 0.5), one_point(-1.0), "mse", T1, events=all_events(1e-4), on_event="record", **KW
    )
    s = traj.summary()
    assert s["status"] == "successful" and float(traj.ts[-1]) == T1
    assert s["t_output_sign_change"] == pytest.approx(t_star, abs=1e-8)
    assert s["t_output_sign_change"] < s["t_loss_below"] < T1
    assert s["event"] == 2 and s["event_time"] == s["t_output_sign_change"]
    assert s["final_loss"] < 1e-6


def test_event_already_true_at_t0():
    traj = gf.gradient_flow(scalar(0.5, 0.5), one_point(Y), "mse", T1, events=all_events(10.0), **KW)
    s = traj.summary()
    assert s["status"] == "event_occurred" and s["event_time"] == 0.0
    np.testing.assert_array_equal(np.asarray(traj.ts), 0.0)
    np.testing.assert_array_equal(np.asarray(traj.models.W), 0.5)


def test_no_event_no_change():
    """Events that never happen: same trajectory as without events, status successful."""
    a = gf.gradient_flow(scalar(0.5, 0.5), one_point(Y), "mse", T1, **KW)
    b = gf.gradient_flow(scalar(0.5, 0.5), one_point(Y), "mse", T1, events=all_events(), on_event="record", **KW)
    assert b.summary()["status"] == "successful" and b.summary()["event"] == -1
    np.testing.assert_allclose(np.asarray(b.loss), np.asarray(a.loss), rtol=1e-12, atol=1e-300)


def test_events_round_trip_and_recompile(tmp_path):
    m, d = scalar(0.5, 0.5), one_point(Y)
    traj = gf.gradient_flow(m, d, "mse", T1, events=all_events(1e-3), **KW)
    size = gf.flow.solve_flow.jitted()._cached._cache_size()
    gf.gradient_flow(m, d, "mse", T1, events=all_events(2e-3), **KW)  # thresholds are arrays
    assert gf.flow.solve_flow.jitted()._cached._cache_size() == size
    path = str(tmp_path / "ev.npz")
    traj.save(path)
    back = Trajectory.load(path)
    assert back.summary() == traj.summary()
    assert back.status_name == "event_occurred"


def test_events_on_an_mlp(getkey):
    """The output-sign and dead-unit events work on deeper nets (plain field)."""
    x = jr.normal(getkey(), (32, 2))
    data = gf.Dataset(x, -jnp.abs(x[:, 0]))
    mlp = gf.MLP(2, (4, 3), key=getkey())
    traj = gf.gradient_flow(
        mlp, data, "mse", 2.0, rtol=1e-6, atol=1e-6, n_save=5, events=all_events(), on_event="record"
    )
    s = traj.summary()
    assert s["status"] == "successful"
    assert s["t_loss_below"] == float("inf")


def test_event_names_and_validation():
    from gflow.flow.events import parse_events

    parsed = parse_events(["neuron_dies", ("loss_below", 1e-3), "grad_norm_below=1e-8", gf.OutputSignChange()])
    assert [e.name for e in parsed] == ["neuron_dies", "loss_below", "grad_norm_below", "output_sign_change"]
    assert float(parsed[2].threshold) == 1e-8
    assert parse_events(None) == () and len(parse_events("neuron_dies")) == 1
    m, d = scalar(0.5, 0.5), one_point(Y)
    for bad, match in [
        (["loss_below"], "threshold"),
        (["nope"], "events must be among"),
        ([("neuron_dies", 1.0)], "no threshold"),
        (["loss_below=-1"], "non-negative"),
    ]:
        with pytest.raises(ValueError, match=match):
            gf.gradient_flow(m, d, "mse", 1.0, events=bad)
    with pytest.raises(ValueError, match="on_event"):
        gf.gradient_flow(m, d, "mse", 1.0, events=["neuron_dies"], on_event="pause")
