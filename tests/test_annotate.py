"""Re-scoring a finished sweep from its stored networks (``gflow sweep annotate``, issue 23)."""

import dataclasses
import math
import os

import equinox as eqx
import jax
import numpy as np
import pytest

import gflow as gf
from gflow.cli import main
from gflow.sweep import SweepConfig, run_sweep, store
from gflow.sweep.annotate import annotate

# 16 students of width 4 against the default teacher (width 2), 100 points, to t = 30: some
# runs end near the teacher, none exactly, so the count of ``recovered`` moves with the
# tolerance (0, 1 and 7 of 16 at 1e-3, 0.05 and the data's resolution, measured).
CFG = SweepConfig(
    data="teacher_student", n_data=100, width=4, n_inits=16, chunk_size=8, t1=30.0, slots=8, n_save=3
)  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("annotate") / "base")
    run_sweep(CFG, out, progress=False)
    return out


def _recovered(table):
    return table.column("recovered").to_pylist()


def test_annotate_equals_sweeps_run_at_those_tolerances(base, tmp_path):
    """Must-show 2: re-scored at three tolerances (two numbers and the data's resolution),
    the ``recovered`` column equals that of the same sweep run with ``recover_tol`` set to
    the tolerance; the counts differ, so the test tells the tolerances apart. Annotating
    leaves ``runs.parquet`` and the config hash as they were."""
    before = store.read_runs(base, annotated=False)
    hash_before = store.read_manifest(base)["config_hash"]
    data, _ = gf.sweep.dataset(CFG)
    counts = []
    for tol in (1e-3, 0.05, "data"):
        value = gf.data_resolution(data.x_train) if tol == "data" else tol
        notes = annotate(base, tol)
        assert notes.column("recover_tol").to_pylist() == [value] * CFG.n_inits
        direct = tmp_path / str(tol)
        run_sweep(dataclasses.replace(CFG, recover_tol=value), str(direct), progress=False)
        assert _recovered(store.read_runs(str(direct))) == _recovered(notes) == _recovered(store.read_runs(base))
        counts.append(sum(_recovered(notes)))
    assert len(set(counts)) == 3, counts
    assert store.read_runs(base, annotated=False).equals(before)
    assert store.read_manifest(base)["config_hash"] == hash_before
    store.open_store(base, CFG.to_dict(), resume=True)  # still the same sweep


def test_annotate_cli(base, capsys):
    """``gflow sweep annotate DIR --recover-tol TOL`` prints the count and writes the file;
    a bad tolerance is one line naming the option, exit 2."""
    assert main(["sweep", "annotate", base, "--recover-tol", "0.05"]) == 0
    out = capsys.readouterr().out
    expected = sum(_recovered(store.read_runs(base)))
    assert out.startswith(f"recovered at tol 0.05: {expected} of {CFG.n_inits} runs")
    assert os.path.exists(os.path.join(base, store.ANNOTATIONS))
    for bad in ("-1", "nan", "loose"):
        assert main(["sweep", "annotate", base, "--recover-tol", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--recover-tol" in err[0], err


def test_annotate_refuses_other_sweeps(tmp_path):
    cfg = SweepConfig(method="gd", steps=3, n_data=16, width=2, n_inits=2, chunk_size=2)
    run_sweep(cfg, str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="teacher-student sweeps"):
        annotate(str(tmp_path), 1e-3)


def test_data_resolution_closed_form():
    """Directions at 0, 30 and 100 degrees (and their opposites, the same lines): the gaps
    modulo 180 degrees are 30, 70 and 80 degrees, so the resolution is 80 degrees."""
    deg = np.deg2rad([0.0, 30.0, 100.0, 180.0, 210.0])
    x = np.stack([np.cos(deg), np.sin(deg)], axis=1) * np.array([[1.0], [2.0], [0.5], [3.0], [1.0]])
    assert gf.data_resolution(x) == pytest.approx(math.radians(80.0), abs=1e-12)
    with pytest.raises(ValueError, match="shape"):
        gf.data_resolution(np.ones((4, 3)))


def test_recover_distance_is_the_threshold(base):
    """``recover_distance`` is the smallest grid tolerance at which ``recovered`` holds:
    ``recovered`` at it and not a quarter decade below (checked from the stored networks
    with :func:`gflow.recovered` directly)."""
    from gflow.sweep.annotate import recover_distance
    from gflow.sweep.problems import _init_structure

    notes = annotate(base, 1e-3)
    distances = notes.column("recover_distance").to_pylist()
    assert all(math.isfinite(d) for d in distances)  # every run gets near the teacher at some scale
    data, teacher = gf.sweep.dataset(CFG)
    treedef, static = _init_structure(CFG, data)
    nets = store.read_networks(base, 2)
    for r, d in enumerate(distances):
        leaves = [nets[f"final_{k}"][r] for k in range(treedef.num_leaves)]
        student = eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
        assert recover_distance(student, teacher) == d
        assert gf.recovered(student, teacher, d) and not gf.recovered(student, teacher, d / 10**0.25)


def test_recovered_at_the_data_resolution(base):
    """``gf.recovered(..., tol="data", x=x)`` is ``recovered`` at ``data_resolution(x)``, as
    the annotation with ``--recover-tol data`` counts it; without ``x`` it is refused."""
    from gflow.sweep.problems import _init_structure

    data, teacher = gf.sweep.dataset(CFG)
    treedef, static = _init_structure(CFG, data)
    nets = store.read_networks(base, 2)
    notes = annotate(base, "data").column("recovered").to_pylist()
    for r, flag in enumerate(notes):
        leaves = [nets[f"final_{k}"][r] for k in range(treedef.num_leaves)]
        student = eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
        assert gf.recovered(student, teacher, "data", x=data.x_train) == flag
    with pytest.raises(ValueError, match="'data' with the inputs x"):
        gf.recovered(student, teacher, "data")
