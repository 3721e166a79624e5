"""README.md is the user's manual: its Python examples run as written, each in a fresh interpreter
from an empty folder (so they use the installed package, as a new user's would), print what the
README says they print, and every link in it resolves to a file of the repository."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


BLOCKS = re.findall(r"^```python\n(.*?)^```", _readme(), flags=re.S | re.M)

# What the README says a block prints (its ``# ...`` comment on the ``print`` line), for the blocks
# whose output is a fixed, machine-independent value.
EXPECTED = {
    'print(read_runs("results/toy-64").num_rows)': "64",
    'load_trajectory("results/toy-8", 3)': "(11,) (11, 2, 2)",
    'aggregate([("final_loss", "count")])': (
        "[{'method': 'flow', 'final_loss_count': 4}, {'method': 'gd', 'final_loss_count': 4}]"
    ),
    'print(end.kind, f"{end.loss:.6f}", end.n_zero, end.n_units)': "local_min 0.182067 2 2",
    'print(end.kind, f"{end.loss:.5f}", f"{end.hess_min:.4f}", end.n_zero)': "local_min 0.01870 0.0320 0",
}


def test_the_readme_has_its_examples():
    # the library, topology and two sweep examples; a change in how blocks are fenced would
    # otherwise make the test below check nothing
    assert len(BLOCKS) >= 4
    assert any("gradient_flow(" in b for b in BLOCKS) and any("run_sweep(" in b for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs_as_written(block, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for call, printed in EXPECTED.items():
        if call in block:
            assert proc.stdout.strip().splitlines()[-1] == printed, proc.stdout


def test_readme_links_stay_inside_the_repository():
    links = re.findall(r"\]\(([^)\s]+)\)", _readme())
    assert links, "the README links into docs/ and results/"
    for link in links:
        assert "://" not in link and not link.startswith("mailto:"), f"README links outside the repository: {link}"
        path = os.path.normpath(os.path.join(ROOT, link.split("#")[0]))
        assert path.startswith(ROOT + os.sep), f"README link leaves the repository: {link}"
        assert os.path.exists(path), f"README link to a missing file: {link}"
