"""Sweep engine: slots reproduce single solves; failures become statuses; resume and devices
give identical rows."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import gflow as gf
from gflow.sweep import store
from gflow.sweep.config import SweepConfig
from gflow.sweep.problems import dataset, make_init
from gflow.sweep.run import run_sweep

SMALL = dict(
    n_data=64,
    width=3,
    delta=0.5,
    signs="random",
    t1=5.0,
    rtol=1e-7,
    atol=1e-7,
    n_inits=10,
    slots=4,
    steps_per_call=8,
    chunk_size=4,
    n_save=6,
)


def _rows(out_dir):
    table = pq.read_table(os.path.join(out_dir, store.RUNS)).drop_columns(["wall_time"])
    return table.to_pylist()


@pytest.mark.parametrize("kinks, delta", [("none", 0.5), ("auto", -0.5)])
def test_rows_match_single_solves(tmp_path, kinks, delta):
    """Each row equals a single ``gradient_flow`` of the same init and kink mode: same step
    counts (the slot runs Diffrax's own step logic, the sliding field and the pinning) and
    losses/drift to round-off. Losses agree to 1e-10; the only differences are
    summation-order effects of the vmapped gradient (measured ~1e-13). With kinks="auto" on
    obstructed inits (delta < 0) the flow slides along kinks, whose band tests amplify those
    effects: Diffrax's own ``vmap(solve_flow)`` differs from the unbatched solve by ~1e-9
    relative in loss on these inits (measured), so there the bound is 1e-8 relative, with
    identical step counts."""
    cfg = SweepConfig(**dict(SMALL, kinks=kinks, delta=delta))
    run_sweep(cfg, str(tmp_path), progress=False)
    rows = _rows(tmp_path)
    assert [r["index"] for r in rows] == list(range(cfg.n_inits))
    data, _ = dataset(cfg)
    for r in rows[:3]:
        traj = gf.gradient_flow(
            make_init(cfg, data, r["index"]),
            data,
            "mse",
            cfg.t1,
            rtol=cfg.rtol,
            atol=cfg.atol,
            n_save=cfg.n_save,
            kinks=kinks,
        )
        s = traj.summary()
        assert r["status"] == s["status"] == "successful"
        assert (r["steps"], r["accepted"], r["rejected"], r["grad_evals"]) == (
            s["steps"],
            s["accepted"],
            s["rejected"],
            s["grad_evals"],
        )
        for key in ("final_loss", "final_test_loss"):
            assert abs(r[key] - s[key]) < (1e-10 if kinks == "none" else 1e-8 * s[key])
        assert abs(r["drift"] - s["drift"]) < 1e-10
        assert r["label_changes"] == 0 and r["label_start"] == r["label_end"]
        if kinks == "auto":
            assert (r["pins"], r["pinned"]) == (int(traj.stats["pins"]), int(traj.stats["pinned"]))
        else:
            assert r["n_pathological"] == 0  # every neuron relocated to delta > 0


def test_failures_become_statuses(tmp_path):
    """max_steps below some trajectories' needs: those rows are marked ``max_steps_reached``
    at t < t1, the sweep finishes, and every other row equals the row of a sweep without
    the limit (except timing)."""
    free = SweepConfig(**SMALL)
    run_sweep(free, str(tmp_path / "free"), progress=False)
    reference = _rows(tmp_path / "free")
    limit = int(np.median([r["steps"] for r in reference]))
    cfg = SweepConfig(**dict(SMALL, max_steps=limit))
    summary = run_sweep(cfg, str(tmp_path / "limited"), progress=False)
    rows = _rows(tmp_path / "limited")
    assert summary["complete"] and len(rows) == cfg.n_inits
    failed = [r for r in rows if r["status"] != "successful"]
    assert 0 < len(failed) < len(rows)
    for r, ref in zip(rows, reference, strict=True):
        if ref["steps"] <= limit:  # equal (one needing exactly `limit` steps ends); floats to round-off
            assert r.keys() == ref.keys()
            for key, value in ref.items():
                assert (
                    r[key] == pytest.approx(value, rel=1e-10, abs=1e-14)
                    if isinstance(value, float)
                    else r[key] == value
                ), key
        else:
            assert r["status"] == "max_steps_reached" and r["steps"] == limit and r["t_reached"] < cfg.t1


def test_rows_independent_of_call_budget(tmp_path):
    """How often the engine returns to the host (``steps_per_call``, doubled while calls are
    short) changes no row: refills are decided on the device."""
    rows = []
    for budget in (1, 64):
        run_sweep(SweepConfig(**dict(SMALL, steps_per_call=budget)), str(tmp_path / str(budget)), progress=False)
        rows.append(_rows(tmp_path / str(budget)))
    assert rows[0] == rows[1]


def test_width_ladder():
    """Compiled widths of a chunk smaller than ``slots``: a ladder 1, 2, 3, 4, 6, 8, 12, ... per
    device, so such a chunk never idles more than 1/3 of its slots."""
    from gflow.sweep.run import _ladder, _width_for

    assert [_ladder(m) for m in range(1, 14)] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16]
    for n_dev in (1, 2, 4):
        widths = sorted({_width_for(n, n_dev) for n in range(1, 300)})
        for n in range(1, 300):
            w = _width_for(n, n_dev)
            per_device = -(-n // n_dev)
            assert w % n_dev == 0 and w // n_dev >= per_device and per_device / (w // n_dev) > 2 / 3
        assert widths[:6] == [n_dev * m for m in (1, 2, 3, 4, 6, 8)]


def test_delta_signs_random():
    """``delta_signs = "random"``: every unit relocated to ``|delta_k| = delta`` with a random
    sign (THEORY.md §5's toy initializations); validated; left out of the config hash when
    absent."""
    from gflow.invariants import conserved

    cfg = SweepConfig(data="toy", n_data=20, width=4, delta=1.5, delta_signs="random")
    data, _ = dataset(cfg)
    deltas = np.stack([np.asarray(conserved(make_init(cfg, data, i))) for i in range(16)])
    np.testing.assert_allclose(np.abs(deltas), 1.5, rtol=1e-12)
    assert (deltas > 0).any() and (deltas < 0).any()  # 64 fair signs: all equal has probability 2^-63
    with pytest.raises(ValueError, match="delta_signs"):
        SweepConfig(delta_signs="random")
    with pytest.raises(ValueError, match="delta_signs"):
        SweepConfig(delta=1.0, delta_signs="up")
    assert "delta_signs" not in SweepConfig().to_dict() and "delta_signs" in cfg.to_dict()


def test_exploding_gd_rows_marked(tmp_path):
    cfg = SweepConfig(**dict(SMALL, method="gd", lr=50.0, steps=200, n_inits=4, delta=None, signs=None))
    run_sweep(cfg, str(tmp_path), progress=False)
    assert {r["status"] for r in _rows(tmp_path)} == {"nonfinite"}


def test_other_config_refused(tmp_path):
    run_sweep(SweepConfig(**dict(SMALL, method="gd", steps=10, n_inits=2, chunk_size=2)), str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="different config"):
        run_sweep(
            SweepConfig(**dict(SMALL, method="gd", steps=11, n_inits=2, chunk_size=2)), str(tmp_path), progress=False
        )


def test_config_validation():
    with pytest.raises(ValueError, match="'solver'"):
        SweepConfig(solver="rk4")
    with pytest.raises(ValueError, match="'width'"):
        SweepConfig(width=0)
    with pytest.raises(ValueError, match="unknown config field"):
        SweepConfig.from_dict({"widht": 3})


_SCRIPT = textwrap.dedent("""
    import sys, jax
    jax.config.update("jax_enable_x64", True)
    from gflow._cache import enable_compilation_cache
    enable_compilation_cache()
    from gflow.sweep.config import SweepConfig
    from gflow.sweep.run import run_sweep
    cfg = SweepConfig(**{cfg!r})
    run_sweep(cfg, sys.argv[1], progress=False, part=(int(sys.argv[2]), int(sys.argv[3])))
""")


def _run_script(cfg: dict, out, part=(0, 1), env=None, wait=True):
    cmd = [sys.executable, "-c", _SCRIPT.format(cfg=cfg), str(out), str(part[0]), str(part[1])]
    env = dict(os.environ, **(env or {}))
    if wait:
        subprocess.run(cmd, check=True, env=env)
        return None
    return subprocess.Popen(cmd, env=env)


@pytest.mark.slow
def test_kill_and_resume_identical(tmp_path):
    """kill -9 mid-sweep, restart: same rows as an uninterrupted run (timing aside)."""
    cfg = dict(SMALL, n_inits=24)
    _run_script(cfg, tmp_path / "ref")
    proc = _run_script(cfg, tmp_path / "killed", wait=False)
    chunks = tmp_path / "killed" / "chunks"
    deadline = time.time() + 300
    while time.time() < deadline and not (chunks.exists() and len(list(chunks.glob("*.parquet"))) >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(chunks.glob("*.parquet")))
    assert 1 <= done < 6, "the kill should land mid-sweep"
    _run_script(cfg, tmp_path / "killed")
    assert _rows(tmp_path / "killed") == _rows(tmp_path / "ref")


@pytest.mark.slow
def test_devices_and_parts_same_rows(tmp_path):
    """4 forced host devices, and two parts as separate processes, give the rows of one run."""
    cfg = dict(SMALL, n_inits=16)
    _run_script(cfg, tmp_path / "one")
    _run_script(cfg, tmp_path / "four", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    for i in range(2):
        _run_script(cfg, tmp_path / "parts", part=(i, 2))
    ref = _rows(tmp_path / "one")
    for other in ("four", "parts"):
        rows = _rows(tmp_path / other)
        assert [r["index"] for r in rows] == [r["index"] for r in ref]
        for a, b in zip(rows, ref, strict=True):
            assert a["steps"] == b["steps"] and a["status"] == b["status"]
            assert abs(a["final_loss"] - b["final_loss"]) < 1e-10


def test_sweep_events_match_gradient_flow(tmp_path):
    """events in the sweep config: rows carry the event index and time of single
    ``gradient_flow`` solves with the same events (stop mode: status event_occurred)."""
    cfg = SweepConfig(**dict(SMALL, n_inits=4, events=["loss_below=0.05"], delta=-0.5))
    run_sweep(cfg, str(tmp_path), progress=False)
    rows = _rows(tmp_path)
    data, _ = dataset(cfg)
    stopped = 0
    for r in rows:
        traj = gf.gradient_flow(
            make_init(cfg, data, r["index"]),
            data,
            "mse",
            cfg.t1,
            rtol=cfg.rtol,
            atol=cfg.atol,
            n_save=cfg.n_save,
            events=["loss_below=0.05"],
        )
        assert r["status"] == traj.status_name
        assert r["event"] == int(traj.stats["event"])
        assert r["event_time"] == pytest.approx(float(traj.stats["event_time"]), rel=1e-8)
        assert r["steps"] == int(traj.stats["steps"])
        stopped += r["status"] == "event_occurred"
        if r["status"] == "event_occurred":
            assert r["final_loss"] == pytest.approx(0.05, rel=1e-6) and r["t_reached"] == r["event_time"]
    assert stopped >= 1


def test_sweep_events_validated():
    with pytest.raises(ValueError, match="events"):
        SweepConfig(events=["loss_above=1"])
    with pytest.raises(ValueError, match="events"):
        SweepConfig(method="gd", events=["neuron_dies"])
