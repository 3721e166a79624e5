"""Curves in the rows and where the saved times lie (``curves``, ``save_times``; issue 23)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gflow as gf
from gflow.losses import full_batch_loss, mse
from gflow.sweep import SweepConfig, dataset, make_init, run_sweep, saved_times
from gflow.sweep.store import read_runs

FLOW = dict(data="toy", n_data=60, width=3, n_inits=3, chunk_size=3, slots=2, t1=4.0, n_save=6, curves=True)


def _col(table, name):
    return table.column(name).to_pylist()


def test_flow_curves_log_times(tmp_path):
    """``save_times = "log"``: 0 then log-spaced from t1/1000 to t1. The curves start and end
    at the rows' initial and final losses, the gradient norm at t = 0 is ``||grad L||`` of
    the initialization computed here with ``jax.grad``, and the loss curve equals a single
    ``gradient_flow`` solve saved at the same times (kinks off: a smooth flow, so the batched
    engine and the single solve agree to round-off, 1e-10)."""
    cfg = SweepConfig(**FLOW, save_times="log", kinks="none")
    run_sweep(cfg, str(tmp_path), progress=False)
    table = read_runs(str(tmp_path))
    ts = np.concatenate([[0.0], np.geomspace(4e-3, 4.0, 5)])
    np.testing.assert_allclose(saved_times(cfg), ts, rtol=1e-15)
    data, _ = dataset(cfg)
    for row in table.to_pylist():
        assert row["curve_t"] == pytest.approx(list(ts), rel=1e-15)
        assert row["curve_loss"][0] == pytest.approx(row["initial_loss"], rel=1e-12)
        assert row["curve_loss"][-1] == pytest.approx(row["final_loss"], rel=1e-12)
        assert row["curve_test_loss"][-1] == pytest.approx(row["final_test_loss"], rel=1e-12)
        model0 = make_init(cfg, data, jnp.asarray(row["index"]))
        grad = jax.grad(lambda m: full_batch_loss(m, data.x_train, data.y_train, mse))(model0)
        norm = float(
            jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(eqx.filter(grad, eqx.is_inexact_array))))
        )
        assert row["curve_grad_norm"][0] == pytest.approx(norm, rel=1e-12)
        single = gf.gradient_flow(model0, data, "mse", 4.0, ts=ts, rtol=cfg.rtol, atol=cfg.atol, kinks="none")
        np.testing.assert_allclose(row["curve_loss"], np.asarray(single.loss), rtol=1e-10)


def test_gd_curves_match_train(tmp_path):
    """For GD the loss curve is ``gf.train``'s loss at the saved steps (to 1e-12)."""
    cfg = SweepConfig(**dict(FLOW, t1=0.5), method="gd", lr=0.05)
    run_sweep(cfg, str(tmp_path), progress=False)
    row = read_runs(str(tmp_path)).to_pylist()[1]
    data, _ = dataset(cfg)
    traj = gf.train(make_init(cfg, data, jnp.asarray(1)), data, "mse", "gd", lr=0.05, steps=10, n_save=6)
    np.testing.assert_allclose(row["curve_loss"], np.asarray(traj.loss), rtol=1e-12)
    np.testing.assert_allclose(row["curve_t"], np.asarray(traj.ts), rtol=1e-12)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(save_times=[0.0, 1.0, 4.0]), "n_save = 6 times from 0 to t1 = 4.0"),
        (dict(save_times=[0.0, 1.0, 2.0, 3.0, 3.5, 3.9]), "from 0 to t1"),
        (dict(save_times=[0.0, 2.0, 1.0, 3.0, 3.5, 4.0]), "strictly increasing"),
        (dict(save_times="quadratic"), "save_times"),
        (dict(save_times="log", method="gd"), "linear for discrete optimizers"),
        (dict(curves="yes"), "config field 'curves' must be"),
    ],
)
def test_bad_save_times_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(**{**FLOW, **fields})
