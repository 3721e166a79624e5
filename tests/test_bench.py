"""Benchmarks (issue 8): the helpers' arithmetic, the PyTorch peer's field, and end-to-end
runs that write every report. Benchmarks are never timed assertions: only files and
finite headline numbers are checked."""

import json
import math
import os

import numpy as np
import pytest

from gflow.bench.curves import cost_at, order
from gflow.bench.problems import flops_per_grad, relative_error

REPORTS = (
    "work_precision.md",
    "work_precision.csv",
    "work_precision.png",
    "peers.md",
    "peers.csv",
    "machine_limit.md",
    "machine_limit.csv",
    "summary.json",
)


def test_cost_at_interpolates_log_log():
    evals = [10, 100, 1000, 10000]
    errors = [1e-1, 1e-2, 1e-3, 1e-4]  # error = 1 / evals
    r = cost_at(evals, errors, 3e-3)
    assert r.how == "interpolated" and math.isclose(r.cost, 1 / 3e-3, rel_tol=1e-12)
    assert cost_at(evals, errors, 1.0).how == "at most"
    assert not math.isfinite(cost_at(evals, errors, 1e-6).cost)
    ext = cost_at(evals, errors, 1e-6, extrapolate=True)
    assert ext.how == "extrapolated" and math.isclose(ext.cost, 1e6, rel_tol=1e-9)
    assert math.isclose(order(evals, errors), 1.0, rel_tol=1e-12)


def test_cost_at_takes_the_cheapest_crossing():
    # a non-monotone curve (kinks): the first run at or below the target ends the bracket
    r = cost_at([1, 10, 100], [1e-1, 1e-3, 1e-2], 1e-2)
    assert r.how == "interpolated" and 1 < r.cost < 10


def test_flops_and_error():
    n, d, width = 398, 30, 8
    assert flops_per_grad(n, d, width) == 3 * (2 * n * d * width + 2 * n * width) == 6 * n * width * (d + 1)
    assert relative_error(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == 1.0
    assert relative_error(np.array([np.nan, 1.0]), np.array([1.0, 0.0])) == math.inf


def test_torch_field_matches_jax():
    pytest.importorskip("torch")
    pytest.importorskip("torchdiffeq")
    from gflow.bench import peers, problems, torch_net

    for problem in (problems.toy_problem(50), problems.breast_cancer_problem()):
        f, y0 = peers.jax_flat_field(problem)
        field, theta0, calls = torch_net.torch_field(problem)
        np.testing.assert_array_equal(theta0.numpy(), y0)
        np.testing.assert_allclose(field(0.0, theta0).numpy(), f(y0), rtol=1e-12, atol=1e-14)
        assert calls == [1]


def test_torch_missing_is_a_note(monkeypatch):
    import sys

    from gflow.bench import peers, problems

    monkeypatch.setitem(sys.modules, "torchdiffeq", None)  # import fails as if not installed
    rows, note = peers.torch_rows(problems.toy_problem(20), np.zeros(6), peers.GRIDS["smoke"])
    assert rows == [] and "bench" in note


def _check(out, summary):
    for name in REPORTS:
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["size"] == summary["size"]
    gd_vs_flow = {h["target"]: h for h in summary["work_precision"]}[1e-3]
    assert gd_vs_flow["ratio"] is not None and math.isfinite(gd_vs_flow["ratio"]) and gd_vs_flow["ratio"] > 0
    assert 0 < summary["machine"]["best"]["peak_fraction"] < 10
    assert all(math.isfinite(v) and v > 0 for v in summary["machine"]["peaks_gflops"].values())
    assert "Headline" in open(os.path.join(out, "work_precision.md")).read()


def test_bench_smoke(tmp_path):
    """``run_all`` at the smoke size (toy problem, a few settings; about a minute, mostly compiling)."""
    from gflow.bench import run_all

    summary = run_all("smoke", str(tmp_path), log=lambda *a: None)
    _check(str(tmp_path), summary)


@pytest.mark.slow
def test_gflow_bench_quick(tmp_path):
    """``gflow bench --quick`` end to end (under 3 minutes on a 2-core CPU)."""
    from gflow.cli import main

    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    for name in REPORTS:
        assert (tmp_path / name).stat().st_size > 0
    ratio = {h["target"]: h for h in summary["work_precision"]}[1e-3]["ratio"]
    assert ratio is not None and math.isfinite(ratio)
    assert summary["machine"]["best"]["peak_fraction"] > 0


def test_split_loop_results_combine():
    """A loop split over processes lasts as long as its slowest process and did all their work."""
    from gflow.bench.sweeps import _combine

    parts = [
        dict(seconds=2.0, executed=300, useful=300, max_steps=90, mean_steps=30.0, compile=1.0, n=10),
        dict(seconds=3.0, executed=100, useful=100, max_steps=20, mean_steps=10.0, compile=2.0, n=10),
    ]
    r = _combine(parts)
    assert (r["seconds"], r["executed"], r["useful"], r["max_steps"], r["n"]) == (3.0, 400, 400, 90, 20)
    assert r["mean_steps"] == 20.0 == 400 / 20


@pytest.mark.slow
def test_split_loop_runs_every_init_once():
    """``measure("loop", ..., processes=2)``: two processes side by side run disjoint halves
    whose steps add up to the one-process loop's (same solves)."""
    from gflow.bench.sweeps import measure
    from gflow.sweep.config import SweepConfig

    cfg = SweepConfig(data="toy", n_data=64, width=2, t1=2.0, rtol=1e-6, atol=1e-6, kinks="none")
    one, two = measure("loop", cfg, 6), measure("loop", cfg, 6, processes=2)
    assert two["n"] == one["n"] == 6
    assert two["executed"] == one["executed"] and two["max_steps"] == one["max_steps"]
