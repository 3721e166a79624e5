"""The documentation site (docs/, mkdocs.yml): the worked examples run at reduced size and show what
the theory says they show, the API and CLI reference pages cover every public name and subcommand,
the generated pages are up to date, and ``mkdocs build --strict`` passes (when mkdocs is installed).
"""

import glob
import importlib.util
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

import gflow as gf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
EXAMPLES = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(DOCS, "examples", "*.py")))


def _load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def public_names() -> set[str]:
    """``gflow.__all__`` (or, without one, the names ``gflow/__init__.py`` binds not starting with
    ``_``), less subpackages and modules: importing re-exports binds them too, and they are
    layout, not API (the reference documents top-level names only)."""
    names = getattr(gf, "__all__", None)
    names = [n for n in vars(gf) if not n.startswith("_")] if names is None else names
    return {n for n in names if not isinstance(getattr(gf, n), types.ModuleType)}


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# ------------------------------------------------------------------------------- reference pages


def test_every_public_name_is_in_the_api_reference():
    text = "\n".join(_read(p) for p in glob.glob(os.path.join(DOCS, "api", "*.md")))
    documented = set(re.findall(r"^::: gflow\.(\w+)\s*$", text, flags=re.M))
    missing = sorted(public_names() - documented)
    assert not missing, f"add `::: gflow.NAME` to the page of its concept under docs/api/ for: {', '.join(missing)}"
    assert len(public_names()) >= 50  # the check saw the real API, not an empty namespace


@pytest.fixture
def gen_ref(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # gen_ref fixes the --help width; restored after the test
    monkeypatch.syspath_prepend(DOCS)
    return _load(os.path.join(DOCS, "gen_ref.py"), "gflow_docs_gen_ref")


def test_every_cli_subcommand_is_in_the_cli_reference(gen_ref):
    subs = gen_ref.subcommands()
    assert {"demo", "run", "sweep", "topology", "figure", "bench"} <= set(subs)
    text = _read(os.path.join(DOCS, "reference", "cli.md"))
    missing = [s for s in subs if f"## gflow {s}\n" not in text or f"$ gflow {s} --help" not in text]
    assert not missing, f"run python docs/gen_ref.py: the CLI reference lacks {missing}"


def test_generated_pages_are_up_to_date(gen_ref):
    for path, make in gen_ref.PAGES.items():
        assert _read(path) == make(), f"{os.path.relpath(path, ROOT)} is out of date: run python docs/gen_ref.py"


def test_sweep_config_reference_lists_every_field():
    import dataclasses

    from gflow.sweep import SweepConfig

    text = _read(os.path.join(DOCS, "guides", "sweep-config.md"))
    rows = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.M))
    assert rows == {f.name for f in dataclasses.fields(SweepConfig)}


def test_every_example_has_a_page_and_a_figure():
    assert len(EXAMPLES) >= 4
    nav = _read(os.path.join(ROOT, "mkdocs.yml"))
    for name in EXAMPLES:
        page = _read(os.path.join(DOCS, "examples", f"{name}.md"))
        assert f'--8<-- "docs/examples/{name}.py"' in page  # the script's source, included verbatim
        assert f"figures/{name}.png" in page
        assert f"examples/{name}.md" in nav
        with open(os.path.join(DOCS, "examples", "figures", f"{name}.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"  # the committed full-size figure


# -------------------------------------------------------------------------- examples, reduced size


@pytest.fixture(scope="module")
def run_example(tmp_path_factory):
    """``run_example(name)``: the example's ``main(out_dir, quick=True)`` result, and its figure checked."""

    def run(name: str) -> dict:
        out = str(tmp_path_factory.mktemp(name))
        module = _load(os.path.join(DOCS, "examples", f"{name}.py"), f"gflow_docs_example_{name}")
        result = module.main(out, quick=True)
        assert result["figure"] == os.path.join(out, f"{name}.png")
        with open(result["figure"], "rb") as f:
            head = f.read()
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 10_000  # a real, non-empty plot
        return result

    return run


def test_example_obstructed_init(run_example):
    r = run_example("obstructed_init")
    net = r["network"]
    n_pos, n_neg, n_zero = net["counts"]
    assert n_pos + n_neg + n_zero == len(net["delta"]) and n_neg == int(np.sum(net["delta"] < 0))
    # d = 2, e = 1: each pathological neuron doubles b_0 (Corollary 1)
    assert net["n_components"] == 2**n_neg and net["betti"][0] == 2**n_neg
    for (scheme, d), (exact, mc, _se) in r["table"].items():
        # Monte Carlo vs closed form: binomial standard error of the exact P with n samples; 5 s.e.
        # bounds a false failure by ~6e-7 per point (and 1/n covers P close to 0 or 1)
        tol = 5 * np.sqrt(exact * (1 - exact) / r["n_mc"]) + 1.0 / r["n_mc"]
        assert np.all(np.abs(mc - exact) <= tol), (scheme, d, exact, mc)


def test_example_flow_vs_adam(run_example):
    r = run_example("flow_vs_adam")
    flow, gd, adam = (r["summaries"][k] for k in r["summaries"])
    assert all(s["status"] == "successful" for s in (flow, gd, adam))
    # exact flow at rtol = atol = 1e-8 over t = 1: drift of order the tolerance (measured ~3e-9)
    assert flow["drift"] < 1e-6
    # GD's drift is lr^2 (|g_w|^2 - |g_v|^2) per step, O(lr) = O(1e-2) over t = 1 (measured ~1e-3)
    assert gd["drift"] > 100 * flow["drift"]
    # same time axis: t = lr * step ends at t1 for both discrete runs
    assert flow["t1"] == pytest.approx(gd["t1"]) == pytest.approx(adam["t1"])


def test_example_sweep_summary(run_example):
    r = run_example("sweep_summary")
    cols = r["summary"]["cols"]
    assert len(cols["index"]) == r["config"].n_inits
    assert np.all(cols["status"] == "successful")
    # the exact flow never leaves its component (Prop. 3): the label is the same at start and end
    assert r["label_changes"] == 0 and np.all(cols["label_changes"] == 0)
    # the reachability prediction, recomputed from the delta signs: reachable iff max(0, 1-P) + max(0, 1-M) <= F
    width = r["config"].width
    for (p, m, f), cell in r["summary"]["cells"].items():
        assert p + m + f == width
        assert cell["reachable"] == (max(0, 1 - p) + max(0, 1 - m) <= f)


def test_example_teacher_recovery(run_example):
    r = run_example("teacher_recovery")
    assert len(r["results"]) == 8
    for label, res in r["results"].items():
        kind, signs = label.split()
        # by hand (theory §1, a_+ = a_- = 1): pathological neurons need one + and one - output;
        # free ones can take either sign, so F = 2 always suffices
        assert res["reachable"] == (kind == "δ>0" or set(signs) == {"+", "-"}), label
        assert res["label_kept"], label  # the exact flow never leaves its component
        assert res["status"] == "successful"
        assert res["reachable"] or not res["recovered"], label  # recovery needs reachability


def test_example_dag_components(run_example):
    r = run_example("dag_components")
    graph = r["model"].graph
    rigid = {graph.edges[e] for e in r["rigid"]}
    # derived by hand: h1 has one incoming edge and c > 0, h2 one outgoing edge and c < 0; h0's
    # negative balance is shared by two outgoing edges, so neither is forced away from 0
    assert rigid == {("x1", "h1"), ("h2", "y0")}
    assert r["n_components"] == 4
    assert r["rigid_signs_kept"]
    assert [sorted(s) for s in r["singular"]] == [["h1"]]
    np.testing.assert_allclose(
        np.asarray(r["trajectory"].conserved),
        np.broadcast_to([-0.5, 0.4, -0.3], (len(r["trajectory"].ts), 3)),
        atol=1e-6,
    )


# --------------------------------------------------------------------------------------- the build


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason='the docs extra is not installed (pip install -e ".[docs]")')
    site = tmp_path / "site"  # pages are NAME.html: the offline plugin turns off directory URLs
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in EXAMPLES:  # the examples' figures are in the built site, on their pages
        assert (site / "examples" / "figures" / f"{name}.png").is_file()
        assert f"figures/{name}.png" in (site / "examples" / f"{name}.html").read_text()
    theory = (site / "theory.html").read_text()
    assert 'id="theory-1"' in theory and 'class="arithmatex"' in theory  # math left for KaTeX
    assert (site / "assets" / "katex" / "katex.min.js").is_file()  # vendored: renders offline
