"""Sweeps as job arrays (``gflow sweep CONFIG --slurm | --executor local``): the sbatch script
follows the options, a fake ``sbatch`` sees the array and the merge job that depends on it,
re-running submits only the parts with missing chunks, local processes give the rows of one
process, and bad input is one sentence with exit code 2 and nothing written."""

import glob
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from gflow.cli import main
from gflow.sweep import SweepConfig, run_sweep, store
from gflow.sweep.slurm import parts_to_run

pytest.importorskip("submitit")

GD = """\
name = "tiny"
data = "toy"
n_data = 32
width = 2
delta = -1.0
signs = "random"
method = "gd"
lr = 0.05
t1 = 2.0
n_inits = 8
slots = 4
chunk_size = 2
n_save = 3
"""
FAKE_SBATCH = """#!/bin/bash
# fake sbatch: keeps the script it is given, answers as SLURM does
n=$(( $(ls "$FAKE_SBATCH_LOG" 2>/dev/null | wc -l) + 1000 ))
mkdir -p "$FAKE_SBATCH_LOG" && cp "$1" "$FAKE_SBATCH_LOG/$n.sh"
echo "Submitted batch job $n"
"""


def _config(tmp_path, text=GD):
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return str(path)


def _sbatch_options(script: str) -> dict:
    out = {}
    for key, value in re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, flags=re.M):
        out[key] = value if value else True
    return out


def _rows(path):
    return pq.read_table(os.path.join(path, store.RUNS)).drop(["wall_time"])


def test_parts_to_run():
    assert parts_to_run(10, 4, set()) == [0, 1, 2, 3]
    assert parts_to_run(10, 4, {0, 4, 8, 1, 5, 9, 3, 7}) == [2]
    assert parts_to_run(3, 8, set()) == [0, 1, 2]  # parts without chunks are never submitted
    assert parts_to_run(3, 2, {0, 1, 2}) == []


def test_dry_run_prints_the_sbatch_script_of_the_options(tmp_path, capsys):
    out = str(tmp_path / "out")
    argv = ["sweep", _config(tmp_path), "--out", out, "--slurm", "--array", "4", "--max-concurrent", "2"]
    argv += ["--partition", "gpu", "--time", "30", "--mem", "8", "--gpus-per-task", "1"]
    argv += ["--sbatch", "account=abc", "--sbatch", "exclusive", "--dry-run"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    script = captured.out
    opts = _sbatch_options(script)
    assert script.startswith("#!/bin/bash\n")
    assert opts["array"] == "0-3%2" and opts["partition"] == "gpu" and opts["time"] == "30"
    assert opts["mem"] == "8G" and opts["gpus-per-task"] == "1" and opts["job-name"] == "gflow-tiny"
    assert opts["account"] == "abc" and opts["exclusive"] is True
    assert os.path.join(out, "slurm") in opts["output"] and "%A_%a" in opts["output"]
    assert re.search(r"^srun .* -m submitit\.core\._submit ", script, flags=re.M)
    assert "parts 0-3 of 4" in captured.err
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert not os.path.exists(out)


def test_slurm_submits_array_then_merge_and_resubmits_missing_parts(tmp_path, monkeypatch, capsys):
    """A fake ``sbatch``/``srun`` on PATH: the array and the merge job (``afterok`` on the
    array) are submitted; after parts 0, 1, 3 ran, the same command submits part 2 only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 0\n")
    for name in ("sbatch", "srun"):
        os.chmod(bin_dir / name, 0o755)
    log = tmp_path / "sbatch-log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_LOG", str(log))
    config, out = _config(tmp_path), str(tmp_path / "out")
    argv = ["sweep", config, "--out", out, "--slurm", "--array", "4", "--partition", "cpu"]
    assert main(argv) == 0
    assert "submitted array 1000: parts 0-3 of 4, then merge job 1001" in capsys.readouterr().out
    array, merge = (log / "1000.sh").read_text(), (log / "1001.sh").read_text()
    assert _sbatch_options(array)["array"] == "0-3%4"
    merge_opts = _sbatch_options(merge)
    assert merge_opts["dependency"] == "afterok:1000" and merge_opts["kill-on-invalid-dep"] == "yes"
    assert "array" not in merge_opts and merge_opts["partition"] == "cpu"
    for a in range(4):  # task a of the array runs part a
        with open(os.path.join(out, "slurm", f"1000_{a}_submitted.pkl"), "rb") as f:
            assert pickle.load(f).args[2] == (a, 4)

    cfg = SweepConfig.from_toml(config)
    for i in (0, 1, 3):  # as if the array ran, except task 2
        run_sweep(cfg, out, part=(i, 4), progress=False)
    assert main(argv) == 0
    assert "submitted array 1002: parts 2 of 4, then merge job 1003" in capsys.readouterr().out
    assert "array" not in _sbatch_options((log / "1002.sh").read_text())  # one task: a plain job
    with open(os.path.join(out, "slurm", "1002_submitted.pkl"), "rb") as f:
        assert pickle.load(f).args[2] == (2, 4)
    assert main(argv + ["--dry-run"]) == 0
    assert "parts 2 of 4" in capsys.readouterr().err


def test_local_executor_matches_one_process_and_reruns_missing_parts(tmp_path, capsys):
    """``--executor local --array 2`` (real processes) then merge: the rows of one process;
    with part 1's chunks removed, the same command runs part 1 only."""
    config, out, ref = _config(tmp_path), str(tmp_path / "out"), str(tmp_path / "ref")
    run_sweep(SweepConfig.from_toml(config), ref, progress=False)
    argv = ["sweep", config, "--out", out, "--executor", "local", "--array", "2"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "ran parts 0-1 of 2" in text and "merged 8 rows" in text
    assert _rows(out).equals(_rows(ref))
    for c in (1, 3):  # part 1 of 2 owns chunks 1 and 3
        os.remove(store.chunk_path(out, c))
    os.remove(os.path.join(out, store.RUNS))
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "ran parts 1 of 2" in text and "merged 8 rows" in text
    assert _rows(out).equals(_rows(ref))
    assert main(argv) == 0
    assert "all 4 chunks are done" in capsys.readouterr().out


def test_cluster_bad_input_is_one_sentence_and_writes_nothing(tmp_path, capsys, monkeypatch):
    config, out = _config(tmp_path), str(tmp_path / "out")
    base = ["sweep", config, "--out", out]
    cases = [
        base + ["--array", "4"],  # cluster option without --slurm
        base + ["--slurm", "--array", "0"],
        base + ["--slurm", "--max-concurrent", "-1"],
        base + ["--slurm", "--time", "0"],
        base + ["--slurm", "--mem", "-2"],
        base + ["--slurm", "--gpus-per-task", "-1"],
        base + ["--slurm", "--partition", "a b"],
        base + ["--slurm", "--sbatch", "partition=x"],
        base + ["--slurm", "--sbatch", "=3"],
        base + ["--slurm", "--part", "1/2"],
        base + ["--executor", "local", "--dry-run"],
        ["sweep", str(tmp_path / "missing.toml"), "--out", out, "--slurm"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("gflow sweep: error:"), (argv, err)
    assert not os.path.exists(out)
    # another config in the folder: refused before anything is submitted
    os.makedirs(out)
    store.open_store(out, SweepConfig(n_inits=3).to_dict(), resume=True)
    assert main(base + ["--slurm", "--dry-run"]) == 2
    assert "different config" in capsys.readouterr().err
    assert os.listdir(out) == [store.MANIFEST]
    # without the extra installed
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main(["sweep", config, "--out", str(tmp_path / "o2"), "--slurm", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "gflow[cluster]"' in err[0]
    assert not os.path.exists(tmp_path / "o2")


FLOW = """\
name = "toy-flow"
data = "toy"
n_data = 64
width = 2
delta = -1.0
signs = "random"
t1 = 10.0
n_inits = {n}
slots = 8
chunk_size = 8
n_save = 5
"""


@pytest.mark.slow
def test_local_array_of_flows_killed_task_reruns_only_its_part(tmp_path):
    """Exact flows, ``--executor local --array 4 --devices 1``: one task killed mid-way, the
    command fails naming its part; the same command again runs that part only; the rows equal
    one process's (``--devices 1`` in both: the engine's batches are laid out per device)."""
    config, out, ref = _config(tmp_path, FLOW.format(n=64)), str(tmp_path / "out"), str(tmp_path / "ref")
    argv = [sys.executable, "-c", "import sys; from gflow.cli import main; sys.exit(main(sys.argv[1:]))", "sweep"]
    argv += [config, "--out", out, "--executor", "local", "--array", "4", "--devices", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, killed = time.time() + 300, None
    while killed is None and time.time() < deadline and proc.poll() is None:
        if os.path.exists(store.chunk_path(out, 2)) and not os.path.exists(store.chunk_path(out, 6)):
            killed = _kill_task(out, part=2)
        time.sleep(0.05)
    text = proc.communicate(timeout=600)[0]
    assert killed, text
    assert proc.returncode == 1 and "parts 2 failed" in text, text
    assert store.done_chunks(out) >= {0, 1, 3, 4, 5, 7} and 6 not in store.done_chunks(out)
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and "ran parts 2 of 4" in rerun.stdout, rerun.stdout + rerun.stderr
    ref_argv = ["sweep", config, "--out", ref, "--quiet", "--devices", "1"]
    assert subprocess.run(argv[:4] + ref_argv[1:], capture_output=True).returncode == 0
    assert _rows(out).equals(_rows(ref))


def _kill_task(out: str, part: int) -> bool:
    """SIGKILL the process running ``part`` (the child of its local-executor controller,
    whose pid is the job id)."""
    for path in glob.glob(os.path.join(out, "slurm", "*_submitted.pkl")):
        with open(path, "rb") as f:
            if pickle.load(f).args[2][0] != part:
                continue
        controller = os.path.basename(path).split("_")[0]
        with open(f"/proc/{controller}/task/{controller}/children") as f:
            children = [int(p) for p in f.read().split()]
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        return bool(children)
    return False
