"""``gflow sweep`` from the command line: the example config is valid, a tiny sweep runs and
merges, and bad input is one sentence with exit code 2."""

import os

import pyarrow.parquet as pq

import gflow as gf
from gflow.cli import main
from gflow.sweep import dataset, store
from gflow.sweep.config import SweepConfig

TINY = """\
name = "tiny"
data = "toy"
n_data = 32
width = 2
delta = -1.0
signs = "random"
t1 = 2.0
rtol = 1e-6
atol = 1e-6
n_inits = 6
slots = 4
chunk_size = 3
n_save = 3
"""


def test_example_config_is_valid(tmp_path, capsys):
    assert main(["sweep", "--example"]) == 0
    path = tmp_path / "example.toml"
    path.write_text(capsys.readouterr().out)
    cfg = SweepConfig.from_toml(str(path))
    assert cfg.name == "toy-obstruction" and cfg.kinks == "auto" and cfg.events == ()


def test_teacher_student_example(tmp_path, capsys):
    """The teacher-student example is a valid config with three methods, inits as drawn (no
    relocation), and a teacher chosen by conditions that its geometry meets."""
    assert main(["sweep", "--example", "teacher_student"]) == 0
    path = tmp_path / "ts.toml"
    path.write_text(capsys.readouterr().out)
    cfg = SweepConfig.from_toml(str(path))
    assert [name for name, _ in cfg.methods] == ["flow", "gd", "adam"]
    assert cfg.delta is None and cfg.signs is None and cfg.data == "teacher_student"
    _, teacher = dataset(cfg)
    geometry = gf.teacher_geometry(teacher)
    assert geometry["min_strength"] >= 0.3 and geometry["min_angle"] >= 30.0


def test_sweep_cli_runs_parts_and_merges(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = str(tmp_path / "out")
    assert main(["sweep", str(config), "--out", out, "--quiet", "--part", "0/2"]) == 0
    assert "partial results" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(out, store.RUNS))
    assert main(["sweep", str(config), "--out", out, "--quiet", "--part", "1/2"]) == 0
    table = pq.read_table(os.path.join(out, store.RUNS))
    assert table.num_rows == 6 and table["index"].to_pylist() == list(range(6))
    assert set(table["status"].to_pylist()) == {"successful"}
    assert main(["sweep", "merge", out]) == 0
    assert "merged 6 rows from 2 chunks" in capsys.readouterr().out


def test_sweep_cli_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace('data = "toy"', 'data = "mnist"'))
    cases = [
        ["sweep", str(bad)],
        ["sweep", str(tmp_path / "missing.toml")],
        ["sweep", str(bad), "--part", "3/2"],
        ["sweep", "merge"],
    ]
    for argv in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("gflow sweep: error:"), (argv, err)
    assert not os.path.exists(tmp_path / "results")
