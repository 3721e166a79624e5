"""Every figure runs in quick mode and writes a non-empty PNG and PDF; `gflow figure` CLI."""

import os
import time

import pytest

from gflow import cli
from gflow.figures import FIGURES, get

FIGURE_DIR = os.path.join(os.path.dirname(__file__), "..", "gflow", "figures")


def _written(name: str) -> bool:
    return os.path.exists(os.path.join(FIGURE_DIR, f"{FIGURES[name]}.py"))


# Two quick figures in the default run (a sweep figure and a single-flow one); the others, 10-20 s
# each on 2 cores, run with -m slow to keep the default suite within its CI budget.
DEFAULT_FIGURES = ("toy_obstruction", "breast_cancer")


@pytest.mark.parametrize(
    "name", [n if n in DEFAULT_FIGURES else pytest.param(n, marks=pytest.mark.slow) for n in FIGURES]
)
def test_quick_figure_writes_png_and_pdf(name, tmp_path):
    if not _written(name):
        pytest.skip(f"gflow/figures/{FIGURES[name]}.py is not written yet")
    module = get(name)
    assert isinstance(module.DESCRIPTION, str) and "\n" not in module.DESCRIPTION
    start = time.perf_counter()
    files = module.run(str(tmp_path), quick=True)
    first = time.perf_counter() - start
    for ext in ("png", "pdf"):
        path = tmp_path / f"{name}.{ext}"
        assert path.exists() and path.stat().st_size > 0
        assert str(path) in files
    # drawn from the stored data only: removing the figures and calling draw restores them
    for ext in ("png", "pdf"):
        (tmp_path / f"{name}.{ext}").unlink()
    module.draw(str(tmp_path))
    assert all((tmp_path / f"{name}.{ext}").stat().st_size > 0 for ext in ("png", "pdf"))
    print(f"{name}: quick run {first:.1f} s")


def test_figure_list(capsys):
    missing = [n for n in FIGURES if not _written(n)]
    if missing:
        pytest.skip(f"figure modules not written yet: {', '.join(missing)}")
    assert cli.main(["figure", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(FIGURES)
    assert all(len(line.split(maxsplit=1)) == 2 and "(unavailable" not in line for line in lines)


def test_script_entry_point_prints_files_and_time(tmp_path, capsys):
    """``scripts/fig_<name>.py`` and ``gflow figure NAME`` share ``script_main``; a second run
    reuses the stored data."""
    from gflow.cli import script_main

    name = "obstruction_probability"
    for _ in range(2):
        assert script_main(name, ["--quick", "--out", str(tmp_path)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith(f"{name}: ") and out[0].endswith(" s (quick)")
        assert sorted(line.strip() for line in out[1:]) == sorted(str(tmp_path / f"{name}.{e}") for e in ("pdf", "png"))


@pytest.mark.parametrize("argv", [["figure", "no_such_figure"], ["figure"], ["figure", "dag", "--list"]])
def test_figure_bad_input(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gflow figure: error:")


def test_endpoints_census_counts():
    """gflow.figures.endpoints.census on hand-made rows: per component (n_-, m), class counts, the
    distinct losses of each class, collapsed not-critical runs and the flat-direction rule."""
    import numpy as np

    from gflow.figures.endpoints import census, losses_text

    rows = {
        "n_pathological": np.array([0, 0, 0, 2, 2]),
        "effective_label_start": np.array([0, 0, 0, 1, 1]),
        "effective_label_end": np.array([0, 0, 0, 1, 1]),
        "reachable": np.array([True, True, True, False, False]),
        "endpoint": np.array(["global_min", "local_min", "local_min", "local_min", "not_critical"]),
        "endpoint_loss": np.array([-1e-17, 0.182067, 0.188865, 0.188865, 1.3]),
        "n_zero": np.array([2, 2, 3, 2, 0]),
        "n_units": np.array([2, 2, 2, 2, 1]),
        "n_duplicate": np.array([0, 0, 1, 1, 0]),
        "n_collapsed": np.array([0, 0, 0, 0, 1]),
    }
    a, b = census(rows)
    assert (a["n_pathological"], a["m"], a["runs"], a["reachable"]) == (0, 0, 3, True)
    assert (a["global_min"], a["local_min"], a["saddle"], a["not_critical"]) == (1, 2, 0, 0)
    assert a["global_min_losses"] == {0.0: 1} and a["local_min_losses"] == {0.1821: 1, 0.1889: 1}
    assert (a["minima_checked"], a["flat_rule_holds"]) == (3, 3) and a["kept_component"]
    assert (b["reachable"], b["local_min"], b["not_critical"], b["not_critical_collapsed"]) == (False, 1, 1, 1)
    assert (b["minima_checked"], b["flat_rule_holds"]) == (1, 0)  # n_zero 2 != 2 + 1
    assert losses_text(a["local_min_losses"]) == "0.1821 (1), 0.1889 (1)" and losses_text({}) == "-"
