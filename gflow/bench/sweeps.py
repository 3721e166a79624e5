"""Batched exact flows three ways (shared by ``benchmarks/sweep_throughput.py`` and
:mod:`gflow.bench.peers`): naive ``jit(vmap(solve_flow))``, a Python loop of jitted single
solves, and ``run_sweep`` (continuous batching). Every method integrates the same flow (the
sweep's kink mode) with the same solver and controller, so each trajectory takes the same
steps whichever way it is batched.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import tempfile
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._devices import host_devices_flag
from ..flow.solve import solve_flow
from ..invariants import conserved
from ..sweep import store
from ..sweep.problems import dataset, flow_problem, make_init
from ..sweep.run import _mesh_put, run_sweep


def setup():
    """float64, as the sweeps (also called in the naive vmap's child process)."""
    jax.config.update("jax_enable_x64", True)


CONFIGS: dict[str, dict[str, Any]] = {
    "toy": dict(
        data="toy",
        n_data=8000,
        width=2,
        loss="mse",
        init="kaiming",
        delta=1.0,
        delta_signs="random",
        t1=100.0,
        rtol=1e-5,
        atol=1e-5,
    ),
    "breast_cancer": dict(data="breast_cancer", width=8, loss="bce", init="kaiming", t1=10.0, rtol=1e-5, atol=1e-5),
}


# issue 16's must-show 5: two small-data problems, where a step is cheap and kink handling's
# own cost shows (256 inits, 64 slots, one core)
SMALL_CONFIGS: dict[str, dict[str, Any]] = {
    "toy, 256 points": dict(
        data="toy",
        n_data=256,
        width=2,
        loss="mse",
        init="kaiming",
        delta=-1.0,
        signs="random",
        t1=20.0,
        rtol=1e-6,
        atol=1e-6,
    ),
    "teacher-student, 200 points": dict(
        data="teacher_student", n_data=200, width=4, loss="mse", init="kaiming", t1=50.0, rtol=1e-6, atol=1e-6
    ),
}


def inits(cfg, n):
    """The sweep's data set and its first ``n`` initializations (a batched model)."""
    data, _ = dataset(cfg)
    models = eqx.filter_jit(eqx.filter_vmap(lambda i: make_init(cfg, data, i)))(jnp.arange(n))
    return data, models


def single_solve(cfg, data):
    """``model -> steps`` of one jitted ``solve_flow`` in the sweep's kink mode (vmap-able: the
    pinning's conserved values are taken from the model inside the function)."""
    problem = flow_problem(cfg, data)

    def solve(model):
        traj = solve_flow(problem.with_delta(conserved(model)), model)
        return traj.stats["steps"]

    return solve


def run_loop(cfg, n, started=lambda: None, part=(0, 1)):
    """Python loop over single jitted ``solve_flow`` calls (compiled once, then timed) on the
    inits ``i`` with ``i % N == k`` for ``part = (k, N)``; ``started()`` is called as the
    timed part begins."""
    data, models = inits(cfg, n)
    solve = eqx.filter_jit(single_solve(cfg, data))
    pick = lambda i: jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) else x, models)  # noqa: E731
    mine = range(part[0], n, part[1])
    t = time.perf_counter()
    jax.block_until_ready(solve(pick(mine[0])))
    compile_s = time.perf_counter() - t
    started()
    steps = []
    start, cpu = time.perf_counter(), time.process_time()
    for i in mine:
        steps.append(int(jax.block_until_ready(solve(pick(i)))))
    return dict(
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu,
        executed=sum(steps),
        useful=sum(steps),
        max_steps=max(steps),
        mean_steps=sum(steps) / len(steps),
        compile=compile_s,
        n=len(steps),
    )


def run_naive_vmap(cfg, n, started=lambda: None, part=(0, 1)):
    """``jit(vmap(solve_flow))`` over all n inits, the batch split over all visible devices
    (XLA partitions it; the loop still runs until the slowest member ends). Compiled ahead
    of time first (reported separately), so the timed part is the solve only; ``started()``
    is called as it begins."""
    data, models = inits(cfg, n)
    params, static = eqx.partition(models, eqx.is_array)
    params = _mesh_put(params, jax.device_count())  # the batch axis over all devices; no-op on one
    solve = single_solve(cfg, data)
    t = time.perf_counter()
    compiled = jax.jit(lambda p: jax.vmap(solve)(eqx.combine(p, static))).lower(params).compile()
    compile_s = time.perf_counter() - t
    started()
    start = time.perf_counter()
    steps = jax.block_until_ready(compiled(params))
    seconds = time.perf_counter() - start
    return dict(
        seconds=seconds,
        executed=int(steps.max()) * n,
        useful=int(steps.sum()),
        compile=compile_s,
        max_steps=int(steps.max()),
    )


def run_engine(cfg, n, started=None, part=(0, 1)):
    """``run_sweep`` on ``n`` inits over all devices, after a warm-up sweep of ``min(n, 256)``
    inits of the same configuration (it compiles the slot widths the timed run uses)."""
    out = tempfile.mkdtemp(prefix="gflow-bench-")
    try:
        t = time.perf_counter()
        run_sweep(dataclasses.replace(cfg, n_inits=min(n, 256)), out + "/warm", progress=False)
        warm = time.perf_counter() - t
        cpu = time.process_time()
        s = run_sweep(dataclasses.replace(cfg, n_inits=n), out + "/run", progress=False)
        cpu = time.process_time() - cpu  # all of the sweep's threads, its host work (rows, files) included
        steps = store.read_runs(out + "/run").column("steps").to_numpy()
        return dict(
            seconds=s["seconds"],
            cpu_seconds=cpu,
            executed=s["executed"],
            useful=s["useful"],
            compile=warm,
            max_steps=int(steps.max()),
            mean_steps=float(steps.mean()),
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_naive_probe(cfg, n, started=None, part=(0, 1)):
    """The naive vmap cut at ``PROBE_STEPS`` steps: in lockstep every iteration costs the same
    (finished members are still computed), so ``seconds / PROBE_STEPS`` is its cost per step
    of the batch, and ``max_steps * seconds / PROBE_STEPS`` estimates the full naive run."""
    return run_naive_vmap(dataclasses.replace(cfg, max_steps=PROBE_STEPS), n)


PROBE_STEPS = 100
METHODS = {"sweep": run_engine, "loop": run_loop, "naive vmap": run_naive_vmap, "naive probe": run_naive_probe}


def _child(method: str, cfg, n, part, barrier, queue):
    setup()

    def started():
        barrier.wait()  # the processes of a split run start their timed parts together
        queue.put(("started", time.time()))

    queue.put(("done", METHODS[method](cfg, n, started=started, part=part)))


def measure(method: str, cfg, n: int, *, devices: int = 1, processes: int = 1, timeout: float | None = None) -> dict:
    """``METHODS[method](cfg, n)`` in fresh processes that see ``devices`` CPU devices each
    (``XLA_FLAGS=--xla_force_host_platform_device_count``), killed after ``timeout`` s.

    ``processes > 1`` (the loop only): that many processes side by side, process ``k``
    running the inits ``i % processes == k``, their timed parts started together; the run
    takes as long as the slowest of them. The time box starts when the timed part starts
    (after compiling; methods that do not report it are not boxed). Returns the method's
    dict (``seconds``, ``executed``, ``useful``, ``compile``, ...), or, when the time box ran
    out, ``seconds = inf`` and ``timeout``: how long the timed part had run without
    finishing (so ``n / timeout`` bounds its rate from above)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    barrier = ctx.Barrier(processes)
    procs = [ctx.Process(target=_child, args=(method, cfg, n, (k, processes), barrier, q)) for k in range(processes)]
    saved = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = host_devices_flag(saved, devices)
    try:
        for proc in procs:
            proc.start()
    finally:
        os.environ.pop("XLA_FLAGS") if saved is None else os.environ.__setitem__("XLA_FLAGS", saved)
    deadline, started, results = None, 0.0, []  # the time box starts with the timed part (compilation is not boxed)
    try:
        while len(results) < processes:
            try:
                key, value = q.get(timeout=1.0)
            except queue_mod.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode != 0]
                if dead:
                    raise RuntimeError(f"benchmark child ({method}) died with exit code {dead[0].exitcode}.") from None
                if deadline is not None and time.time() > deadline:
                    return dict(seconds=float("inf"), executed=None, useful=None, timeout=time.time() - started)
                continue
            if key == "done":
                results.append(value)
            elif deadline is None:
                started = value
                deadline = None if timeout is None else started + timeout
    finally:
        for proc in procs:
            proc.kill()
            proc.join()
    return results[0] if processes == 1 else _combine(results)


def _combine(results: list[dict]) -> dict:
    """One result of processes run side by side: the slowest one's time, summed work."""
    n = sum(r["n"] for r in results)
    return dict(
        seconds=max(r["seconds"] for r in results),
        executed=sum(r["executed"] for r in results),
        useful=sum(r["useful"] for r in results),
        max_steps=max(r["max_steps"] for r in results),
        mean_steps=sum(r["mean_steps"] * r["n"] for r in results) / n,
        compile=max(r["compile"] for r in results),
        n=n,
    )


def naive_vmap_timeboxed(cfg, n, timeout):
    """The naive vmap in a fresh one-device process, killed after ``timeout`` s."""
    return measure("naive vmap", cfg, n, timeout=timeout)
