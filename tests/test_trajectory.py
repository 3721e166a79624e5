"""``Trajectory``: exact save/load round trip, accessors, summary, and the consistency of
its recorded losses and conserved quantities with the saved models."""

import json
import os

import jax
import numpy as np
import pytest

import gflow as gf
from gflow.trajectory import STAT_KEYS, Status, status_from_code


def dag_model(key):
    edges = (
        ("x0", "h0"),
        ("x1", "h0"),
        ("1", "h0"),
        ("h0", "h1"),
        ("x1", "h1"),
        ("h1", "y0"),
        ("h0", "y0"),
        ("x0", "y0"),
    )
    return gf.DAGNet(gf.Graph(2, 2, 1, edges), key=key)


MODELS = {
    "shallow": lambda k: gf.ShallowReLU(2, 4, key=k),
    "mlp": lambda k: gf.MLP(2, (3, 3), key=k),  # no biases: None leaves must survive
    "dag": dag_model,
}


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)  # bit-exact


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_round_trip(tmp_path, name):
    # the shapes and settings of test_discrete.standard_problem: compiled loops are shared
    data = gf.toy(n=32, key=jax.random.PRNGKey(2))
    model = MODELS[name](jax.random.PRNGKey(1))
    traj = gf.train(model, data, "mse", "gd", 0.1, steps=10, n_save=4)
    path = tmp_path / "sub" / f"{name}.npz"  # the folder is created
    traj.save(str(path))
    assert os.listdir(tmp_path / "sub") == [f"{name}.npz"]  # no temporary file left behind
    back = gf.Trajectory.load(str(path))
    assert type(back.models) is type(traj.models)
    if name == "dag":
        assert back.models.graph == traj.models.graph
    for field in ("ts", "loss", "test_loss", "conserved", "models"):
        _leaves_equal(getattr(back, field), getattr(traj, field))
    assert set(back.stats) == set(traj.stats)
    for k in traj.stats:
        np.testing.assert_array_equal(back.stats[k], traj.stats[k])
    assert back.status_name == traj.status_name
    assert back.summary() == traj.summary()


def test_round_trip_flow_nonsuccess_and_no_test_split(tmp_path):
    """A flow trajectory (its extra stats), a non-successful status and no test split.
    (Same shapes and settings as ``test_flow.test_max_steps_is_a_status``: one compile.)"""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, (16, 2))
    data = gf.Dataset(x, np.sin(2 * x[:, 0]) + x[:, 1] ** 2)
    assert not data.has_test
    model = gf.ShallowReLU(2, 3, key=jax.random.PRNGKey(0))
    traj = gf.gradient_flow(model, data, "mse", 0.5, solver="euler", step_size=0.5 / 5000, n_save=11, max_steps=4096)
    assert traj.status_name == "max_steps_reached" and traj.test_loss is None
    traj.save(str(tmp_path / "f.npz"))
    back = gf.Trajectory.load(str(tmp_path / "f.npz"))
    assert back.test_loss is None and back.status_name == "max_steps_reached"
    for field in ("ts", "loss", "conserved", "models"):
        _leaves_equal(getattr(back, field), getattr(traj, field))
    assert set(back.stats) == set(traj.stats)
    for k in traj.stats:
        np.testing.assert_array_equal(back.stats[k], traj.stats[k])


def test_status_codes_round_trip():
    for name in Status._name_to_item:
        item = getattr(Status, name)
        assert gf.status_name(item) == name
        assert gf.status_name(status_from_code(item._value)) == name
        assert status_from_code(item._value) == item


def test_final_model_at_and_consistency():
    data = gf.toy(n=32, key=jax.random.PRNGKey(2))
    model = MODELS["mlp"](jax.random.PRNGKey(1))
    traj = gf.train(model, data, "mse", "gd", 0.1, steps=10, n_save=4)
    assert isinstance(traj.final, gf.MLP)
    _leaves_equal(traj.final, traj.model_at(-1))
    _leaves_equal(traj.model_at(0), model)  # the first saved model is the initial one
    for i in range(len(traj.ts)):
        m = traj.model_at(i)
        loss = gf.mse(jax.vmap(m)(data.x_train), data.y_train)
        test = gf.mse(jax.vmap(m)(data.x_test), data.y_test)
        assert float(traj.loss[i]) == pytest.approx(float(loss), rel=1e-13)
        assert float(traj.test_loss[i]) == pytest.approx(float(test), rel=1e-13)
        np.testing.assert_allclose(traj.conserved[i], gf.conserved(m), rtol=1e-14, atol=1e-15)


def test_summary_and_drift():
    data = gf.toy(n=32, key=jax.random.PRNGKey(2))
    model = MODELS["shallow"](jax.random.PRNGKey(1))
    traj = gf.train(model, data, "mse", "gd", 0.2, steps=10, n_save=4)
    s = traj.summary()
    base = {"t1", "final_loss", "final_test_loss", "status", "drift", "relative_drift", *STAT_KEYS}
    assert base <= set(s)
    assert s["t1"] == pytest.approx(2.0) and s["status"] == "successful"
    assert s["final_loss"] == float(traj.loss[-1]) and s["final_test_loss"] == float(traj.test_loss[-1])
    assert isinstance(s["steps"], int) and isinstance(s["wall_time"], float) and s["wall_time"] > 0
    # drift by hand: max over t and h of |c_h(t) - c_h(0)|, relative to max_h of the
    # initial ||w_in||^2 + ||w_out||^2
    c = np.asarray(traj.conserved)
    d_abs = np.max(np.abs(c - c[0]))
    W, V = np.asarray(model.W), np.asarray(model.V)
    norms = (W**2).sum(1) + (V**2).sum(0)
    assert s["drift"] == pytest.approx(d_abs, rel=1e-12)
    assert s["relative_drift"] == pytest.approx(d_abs / norms.max(), rel=1e-12)
    assert s["drift"] > 0  # GD drifts (by eta^2 per step)
    json.dumps(s)  # plain Python values only
