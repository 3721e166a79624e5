"""A Gaussian population wherever a Dataset goes: the flow, discrete optimizers and sweeps
(gflow.population); its flow is the n -> infinity limit of finite-sample flows."""

import json
import os

import jax.random as jr
import numpy as np
import pyarrow.parquet as pq
import pytest
from jax.flatten_util import ravel_pytree

import gflow as gf
from gflow.sweep import store
from gflow.sweep.config import SweepConfig
from gflow.sweep.problems import dataset, make_init
from gflow.sweep.run import run_sweep


def _theta(model):
    return np.asarray(ravel_pytree(model)[0])


def test_finite_sample_flow_converges_to_population_flow():
    """theta_n(t) - theta(t) is O(n^-1/2) (a CLT for the sample gradient, carried along the flow
    by Gronwall): from n = 500 to n = 8000 the RMS error over 4 samples should shrink by
    sqrt(16) = 4. The bound [2.5, 6.5] leaves room for the spread of a 4-sample RMS
    (benchmarks/population.py fits the slope over 10^2..10^5: -0.5 within 0.05)."""
    model = gf.ShallowReLU(2, 3, key=jr.PRNGKey(3))
    opts = dict(rtol=1e-9, atol=1e-9, n_save=2, kinks="none")
    exact = _theta(gf.gradient_flow(model, gf.toy_population(), "mse", 2.0, **opts).final)
    errs = []
    for n in (500, 8000):
        e = [
            _theta(gf.gradient_flow(model, gf.toy(n, key=jr.PRNGKey(10 + s), n_test=0), "mse", 2.0, **opts).final)
            - exact
            for s in range(4)
        ]
        errs.append(np.sqrt(np.mean([np.sum(x**2) for x in e])))
    assert 2.5 <= errs[0] / errs[1] <= 6.5, errs


def test_population_flow_conserves_and_has_no_kink_handling():
    """The smooth population flow: kinks auto means none (no pins, no patterns), the other
    modes are refused; the conserved quantities hold to the solver tolerance."""
    pop = gf.toy_population()
    model = gf.ShallowReLU(2, 4, key=jr.PRNGKey(0))
    problem = gf.make_problem(model, pop, "mse", 1.0)
    assert problem.pinning is None and problem.slide_tol is None
    for kinks in ("pin", "slide", "pin+slide"):
        with pytest.raises(ValueError, match="smooth"):
            gf.make_problem(model, pop, "mse", 1.0, kinks=kinks)
    traj = gf.gradient_flow(model, pop, "mse", 3.0, rtol=1e-10, atol=1e-10)
    s = traj.summary()
    assert s["status"] == "successful" and s["pins"] == 0 and s["pattern_changes"] == 0
    assert s["relative_drift"] < 1e-8
    # the saved loss is the closed form at the saved model, and the flow decreases it
    assert float(traj.loss[-1]) == pytest.approx(float(gf.population_loss(traj.final, gf.toy_teacher())), rel=1e-14)
    assert np.all(np.diff(np.asarray(traj.loss)) < 0)


def test_population_events():
    """Loss and gradient-norm events read the closed-form loss (the event fires where the saved
    loss crosses its threshold); neuron_dies, which reads training points, is refused."""
    pop = gf.toy_population()
    model = gf.ShallowReLU(2, 4, key=jr.PRNGKey(0))
    traj = gf.gradient_flow(model, pop, "mse", 10.0, events=["loss_below=0.05"], rtol=1e-10, atol=1e-10)
    t_event = float(traj.stats["event_time"])
    assert traj.status_name == "event_occurred" and 0 < t_event < 10
    assert float(pop.loss(traj.final)) == pytest.approx(0.05, abs=1e-9)
    with pytest.raises(ValueError, match="neuron_dies"):
        gf.gradient_flow(model, pop, "mse", 1.0, events=["neuron_dies"])


def test_discrete_optimizers_on_a_population():
    """GD on the population is the explicit Euler method of the population flow: its k-th
    iterate equals a hand-written loop of theta -= lr grad L (the closed form), and online SGD
    (a fresh draw per step) stays within a few lr-scaled sample-gradient deviations of it."""
    import jax

    pop = gf.toy_population()
    model = gf.ShallowReLU(2, 3, key=jr.PRNGKey(1))
    gd = gf.train(model, pop, "mse", "gd", lr=0.05, steps=20, n_save=2)
    theta, unravel = ravel_pytree(model)
    grad = jax.grad(lambda th: gf.population_loss(unravel(th), gf.toy_teacher()))
    for _ in range(20):
        theta = theta - 0.05 * grad(theta)
    np.testing.assert_allclose(_theta(gd.final), np.asarray(theta), rtol=1e-12, atol=1e-14)
    sgd = gf.train(model, pop, "mse", "sgd", lr=0.05, steps=20, n_save=2, batch_size=4096)
    # 20 steps of lr 0.05 with per-step gradient noise ~ 1/sqrt(4096): |diff| ~ 1e-2 at most
    assert 0 < np.linalg.norm(_theta(sgd.final) - np.asarray(theta)) < 0.05
    with pytest.raises(ValueError, match="positive integer"):
        gf.train(model, pop, "mse", "sgd", batch_size=0)


POP = dict(data="toy_population", width=3, t1=3.0, rtol=1e-8, atol=1e-8, n_inits=5, slots=4, chunk_size=4, n_save=4)


@pytest.mark.parametrize("method", [pytest.param("flow", marks=pytest.mark.slow), "gd"])  # flow: ~50 s of compiling
def test_population_sweep_rows_equal_single_solves(tmp_path, method):
    """A sweep over the toy population: every row equals the single solve of its init (same
    steps; losses to summation-order round-off of the vmapped engine, measured ~1e-16)."""
    cfg = SweepConfig(**dict(POP, method=method, lr=0.05))
    run_sweep(cfg, str(tmp_path), progress=False)
    rows = pq.read_table(os.path.join(tmp_path, store.RUNS)).to_pylist()
    data, _ = dataset(cfg)
    assert data.is_population and [r["index"] for r in rows] == list(range(cfg.n_inits))
    for r in rows:
        model = make_init(cfg, data, r["index"])
        if method == "flow":
            traj = gf.gradient_flow(model, data, "mse", cfg.t1, rtol=cfg.rtol, atol=cfg.atol, n_save=cfg.n_save)
        else:
            traj = gf.train(model, data, "mse", "gd", lr=cfg.lr, steps=cfg.n_steps, n_save=cfg.n_save)
        s = traj.summary()
        assert r["status"] == s["status"] == "successful"
        assert (r["steps"], r["grad_evals"]) == (s["steps"], s["grad_evals"])
        assert abs(r["final_loss"] - s["final_loss"]) < 1e-12
        assert abs(r["initial_loss"] - float(traj.loss[0])) < 1e-14


def test_population_sweep_config_errors():
    with pytest.raises(ValueError, match="data"):
        SweepConfig(data="toy_populations")
    cfg = SweepConfig(data="teacher_student_population", bias=True)
    data, teacher = dataset(cfg)
    assert data.is_population and teacher is not None
    from gflow.sweep.problems import check_config

    with pytest.raises(ValueError, match="without bias"):
        check_config(cfg, data)


def test_t1_inf_converges_polishes_and_classifies():
    """t1 = inf on the toy population: the flow stops at ||grad L|| <= gtol, saves at 0 and
    log-spaced times, and the end point polishes to a critical point at machine precision.
    Init 0 (Kaiming, width 2) reaches the teacher: loss 0 (to the ~1e-16 rounding of the
    closed form), Hessian PSD with exactly one flat direction per neuron (the rescaling
    tangents; the two neurons match distinct teacher neurons, so nothing else is flat);
    init 1 ends at a spurious minimum, loss 0.1820674 (measured, stable to 1e-12 under the
    polish), also with 2 flat directions."""
    pop = gf.toy_population()
    expected = {0: ("global_min", 0.0), 1: ("local_min", 0.18206740176289)}
    for seed, (kind, loss) in expected.items():
        traj = gf.gradient_flow(gf.ShallowReLU(2, 2, key=jr.PRNGKey(seed)), pop, "mse", float("inf"), n_save=12)
        s, end = traj.summary(), traj.endpoint
        assert s["status"] == "event_occurred" and s["converged"] and s["event"] == 0
        assert s["endpoint"] == end.kind == kind and end.polished
        assert end.loss == pytest.approx(loss, abs=1e-12)
        assert s["grad_norm_final"] < 1e-13 and end.critical
        assert (end.n_zero, end.n_units, end.n_negative) == (2, 2, 0)
        assert end.eigenvalues[2] > 1e3 * end.tol_eig  # the third eigenvalue is clearly positive
        ts = np.asarray(traj.ts)
        np.testing.assert_allclose(ts[1:3], [1e5 * 1e-7, 1e5 * 10 ** (-7 + 7 / 10)], rtol=1e-12)
        assert ts[-1] == s["event_time"] < 1e5  # saved times after the event hold the event state


def test_t1_inf_option_errors():
    model, pop = gf.ShallowReLU(2, 2, key=jr.PRNGKey(0)), gf.toy_population()
    for kwargs, match in (
        (dict(ts=[0.0, 1.0]), "ts"),
        (dict(on_event="record"), "on_event"),
        (dict(gtol=0.0), "gtol"),
        (dict(t_max=float("inf")), "t_max"),
    ):
        with pytest.raises(ValueError, match=match):
            gf.gradient_flow(model, pop, "mse", float("inf"), **kwargs)


@pytest.mark.slow  # ~50 s: compiling the vmapped event solve
def test_t1_inf_sweep_rows_equal_single_solves(tmp_path):
    """A sweep with t1 = inf: each row's end point columns are those of gradient_flow(t1=inf)
    on its init (same steps, same class, same flat-direction count; polished losses and
    Hessian minima agree to rounding, ~1e-16, as the end states agree to ~1e-15)."""
    cfg = SweepConfig(data="toy_population", width=2, n_inits=4, t1=float("inf"), slots=2, chunk_size=4, n_save=6)
    run_sweep(cfg, str(tmp_path), progress=False)
    rows = pq.read_table(os.path.join(tmp_path, store.RUNS)).to_pylist()
    data, _ = dataset(cfg)
    for r in rows:
        model = make_init(cfg, data, r["index"])
        s = gf.gradient_flow(
            model, data, "mse", float("inf"), rtol=cfg.rtol, atol=cfg.atol, n_save=cfg.n_save
        ).summary()
        assert r["converged"] and s["converged"] and r["critical"]
        assert (r["endpoint"], r["steps"], r["n_zero"], r["n_negative"], r["n_units"]) == (
            s["endpoint"],
            s["steps"],
            s["n_zero"],
            s["n_negative"],
            s["n_units"],
        )
        assert abs(r["endpoint_loss"] - s["endpoint_loss"]) < 1e-14
        assert abs(r["hess_min"] - s["hess_min"]) < 1e-12 and r["grad_norm_final"] < 1e-13
        assert r["reachable"] in (True, False)  # toy_population rows carry the teacher flags


def test_cli_run_t1_inf(capsys):
    from gflow.cli import main

    assert main(["run", "--data", "toy_population", "--width", "2", "--t1", "inf", "--n-save", "6", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["converged"] and summary["endpoint"] in ("global_min", "local_min", "saddle")
    assert summary["grad_norm_final"] < 1e-13
    assert main(["run", "--t1", "inf", "--method", "gd"]) == 2
    assert "needs --method flow" in capsys.readouterr().err
