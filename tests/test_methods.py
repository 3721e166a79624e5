"""Several methods on the same initializations in one sweep (``methods``, issue 23)."""

import dataclasses
import os

import numpy as np
import pytest

from gflow.cli import main
from gflow.sweep import SweepConfig, run_sweep, store

BASE = dict(data="teacher_student", n_data=40, width=3, n_inits=5, chunk_size=3, t1=2.0, slots=4, n_save=3)
TOML = """\
data = "teacher_student"
n_data = 40
width = 3
n_inits = 5
chunk_size = 3
t1 = 2.0
slots = 4
n_save = 3

[methods.flow]
[methods.gd]
[methods.adam]
lr = 0.05
"""


def _rows(table, method=None):
    """Rows as dicts, without wall times and the method column; a column only some methods
    have (e.g. the flow's ``pins``) is null in the others' rows and left out here."""
    rows = table.to_pylist()
    return [
        {k: v for k, v in r.items() if k not in ("wall_time", "method") and v is not None}
        for r in rows
        if method is None or r["method"] == method
    ]


@pytest.fixture(scope="module")
def methods_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    with open(root / "sweep.toml", "w") as f:
        f.write(TOML)
    out = str(root / "out")
    assert main(["sweep", str(root / "sweep.toml"), "--out", out, "--quiet"]) == 0
    return root, out


def test_each_method_equals_its_own_sweep(methods_sweep):
    """The rows of each method equal those of a one-method sweep with the same fields and
    that method's options (adam with its own lr 0.05, gd with the shared default 0.01); the
    table has a method column, ordered by index then by the config's order of methods."""
    root, out = methods_sweep
    table = store.read_runs(out)
    assert table.column("method").to_pylist() == ["flow", "gd", "adam"] * 5
    assert table.column("index").to_pylist() == [i for i in range(5) for _ in range(3)]
    for method, extra in (("flow", {}), ("gd", {}), ("adam", dict(lr=0.05))):
        single = str(root / f"single-{method}")
        run_sweep(SweepConfig(**BASE, method=method, **extra), single, progress=False)
        assert _rows(table, method) == _rows(store.read_runs(single)), method


def test_same_initial_networks_bit_for_bit(methods_sweep):
    """Every method starts from the same networks: the stored initial parameters are
    identical array for array, and so is the initial loss."""
    _, out = methods_sweep
    nets = {m: store.read_networks(os.path.join(out, m), 2) for m in ("flow", "gd", "adam")}
    keys = [k for k in nets["flow"] if k.startswith("initial_")]
    assert keys
    for m in ("gd", "adam"):
        for k in keys:
            np.testing.assert_array_equal(nets[m][k], nets["flow"][k])
    table = store.read_runs(out)
    loss = np.asarray(table.column("initial_loss").to_pylist()).reshape(5, 3)
    assert np.all(loss == loss[:, :1])
    final = np.asarray(table.column("final_loss").to_pylist()).reshape(5, 3)
    assert np.all(final[:, 1] != final[:, 2])  # the methods did run differently


def test_resume_and_merge(methods_sweep, capsys):
    """Running the same config again runs nothing; gflow sweep merge rebuilds the table."""
    root, out = methods_sweep
    before = store.read_runs(out)
    summary = run_sweep(SweepConfig.from_toml(str(root / "sweep.toml")), out, progress=False)
    assert summary["ran"] == 0 and summary["complete"]
    os.remove(os.path.join(out, store.RUNS))
    assert main(["sweep", "merge", out]) == 0
    assert "15 rows of 3 methods" in capsys.readouterr().out
    assert store.read_runs(out).equals(before)


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        (["flow", "flow"], "config field 'methods' must be a non-empty list of distinct methods"),
        ([], "config field 'methods' must be a non-empty list"),
        (["newton"], "config field 'methods' entry must be one of flow, gd"),
        ({"gd": {"seed": 1}}, "config field 'methods.gd' must be a table whose keys are among"),
        ({"adam": {"lr": -1.0}}, "config field 'methods.adam.lr' must be a positive finite number"),
        ({"gd": {"lr": True}}, "config field 'methods.gd.lr' must be a positive finite number"),
        (3, "config field 'methods' must be a non-empty list"),
    ],
)
def test_bad_methods_refused(methods, message, tmp_path):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        SweepConfig(**BASE, methods=methods)
    with pytest.raises(ValueError, match="config field 'method' must be left out when methods is set"):
        SweepConfig(**BASE, method="gd", methods=["flow"])
    assert not os.listdir(tmp_path)


def test_methods_in_the_hash():
    a = SweepConfig(**BASE, methods=["flow", "gd"])
    b = dataclasses.replace(a, methods=(("flow", ()), ("gd", (("lr", 0.02),))))
    assert store.config_hash(a.to_dict()) != store.config_hash(b.to_dict())
    assert "methods" not in SweepConfig(**BASE).to_dict()  # older stores keep their hash
    assert SweepConfig.from_dict(b.to_dict()) == b


def test_report_on_a_methods_folder(methods_sweep, tmp_path):
    """``gflow sweep report OUT`` on a sweep with methods compares its methods side by side."""
    from gflow.sweep.report import write_report

    _, out = methods_sweep
    _, summary = write_report([out], out_dir=str(tmp_path))
    assert [os.path.basename(s["path"]) for s in summary["sweeps"]] == ["flow", "gd", "adam"]
