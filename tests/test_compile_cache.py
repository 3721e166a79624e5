"""Persistent compilation cache: gflow's programs hold no host callback, so JAX keeps them, and a
failure status survives a program read back from the cache (issue 21)."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.random as jr
import pytest

import gflow as gf
from gflow._callbacks import checks_as_data, host_callbacks
from gflow.flow.problem import make_problem
from gflow.flow.solve import solve_flow


@pytest.fixture(scope="module")
def toy():
    return gf.toy(n=64, key=jr.PRNGKey(0))


@pytest.mark.parametrize(
    "options",
    [
        dict(),  # tsit5, pin + slide
        dict(kinks="none", solver="euler"),  # fixed step: Diffrax checks (t1 - t0) * dt0 >= 0
        dict(events=("loss_below=1e-3",)),
        dict(kinks="none", solver="kvaerno5"),
    ],
    ids=["tsit5", "euler", "events", "kvaerno5"],
)
def test_solve_flow_has_no_host_callback(toy, options):
    model = gf.ShallowReLU(2, 2, key=jr.PRNGKey(1))
    problem = make_problem(model, toy, "mse", 1.0, **options)
    jaxpr, _, _ = eqx.filter_make_jaxpr(solve_flow)(problem, model)
    assert host_callbacks(jaxpr) == []


def test_checks_as_data_stays_inside_the_block():
    import equinox.internal as eqxi

    before = eqx.error_if, eqxi.error_if
    with checks_as_data():
        jaxpr = jax.make_jaxpr(lambda x: eqxi.error_if(x, x > 0, "positive"))(1.0)
    assert (eqx.error_if, eqxi.error_if) == before
    assert host_callbacks(jaxpr) == []
    # outside the block, Equinox's own behaviour (a callback that raises) is untouched
    assert host_callbacks(jax.make_jaxpr(lambda x: eqx.error_if(x, x > 0, "positive"))(1.0)) != []


_FAILING = textwrap.dedent(
    """
    import json, sys
    import jax, jax.random as jr
    jax.config.update("jax_enable_x64", True)
    hits = []
    jax.monitoring.register_event_listener(
        lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None
    )
    from gflow._cache import enable_compilation_cache
    enable_compilation_cache(sys.argv[1], min_compile_time=0.0)
    import gflow as gf
    data = gf.toy(n=64, key=jr.PRNGKey(0))
    model = gf.ShallowReLU(2, 2, key=jr.PRNGKey(1))
    traj = gf.gradient_flow(model, data, "mse", 5.0, max_steps=4)
    print(json.dumps(dict(status=traj.summary()["status"], hits=len(hits))))
    """
)


def test_failure_status_survives_the_cache(tmp_path):
    """JAX's own cache (gflow's saved executables off: tests/test_trace_cache.py has the same
    check with them on)."""
    cache = str(tmp_path / "jax")
    env = dict(os.environ, JAX_PLATFORMS="cpu", GFLOW_TRACE_CACHE="0")
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", _FAILING, cache], env=env, capture_output=True, text=True, check=True
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["status"] == warm["status"] == "max_steps_reached"
    assert any(name.startswith("jit_solve_flow") for name in os.listdir(cache))
    assert warm["hits"] > cold["hits"]


def test_cache_folder_info_and_clear(tmp_path, monkeypatch, capsys):
    """``gflow cache info | clear`` count and delete the compiled programs only; the folder
    follows GFLOW_CACHE_DIR / XDG_CACHE_HOME, and GFLOW_CACHE=0 turns the cache off."""
    from gflow._cache import cache_dir
    from gflow.cli import build_parser

    monkeypatch.delenv("GFLOW_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "gflow" / "jax")
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv("GFLOW_CACHE_DIR", str(folder))
    (folder / f"jit_solve_flow-{'0' * 64}-cache").write_bytes(b"x" * 10)
    (folder / "notes.txt").write_text("not a program")
    for action in ("info", "clear", "info"):
        args = build_parser().parse_args(["cache", action])
        assert args.func(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert "1 programs" in out[0] and "cleared 1 programs" in out[1] and "0 programs" in out[2]
    assert os.listdir(folder) == ["notes.txt"]
    monkeypatch.setenv("GFLOW_CACHE", "0")
    assert cache_dir() is None
    assert build_parser().parse_args(["--no-cache", "cache", "info"]).no_cache


def test_sweep_traces_each_width_once(tmp_path, monkeypatch, caplog):
    """A sweep of several chunks traces the engine's step loop once per compiled width (full
    chunks run at ``slots``, the last, smaller one at a narrower rung of the ladder), never
    again for the same shapes: later chunks reuse the programs. (Saved executables are off
    here, so that JAX traces; with them on, tests/test_trace_cache.py counts builds.)"""
    import logging

    import gflow._traces as traces
    import gflow.sweep.run as engine
    from gflow.sweep.config import SweepConfig

    monkeypatch.setattr(traces, "_FOLDER", [None])

    widths = []
    original = engine.run_chunk

    def spy(stepper, mesh, group, chunk, n_steps):
        widths.append(chunk.slots.index.shape[0])
        return original(stepper, mesh, group, chunk, n_steps)

    monkeypatch.setattr(engine, "run_chunk", spy)
    caplog.set_level(logging.DEBUG, logger="jax._src.dispatch")
    cfg = SweepConfig(n_data=48, width=3, delta=0.5, t1=1.0, rtol=1e-6, atol=1e-6, n_inits=10, slots=4,
                      chunk_size=4, n_save=3)  # fmt: skip
    engine.run_sweep(cfg, str(tmp_path), progress=False)
    traces = [r for r in caplog.records if r.getMessage().startswith("Finished tracing run_chunk ")]
    assert len(set(widths)) >= 2 and len(widths) > len(set(widths))  # several widths, each used again
    assert len(traces) == len(set(widths))
