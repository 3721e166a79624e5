"""Saved executables (gflow/_traces.py, issue 21): a later process loads the compiled program
instead of tracing it; rows are identical with the saved executables off, cold and warm; the
key separates problems that need different programs; what cannot be keyed by value is traced
as usual."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.random as jr
import numpy as np
import pyarrow.parquet as pq
import pytest

import gflow as gf
import gflow._traces as traces
from gflow.flow.problem import make_problem
from gflow.flow.solve import solve_flow
from gflow.sweep.config import SweepConfig
from gflow.sweep.run import run_sweep
from gflow.sweep.store import read_trajectories


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Saved executables on, in a fresh folder, with nothing held in memory."""
    monkeypatch.setattr(traces, "_FOLDER", [str(tmp_path / "traces")])
    monkeypatch.setattr(traces, "_PROGRAMS", traces.collections.OrderedDict())
    return tmp_path / "traces"


@pytest.fixture
def builds(monkeypatch):
    """How many programs were compiled and how many loaded from a file."""
    counts = dict(compiled=0, loaded=0)
    compile_, load = traces._compile, traces._load

    def compiled(*args):
        counts["compiled"] += 1
        return compile_(*args)

    def loaded(path):
        program = load(path)
        counts["loaded"] += program is not None
        return program

    monkeypatch.setattr(traces, "_compile", compiled)
    monkeypatch.setattr(traces, "_load", loaded)
    return counts


def _rows(out: str) -> dict:
    rows = pq.read_table(os.path.join(out, "runs.parquet")).to_pydict()
    return {k: v for k, v in rows.items() if k not in ("wall", "wall_time")}


def test_sweep_rows_identical_off_cold_and_warm(tmp_path, folder, builds, monkeypatch):
    cfg = SweepConfig(n_data=48, width=3, delta=-1.0, signs="random", t1=2.0, rtol=1e-6, atol=1e-6, n_inits=6,
                      slots=4, chunk_size=6, n_save=3, save_trajectories=True)  # fmt: skip
    with monkeypatch.context() as off:
        off.setattr(traces, "_FOLDER", [None])
        run_sweep(cfg, str(tmp_path / "off"), progress=False)
    assert builds == dict(compiled=0, loaded=0)

    run_sweep(cfg, str(tmp_path / "cold"), progress=False)
    cold = dict(builds)
    saved = sorted(os.listdir(folder))
    # the batch of initializations, start, step loop and row function: each compiled once,
    # saved, and run from its file
    assert cold == dict(compiled=4, loaded=4) and len(saved) == 4

    traces._PROGRAMS.clear()  # as a new process: only the files remain
    run_sweep(cfg, str(tmp_path / "warm"), progress=False)
    assert builds == dict(compiled=4, loaded=8)  # nothing compiled, everything loaded
    assert sorted(os.listdir(folder)) == saved

    off_rows, cold_rows, warm_rows = (_rows(str(tmp_path / name)) for name in ("off", "cold", "warm"))
    assert off_rows == cold_rows == warm_rows
    assert len(off_rows["final_loss"]) == 6
    off, cold, warm = (read_trajectories(str(tmp_path / name), 0) for name in ("off", "cold", "warm"))
    assert off.keys() == cold.keys() == warm.keys() and len(off) > 2
    for name in off:  # the networks at the saved times, bit for bit
        np.testing.assert_array_equal(off[name], cold[name])
        np.testing.assert_array_equal(off[name], warm[name])


@pytest.fixture(scope="module")
def toy():
    return gf.toy(n=32, key=jr.PRNGKey(0))


def _key(problem, model):
    dynamic, static = traces.eqx.partition((problem, model), traces.eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(dynamic)
    return traces._key("solve_flow", static, treedef, leaves)


def test_key_separates_what_shapes_the_program(toy):
    model = gf.ShallowReLU(2, 2, key=jr.PRNGKey(1))
    base = _key(make_problem(model, toy, "mse", 1.0), model)
    # other array values (weights, tolerances: arrays in the problem) run the same program
    assert base == _key(make_problem(model, toy, "mse", 1.0), gf.ShallowReLU(2, 2, key=jr.PRNGKey(2)))
    assert base == _key(make_problem(model, toy, "mse", 1.0, rtol=1e-7), model)
    changed = [
        make_problem(model, toy, "mse", 1.0, max_steps=100),  # a static int
        make_problem(model, toy, "mse", 1.0, n_save=51),  # the saved times' shape
        make_problem(model, toy, "mse", 1.0, solver="dopri5"),
        make_problem(model, toy, "mse", 1.0, kinks="none"),
        make_problem(model, gf.toy(n=33, key=jr.PRNGKey(0)), "mse", 1.0),  # data shape
    ]
    keys = {_key(problem, model) for problem in changed}
    assert base not in keys and len(keys) == len(changed)
    wider = gf.ShallowReLU(2, 3, key=jr.PRNGKey(1))
    assert _key(make_problem(wider, toy, "mse", 1.0), wider) != base


def test_what_cannot_be_keyed_is_traced_as_usual(toy, folder, builds):
    """A user's loss (a function from outside gflow and its libraries) cannot be compared by
    value: the call is traced as usual and nothing is saved; the result is the same."""

    def my_mse(pred, y):
        return 0.5 * ((pred - y) ** 2).mean()

    model = gf.ShallowReLU(2, 2, key=jr.PRNGKey(1))
    problem = make_problem(model, toy, my_mse, 1.0)
    with pytest.raises(traces._Opaque):
        _key(problem, model)
    traj = solve_flow(problem, model)
    assert builds == dict(compiled=0, loaded=0) and not folder.exists()
    reference = solve_flow(make_problem(model, toy, "mse", 1.0), model)  # the same loss, by name
    assert builds["compiled"] == 1
    assert jax.numpy.allclose(traj.models.W, reference.models.W, rtol=1e-12, atol=0)


def test_prepare_builds_in_the_background_once(toy, folder, builds, monkeypatch):
    """``prepare`` builds a program in a thread; a call that comes while the build is under
    way waits for it instead of building it again, and runs what plain tracing runs."""
    model = gf.ShallowReLU(2, 2, key=jr.PRNGKey(1))
    problem = make_problem(model, toy, "mse", 1.0, n_save=3)
    thread = solve_flow.prepare(problem, model)
    assert thread is not None
    traj = solve_flow(problem, model)  # at once: the build is most likely still running
    thread.join()
    assert builds == dict(compiled=1, loaded=1) and len(os.listdir(folder)) == 1
    with monkeypatch.context() as off:
        off.setattr(traces, "_FOLDER", [None])
        plain = solve_flow(problem, model)
    np.testing.assert_array_equal(traj.models.W, plain.models.W)
    np.testing.assert_array_equal(traj.models.V, plain.models.V)
    assert traj.status == plain.status


def test_off_when_jax_compilation_cache_is_off(folder):
    assert traces.trace_dir() == str(folder)
    jax.config.update("jax_enable_compilation_cache", False)  # gflow bench does this
    try:
        assert traces.trace_dir() is None
    finally:
        jax.config.update("jax_enable_compilation_cache", True)
    assert traces.trace_dir() == str(folder)


_RUN = textwrap.dedent(
    """
    import json, sys
    import jax, jax.random as jr
    jax.config.update("jax_enable_x64", True)
    from gflow._cache import enable_compilation_cache
    enable_compilation_cache(sys.argv[1], min_compile_time=0.0)
    import gflow as gf, gflow._traces as traces
    counts = dict(compiled=0)
    compile_ = traces._compile
    def compiled(*args):
        counts["compiled"] += 1
        return compile_(*args)
    traces._compile = compiled
    data = gf.toy(n=64, key=jr.PRNGKey(0))
    model = gf.ShallowReLU(2, 2, key=jr.PRNGKey(1))
    failing = gf.gradient_flow(model, data, "mse", 5.0, max_steps=4)
    ok = gf.gradient_flow(model, data, "mse", 0.5)
    print(json.dumps(dict(failing=failing.summary()["status"], ok=ok.summary()["status"],
                          loss=float(ok.loss[-1]), compiled=counts["compiled"])))
    """
)


@pytest.mark.slow
def test_failure_status_from_a_saved_executable(tmp_path):
    """Two fresh processes: the second loads both solves (no compilation) and still reports
    the failing one's status; the other's loss is bit for bit the same."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", GFLOW_TRACE_CACHE="1")  # the suite turns them off
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _RUN, str(tmp_path)], env=env, capture_output=True, text=True, check=True
            )
            .stdout.strip()
            .splitlines()[-1]  # fmt: skip
        )
        for _ in range(2)
    ]
    cold, warm = runs
    assert cold["compiled"] == 2 and warm["compiled"] == 0
    assert cold["failing"] == warm["failing"] == "max_steps_reached"
    assert cold["ok"] == warm["ok"] == "successful" and cold["loss"] == warm["loss"]
    assert len(os.listdir(tmp_path / "traces")) == 2


def test_import_leaves_heavy_modules_for_later():
    """``import gflow`` does not import what only some commands use (issue 21): SciPy, Matplotlib,
    PyArrow, scikit-learn, Optax, tqdm are imported where they are used."""
    heavy = ["scipy", "matplotlib", "pyarrow", "sklearn", "optax", "tqdm"]
    code = f"import sys, gflow; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
