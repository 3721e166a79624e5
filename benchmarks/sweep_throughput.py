"""Sweep throughput: naive ``jit(vmap(diffeqsolve))`` vs a Python loop of jitted single solves
vs ``run_sweep`` (continuous batching), side by side in one run.

    python benchmarks/sweep_throughput.py [--quick] [--slots 32] [--vmap-timeout 300]

Every method runs in its own fresh process. ``run_sweep`` runs twice: on one device, and with
the CPU split into one device per core (``XLA_FLAGS=--xla_force_host_platform_device_count``,
what ``gflow sweep`` does on a CPU); the loop and the naive vmap run on one device, as
defined. Reports trajectories/s, slot-steps executed vs useful, and ratios; writes
``results/benchmarks/sweep_throughput.md``. Compilation is excluded: the sweep is warmed up
on the same configuration, the loop on its first solve, the naive vmap compiled ahead.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from gflow._devices import cpu_cores  # noqa: E402
from gflow.bench.sweeps import CONFIGS, PROBE_STEPS, measure  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    p.add_argument("--slots", type=int, default=32)
    p.add_argument("--vmap-timeout", type=float, default=300.0)
    p.add_argument("--modes", nargs="+", default=["none", "auto"],
                   help="kink modes to compare (the first one also at 4096 inits)")
    p.add_argument("--devices", type=int, default=cpu_cores(), help="CPU devices of the split sweep")
    args = p.parse_args(argv)
    from _report import table, write_report

    from gflow.sweep import SweepConfig

    sizes = {"toy": [32] if args.quick else [256, 4096], "breast_cancer": [32] if args.quick else [256]}
    split = f"sweep ({args.devices} devices)"
    rows, ratios = [], []
    for name, kw in CONFIGS.items():
        for n in sizes[name]:
            for mode in args.modes if n <= 256 else args.modes[:1]:
                cfg = SweepConfig(**kw, kinks=mode, n_inits=n, slots=args.slots, chunk_size=max(256, args.slots))
                res = {split: measure("sweep", cfg, n, devices=args.devices),
                       "sweep (1 device)": measure("sweep", cfg, n)}
                if n <= 256:
                    res["loop"] = measure("loop", cfg, n)
                res["naive vmap"] = measure("naive vmap", cfg, n, timeout=args.vmap_timeout)
                timed_out = res["naive vmap"]["seconds"] == float("inf")
                if timed_out:  # estimate: lockstep steps (the slowest trajectory's) x measured cost per step
                    probe = measure("naive probe", cfg, n)
                    lockstep = res[split]["max_steps"]
                    res[f"naive vmap (estimate: {PROBE_STEPS}-step probe x {lockstep} steps)"] = dict(
                        seconds=probe["seconds"] * lockstep / min(PROBE_STEPS, lockstep), compile=probe["compile"],
                        executed=lockstep * n, useful=res[split]["mean_steps"] * n)
                rate = {}
                for method, r in res.items():
                    if r["seconds"] == float("inf"):
                        rate[method] = n / r["timeout"]
                        shown = f"< {rate[method]:.3g}"
                    else:
                        rate[method] = shown = n / r["seconds"]
                    frac = r["useful"] / r["executed"] if r.get("executed") else "n/a"
                    seconds = r["seconds"] if r["seconds"] != float("inf") else f"> {r['timeout']:.0f} (killed)"
                    rows.append([name, n, mode, method, seconds, shown, r.get("compile", "n/a"),
                                 r.get("executed") or "n/a", frac])
                    print(rows[-1], flush=True)
                estimate = [m for m in rate if m.startswith("naive vmap (estimate")]
                for method in (split, "sweep (1 device)"):
                    vs_naive = rate[method] / rate["naive vmap"]
                    if timed_out:
                        vs_naive = f"> {vs_naive:.3g} (estimate {rate[method] / rate[estimate[0]]:.3g})"
                    ratios.append([name, n, mode, method, vs_naive,
                                   rate[method] / rate["loop"] if "loop" in rate else "n/a (loop run at 256 only)",
                                   res[method]["useful"] / res[method]["executed"]])
    body = table(["problem", "inits", "kinks", "method", "seconds", "traj/s", "compile / warm-up s",
                  "slot-steps executed", "useful fraction"], rows)
    body += "\n\n" + table(["problem", "inits", "kinks", "sweep", "sweep / naive vmap", "sweep / loop",
                            "useful fraction"], ratios)
    note = ("Within a row group every method integrates the same flow — `kinks = none` (the plain field "
            "-grad L, the issue's baseline, with its heavy tail of steps) or `auto` (the Filippov sliding field "
            "and pinning of gflow.kinks, the default) — with Tsit5 and the same PID controller, so each "
            "trajectory takes the same steps whichever way it is batched. Every method runs in a fresh process; "
            f"the split sweep sees the CPU as {args.devices} devices (one per core: its slots are spread over "
            "them with shard_map), the other rows one device. The sweep is timed after a warm-up sweep of the "
            "same configuration (min(n, 256) inits: it compiles every slot width), the loop after its first "
            "solve, the naive vmap after compiling ahead of time; the naive vmap is killed after the time box — "
            "then its rate is an upper bound (inits / seconds it ran) and the ratio a lower bound, and an estimate "
            f"is added: a {PROBE_STEPS}-step run of the same naive vmap (max_steps={PROBE_STEPS}: in lockstep every "
            "step costs the same, finished members included) gives its cost per step, times the lockstep length "
            "(the slowest trajectory's steps, from the sweep's rows). "
            "Targets of issue 6: toy >= 10x naive vmap and >= 2x the loop; breast cancer >= 1.5x both; >= 90% "
            "useful slot-steps. Ratios, not absolute times, are meaningful on a shared machine.")
    run = f"`python benchmarks/sweep_throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}` " \
          f"(slots={args.slots}, inits per problem: {sizes})"
    path = write_report("sweep_throughput", "Sweep throughput: naive vmap vs loop vs continuous batching",
                        [("Run", run), ("Results", body), ("Method", note)])
    print(f"report: {path}")


if __name__ == "__main__":
    main()
