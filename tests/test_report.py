"""``gflow sweep report``: the summaries match the rows, the report of the committed large sweep and
of a flow-vs-GD pair is written (markdown + PNG) with the numbers the rows give, and bad input is
one sentence with exit code 2 and nothing written."""

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from gflow.cli import main
from gflow.sweep import SweepConfig, run_sweep, store
from gflow.sweep.report import quantiles, summarize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LARGE = os.path.join(ROOT, "results", "large_sweep", "sweep")
# GD on the large sweep's problem (same data, widths, relocation, seeds): its first inits
GD_OF_LARGE = SweepConfig(
    name="gd",
    data="toy",
    n_data=256,
    width=2,
    delta=-1.0,
    signs="random",
    method="gd",
    lr=0.05,
    t1=20.0,
    n_inits=16,
    slots=16,
    chunk_size=16,
    n_save=11,
)


def _report_json(argv, capsys) -> dict:
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_summarize_counts_fractions_and_quantiles():
    rows = dict(
        index=np.arange(6),
        final_loss=np.array([1e-5, 2e-4, 0.3, np.nan, 0.2, 1e-6]),
        status=np.array(["successful"] * 3 + ["nonfinite", "max_steps", "successful"]),
        drift=np.array([1e-8, 2e-8, 3e-8, np.nan, 1e-7, 5e-9]),
        steps=np.array([10, 20, 30, 40, 50, 60]),
        label_start=np.array(["+-", "+-", "--", "--", "++", ""]),
    )
    s = summarize(rows, by="label_start", solved=1e-3)
    assert s["n_runs"] == 6 and s["status"] == {"max_steps": 1, "nonfinite": 1, "successful": 4}
    assert s["successful"] == pytest.approx(4 / 6) and s["solved"] == pytest.approx(3 / 6)
    assert s["groups"]["+-"] == dict(n=2, successful=1.0, solved=1.0, final_loss=quantiles([1e-5, 2e-4]))
    assert s["groups"]["--"]["final_loss"]["n"] == 1 and s["groups"]["--"]["solved"] == 0.0
    assert s["groups"]["(none)"]["n"] == 1  # a network without pathological neurons
    assert s["drift"]["n"] == 5 and s["drift"]["max"] == 1e-7 and s["steps"]["median"] == 35.0
    assert quantiles([])["median"] is None


def test_report_of_the_committed_large_sweep(tmp_path, capsys):
    out = str(tmp_path / "report")
    summary = _report_json(["sweep", "report", LARGE, "--out", out], capsys)
    table = pq.read_table(os.path.join(LARGE, store.RUNS))
    loss, label = table["final_loss"].to_numpy(), np.asarray(table["label_start"].to_pylist())
    (s,) = summary["sweeps"]
    assert summary["by"] == "label_start" and s["n_runs"] == 10_000 and s["status"] == {"successful": 10_000}
    assert set(s["groups"]) == {"++", "+-", "-+", "--"}
    for g, v in s["groups"].items():
        assert v["n"] == int(np.sum(label == g))
        assert v["final_loss"]["median"] == pytest.approx(np.median(loss[label == g]))
        assert v["solved"] == pytest.approx(np.mean(loss[label == g] < 1e-3))
    # the two unreachable components never fit; about 2/3 of the reachable ones do (t1 = 20)
    assert s["groups"]["++"]["solved"] == 0 and s["groups"]["--"]["solved"] == 0
    assert 0.6 < s["groups"]["+-"]["solved"] < 0.75 and s["drift"]["max"] < 1e-3
    assert sorted(os.listdir(out)) == ["report.md", "report.png"]
    text = open(os.path.join(out, "report.md")).read()
    assert "| large_sweep | `++` | 2485 |" in text and "![report](report.png)" in text
    assert os.path.getsize(os.path.join(out, "report.png")) > 20_000


def test_report_flow_vs_gd_side_by_side(tmp_path, capsys):
    """The committed exact-flow sweep against GD on the same problem (its first 16 inits): the
    report lists both; GD's drift is O(lr), the flow's is at the tolerance."""
    gd = str(tmp_path / "gd")
    run_sweep(GD_OF_LARGE, gd, progress=False)
    out = str(tmp_path / "report")
    summary = _report_json(["sweep", "report", LARGE, gd, "--by", "effective_label_start", "--out", out], capsys)
    flow_s, gd_s = summary["sweeps"]
    assert "method" in summary["differs"] and gd_s["config"]["method"] == "gd"
    assert [s["label"] for s in summary["sweeps"]] == ["large_sweep (method=flow)", "gd (lr=0.05)"]
    assert set(gd_s["groups"]) <= {"0", "1", "2"} and gd_s["n_runs"] == 16
    assert (
        gd_s["drift"]["median"] > 100 * flow_s["drift"]["median"] and gd_s["drift"]["median"] > flow_s["drift"]["max"]
    )
    assert gd_s["groups"].get("0", {"solved": 0})["solved"] == 0  # unreachable for GD too
    # written next to the first sweep by default: here --out keeps results/ untouched
    assert not os.path.exists(os.path.join(LARGE, "report.md"))
    assert main(["sweep", "report", gd, LARGE]) == 0
    assert "gd (lr=0.05): 16 runs" in capsys.readouterr().out
    assert os.path.exists(os.path.join(gd, "report.md")) and os.path.exists(os.path.join(gd, "report.png"))


def test_report_bad_input_is_one_sentence_and_writes_nothing(tmp_path, capsys):
    incomplete = str(tmp_path / "incomplete")
    cfg = SweepConfig(n_inits=4, chunk_size=2)
    store.open_store(incomplete, cfg.to_dict(), resume=True)
    store.write_chunk(incomplete, 0, [dict(index=0, final_loss=0.1), dict(index=1, final_loss=0.2)])
    other = str(tmp_path / "other")  # the large sweep's rows under another problem's manifest
    os.makedirs(other)
    shutil.copy(os.path.join(LARGE, store.RUNS), other)
    manifest = store.read_manifest(LARGE)
    manifest["config"]["n_data"] = 1000
    with open(os.path.join(other, store.MANIFEST), "w") as f:
        json.dump(manifest, f)
    out = str(tmp_path / "rep")
    cases = [
        (["sweep", "report"], "usage"),
        (["sweep", "report", str(tmp_path / "missing")], "does not exist"),
        (["sweep", "report", str(tmp_path)], "not a sweep folder"),
        (["sweep", "report", incomplete], "1 of 2 chunks are done"),
        (["sweep", "report", LARGE, "--by", "colour"], "not a column"),
        (["sweep", "report", LARGE, "--by", "final_loss"], "distinct values"),
        (["sweep", "report", LARGE, other], "different problems (n_data: 256 vs 1000)"),
        (["sweep", "report", LARGE, LARGE], "given twice"),
        (["sweep", "report", LARGE, "--solved", "0"], "--solved"),
        (["sweep", "report", LARGE, "--slurm"], "--slurm"),
    ]
    for argv, words in cases:
        assert main(argv + ["--out", out]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("gflow sweep: error:") and words in err[0], (argv, err)
    assert not os.path.exists(out) and not os.path.exists(os.path.join(incomplete, "report.md"))
    assert main(["sweep", "report", incomplete]) == 2  # without --out: nothing next to it either
    assert sorted(os.listdir(incomplete)) == ["chunks", store.MANIFEST]


FLOW = SweepConfig(
    name="flow", data="toy", n_data=32, width=2, delta=-1.0, signs="random", t1=4.0, n_inits=8, slots=4, chunk_size=8
)


@pytest.mark.slow
def test_report_of_a_tiny_flow_vs_gd_pair(tmp_path, capsys):
    """Both sweeps run here (the exact flow's compilation makes this slow on a CPU)."""
    import dataclasses

    flow, gd = str(tmp_path / "flow"), str(tmp_path / "gd")
    run_sweep(FLOW, flow, progress=False)
    run_sweep(dataclasses.replace(FLOW, name="gd", method="gd", lr=0.02), gd, progress=False)
    summary = _report_json(["sweep", "report", flow, gd], capsys)
    flow_s, gd_s = summary["sweeps"]
    assert flow_s["n_runs"] == gd_s["n_runs"] == 8 and set(flow_s["groups"]) == set(gd_s["groups"])
    assert (
        gd_s["drift"]["median"] > 100 * flow_s["drift"]["median"] and gd_s["drift"]["median"] > flow_s["drift"]["max"]
    )
    assert os.path.exists(os.path.join(flow, "report.png"))
