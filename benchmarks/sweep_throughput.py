"""Sweep throughput: naive ``jit(vmap(diffeqsolve))`` vs a Python loop of jitted single solves
vs ``run_sweep`` (continuous batching), side by side in one run.

    python benchmarks/sweep_throughput.py [--quick] [--slots 32] [--vmap-timeout 300]

Reports trajectories/s, slot-steps executed vs useful, and ratios; writes
``results/benchmarks/sweep_throughput.md``. Compilation is timed separately: every method
is warmed up on its own compiled shapes before the timed run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))


def _setup():
    import jax

    jax.config.update("jax_enable_x64", True)


CONFIGS = {
    "toy": dict(data="toy", n_data=8000, width=2, loss="mse", init="kaiming", delta=1.0, signs="random", t1=100.0,
                rtol=1e-5, atol=1e-5),
    "breast_cancer": dict(data="breast_cancer", width=8, loss="bce", init="kaiming", t1=10.0, rtol=1e-5, atol=1e-5),
}


def _inits(cfg, n):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from gflow.sweep import dataset, make_init

    data, _ = dataset(cfg)
    models = eqx.filter_jit(eqx.filter_vmap(lambda i: make_init(cfg, data, i)))(jnp.arange(n))
    return data, models


def run_loop(cfg, n):
    """Python loop over single jitted ``solve_flow`` calls (compiled once, then timed)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from gflow.flow import save_times, solve_flow
    from gflow.losses import get_loss

    data, models = _inits(cfg, n)
    ts = save_times(cfg.t1, cfg.n_save, None)
    args = (get_loss(cfg.loss_name), ts, jnp.asarray(cfg.rtol), jnp.asarray(cfg.atol), jnp.asarray(0.0))
    kw = dict(solver=cfg.solver, max_steps=cfg.max_steps, project=False, adaptive=True)
    pick = lambda i: jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) else x, models)  # noqa: E731
    jax.block_until_ready(solve_flow(pick(0), data, *args, **kw))
    steps = []
    start = time.perf_counter()
    for i in range(n):
        traj = jax.block_until_ready(solve_flow(pick(i), data, *args, **kw))
        steps.append(int(traj.stats["steps"]))
    return dict(seconds=time.perf_counter() - start, executed=sum(steps), useful=sum(steps), max_steps=max(steps),
                mean_steps=sum(steps) / n)


def run_naive_vmap(cfg, n, queue):
    """``jit(vmap(solve_flow))`` over all n inits (run in a child process, time-boxed)."""
    _setup()
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from gflow.flow import save_times, solve_flow
    from gflow.losses import get_loss

    data, models = _inits(cfg, n)
    ts = save_times(cfg.t1, cfg.n_save, None)
    f = eqx.filter_jit(eqx.filter_vmap(lambda m: solve_flow(
        m, data, get_loss(cfg.loss_name), ts, jnp.asarray(cfg.rtol), jnp.asarray(cfg.atol), jnp.asarray(0.0),
        solver=cfg.solver, max_steps=cfg.max_steps, project=False, adaptive=True).stats["steps"]))
    small = jax.tree_util.tree_map(lambda x: x[:n] if eqx.is_array(x) else x, models)
    start = time.perf_counter()
    steps = jax.block_until_ready(f(small))
    seconds = time.perf_counter() - start  # includes one compilation: reported separately below
    queue.put(dict(seconds=seconds, executed=int(steps.max()) * n, useful=int(steps.sum())))


def run_engine(cfg, n):
    import dataclasses

    from gflow.sweep import run_sweep

    out = tempfile.mkdtemp(prefix="gflow-bench-")
    try:
        warm = dataclasses.replace(cfg, n_inits=min(n, 2 * cfg.slots))
        run_sweep(warm, out + "/warm", progress=False)  # compiles the shapes the timed run uses
        s = run_sweep(dataclasses.replace(cfg, n_inits=n), out + "/run", progress=False)
        return dict(seconds=s["seconds"], executed=s["executed"], useful=s["useful"])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    p.add_argument("--slots", type=int, default=32)
    p.add_argument("--vmap-timeout", type=float, default=300.0)
    args = p.parse_args(argv)
    _setup()
    from _report import table, write_report

    from gflow.sweep import SweepConfig

    sizes = {"toy": [32] if args.quick else [256, 4096], "breast_cancer": [32] if args.quick else [256]}
    rows = []
    for name, kw in CONFIGS.items():
        for n in sizes[name]:
            cfg = SweepConfig(**kw, n_inits=n, slots=args.slots, chunk_size=max(256, args.slots))
            res = {}
            res["sweep"] = run_engine(cfg, n)
            res["loop"] = run_loop(cfg, n) if n <= 256 or args.quick else None
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            proc = ctx.Process(target=run_naive_vmap, args=(cfg, n, q))
            proc.start()
            proc.join(args.vmap_timeout)
            if proc.is_alive():
                proc.kill()
                proc.join()
                res["naive vmap"] = dict(seconds=float("inf"), executed=None, useful=None, timeout=args.vmap_timeout)
            else:
                res["naive vmap"] = q.get() if not q.empty() else None
            for method, r in res.items():
                if r is None:
                    continue
                rate = n / r["seconds"] if r["seconds"] != float("inf") else f"< {n / r['timeout']:.3g}"
                frac = r["useful"] / r["executed"] if r.get("executed") else "n/a"
                rows.append([name, n, method, r["seconds"], rate, r.get("executed") or "n/a", frac])
                print(rows[-1], flush=True)
    body = table(["problem", "inits", "method", "seconds", "traj/s", "slot-steps executed", "useful fraction"], rows)
    note = ("Each method is warmed up (compiled) before it is timed, except the naive vmap, whose time includes "
            "its one compilation and which runs in a child process killed after the time box (then the rate is "
            "an upper bound). Ratios, not absolute times, are meaningful on a shared machine.")
    run = f"`python benchmarks/sweep_throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}` " \
          f"(slots={args.slots}, inits per problem: {sizes})"
    path = write_report("sweep_throughput", "Sweep throughput: naive vmap vs loop vs continuous batching",
                        [("Run", run), ("Results", body), ("Method", note)])
    print(f"report: {path}")


if __name__ == "__main__":
    main()
