"""Batched exact flows three ways (shared by ``benchmarks/sweep_throughput.py`` and
:mod:`gflow.bench.peers`): naive ``jit(vmap(solve_flow))``, a Python loop of jitted single
solves, and ``run_sweep`` (continuous batching). Every method integrates the same flow (the
sweep's kink mode) with the same solver and controller, so each trajectory takes the same
steps whichever way it is batched.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time


def setup():
    """float64, as the sweeps (also called in the naive vmap's child process)."""
    import jax

    jax.config.update("jax_enable_x64", True)


CONFIGS = {
    "toy": dict(data="toy", n_data=8000, width=2, loss="mse", init="kaiming", delta=1.0, delta_signs="random",
                t1=100.0, rtol=1e-5, atol=1e-5),
    "breast_cancer": dict(data="breast_cancer", width=8, loss="bce", init="kaiming", t1=10.0, rtol=1e-5, atol=1e-5),
}


def inits(cfg, n):
    """The sweep's data set and its first ``n`` initializations (a batched model)."""
    import equinox as eqx
    import jax.numpy as jnp

    from ..sweep import dataset, make_init

    data, _ = dataset(cfg)
    models = eqx.filter_jit(eqx.filter_vmap(lambda i: make_init(cfg, data, i)))(jnp.arange(n))
    return data, models


def single_solve(cfg, data):
    """``model -> steps`` of one jitted ``solve_flow`` in the sweep's kink mode (vmap-able: the
    pinning's conserved values are taken from the model inside the function)."""
    import jax.numpy as jnp

    from ..flow import resolve_kinks, save_times, solve_flow
    from ..invariants import conserved
    from ..losses import get_loss
    from ..sweep import make_init

    loss_fn = get_loss(cfg.loss_name)
    pinning, slide = resolve_kinks(cfg.kinks, make_init(cfg, data, 0), data, loss_fn, cfg.rtol, cfg.atol)
    ts = save_times(cfg.t1, cfg.n_save, None)

    def solve(model):
        pin = None if pinning is None else pinning.with_delta(conserved(model))
        traj = solve_flow(model, data, loss_fn, ts, jnp.asarray(cfg.rtol), jnp.asarray(cfg.atol), jnp.asarray(0.0),
                          solver=cfg.solver, max_steps=cfg.max_steps, project=False, adaptive=True, pinning=pin,
                          slide_tol=slide)
        return traj.stats["steps"]

    return solve


def run_loop(cfg, n):
    """Python loop over single jitted ``solve_flow`` calls (compiled once, then timed)."""
    import equinox as eqx
    import jax

    data, models = inits(cfg, n)
    solve = eqx.filter_jit(single_solve(cfg, data))
    pick = lambda i: jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) else x, models)  # noqa: E731
    jax.block_until_ready(solve(pick(0)))
    steps = []
    start = time.perf_counter()
    for i in range(n):
        steps.append(int(jax.block_until_ready(solve(pick(i)))))
    return dict(seconds=time.perf_counter() - start, executed=sum(steps), useful=sum(steps), max_steps=max(steps),
                mean_steps=sum(steps) / n)


def run_naive_vmap(cfg, n, queue):
    """``jit(vmap(solve_flow))`` over all n inits, in a child process killed after the time box.
    Compiled ahead of time first (reported separately), so the timed part is the solve only."""
    setup()
    import equinox as eqx
    import jax

    data, models = inits(cfg, n)
    params, static = eqx.partition(models, eqx.is_array)
    solve = single_solve(cfg, data)
    t = time.perf_counter()
    compiled = jax.jit(lambda p: jax.vmap(solve)(eqx.combine(p, static))).lower(params).compile()
    queue.put(("compile", time.perf_counter() - t))
    start = time.perf_counter()
    steps = jax.block_until_ready(compiled(params))
    seconds = time.perf_counter() - start
    queue.put(("done", dict(seconds=seconds, executed=int(steps.max()) * n, useful=int(steps.sum()))))


def naive_vmap_timeboxed(cfg, n, timeout):
    """Result dict of :func:`run_naive_vmap`; ``seconds = inf`` and ``timeout`` (the time left
    after compiling) when the time box ran out."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=run_naive_vmap, args=(cfg, n, q))
    start = time.perf_counter()
    proc.start()
    proc.join(timeout)
    killed = proc.is_alive()
    if killed:
        proc.kill()
        proc.join()
    msgs = {}
    while not q.empty():
        key, value = q.get()
        msgs[key] = value
    compile_s = msgs.get("compile", float("nan"))
    if "done" in msgs:
        return dict(msgs["done"], compile=compile_s)
    left = (time.perf_counter() - start) - (compile_s if compile_s == compile_s else 0.0)
    return dict(seconds=float("inf"), executed=None, useful=None, timeout=left, compile=compile_s)


def run_engine(cfg, n):
    """``run_sweep`` on ``n`` inits, warmed up first on ``min(n, 2 slots)`` inits (same shapes)."""
    import dataclasses

    from ..sweep import run_sweep

    out = tempfile.mkdtemp(prefix="gflow-bench-")
    try:
        warm = dataclasses.replace(cfg, n_inits=min(n, 2 * cfg.slots))
        run_sweep(warm, out + "/warm", progress=False)  # compiles the shapes the timed run uses
        s = run_sweep(dataclasses.replace(cfg, n_inits=n), out + "/run", progress=False)
        return dict(seconds=s["seconds"], executed=s["executed"], useful=s["useful"])
    finally:
        shutil.rmtree(out, ignore_errors=True)
