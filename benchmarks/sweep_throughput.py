"""Sweep throughput: naive ``jit(vmap(diffeqsolve))`` vs a Python loop of jitted single solves
vs ``run_sweep`` (continuous batching), side by side in one run.

    python benchmarks/sweep_throughput.py [--quick] [--slots 32 128] [--vmap-timeout 300]
    python benchmarks/sweep_throughput.py --small-data [--baseline DIR] [--repeats 2]

Every method runs in fresh processes, on one device (one core) and on the whole CPU: the
sweep and the naive vmap with the CPU split into one device per core
(``XLA_FLAGS=--xla_force_host_platform_device_count``, what ``gflow sweep`` does on a CPU),
the loop as one process per core. Ratios are given against the baselines on the same
hardware and against the issue's one-process baselines. Reports trajectories/s, slot-steps
executed vs useful, and ratios; writes ``results/benchmarks/sweep_throughput.md``. Compilation
is excluded: the sweep is warmed up on the same configuration, the loop on its first solve, the
naive vmap compiled ahead.

``--small-data`` (issue 16, must-show 5) measures only the sweep (64 slots) and the loop, on ONE
core (the processes are pinned to it, XLA's CPU thread pool off), for ``kinks = none`` and the
default mode on two small-data problems (``SMALL_CONFIGS``), and writes
``results/benchmarks/sweep_throughput_small.md``. ``--baseline DIR``: the same measurements with
the gflow of another checkout (``git worktree add DIR <commit>``), alternated with this one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from gflow._devices import cpu_cores  # noqa: E402
from gflow.bench.sweeps import CONFIGS, PROBE_STEPS, measure  # noqa: E402
from gflow.sweep.config import SweepConfig  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    p.add_argument(
        "--slots",
        type=int,
        nargs="+",
        default=[32],
        help="slots of the sweep (each value is run; 4096 toy inits: the first only)",
    )
    p.add_argument("--vmap-timeout", type=float, default=300.0)
    p.add_argument(
        "--modes", nargs="+", default=["none", "auto"], help="kink modes to compare (the first one also at 4096 inits)"
    )
    p.add_argument("--devices", type=int, default=cpu_cores(), help="CPU devices of the split runs")
    p.add_argument(
        "--out", default=None, help="report folder (default results/benchmarks; with --quick results/quick/benchmarks)"
    )
    p.add_argument("--small-data", action="store_true", help="issue 16's two small-data problems on one core")
    p.add_argument("--baseline", default=None, help="with --small-data: a checkout to compare against")
    p.add_argument("--baseline-label", default=None, help="its name in the report (default: DIR)")
    p.add_argument("--repeats", type=int, default=1, help="with --small-data: repeats (the least CPU time is kept)")
    args = p.parse_args(argv)
    out_dir = args.out or ("results/quick/benchmarks" if args.quick else "results/benchmarks")
    from _report import table, write_report

    if args.small_data:
        return small_data(args, argv, out_dir)

    sizes = {"toy": [32] if args.quick else [256, 4096], "breast_cancer": [32] if args.quick else [256]}
    rows, ratios = [], []
    for name in CONFIGS:
        for n in sizes[name]:
            for mode in args.modes if n <= 256 else args.modes[:1]:
                res = _measure_group(name, n, mode, args.slots if n <= 256 else args.slots[:1], args)
                rows += _rows(name, n, mode, res)
                ratios += _ratios(name, n, mode, res, args.devices)
                for row in rows[-len(res) :]:
                    print(row, flush=True)
    body = table(
        [
            "problem",
            "inits",
            "kinks",
            "method",
            "devices",
            "seconds",
            "traj/s",
            "compile / warm-up s",
            "slot-steps executed",
            "useful fraction",
        ],
        rows,
    )
    body += "\n\n" + table(
        [
            "problem",
            "inits",
            "kinks",
            "sweep",
            "devices",
            "/ naive vmap, same devices",
            "/ loop, same cores",
            "/ naive vmap, 1 device",
            "/ loop, 1 process",
            "useful fraction",
        ],
        ratios,
    )
    run = (
        f"`python benchmarks/sweep_throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"(inits per problem: {sizes})"
    )
    path = write_report(
        "sweep_throughput",
        "Sweep throughput: naive vmap vs loop vs continuous batching",
        [("Run", run), ("Results", body), ("Method", _NOTE.format(k=args.devices, probe=PROBE_STEPS))],
        out_dir=out_dir,
    )
    print(f"report: {path}")


def small_data(args, argv, out_dir):
    """Must-show 5 of issue 16: sweep (64 slots, one device) vs a loop of single solves, on one
    core, ``kinks = none`` and ``auto``; with ``--baseline``, the other checkout alternately."""
    from _report import table, write_report

    from gflow.bench.sweeps import SMALL_CONFIGS  # here: a baseline's processes re-import this script

    n = 32 if args.quick else 256
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})  # inherited by every measuring process
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    codes = [("this", None)] + ([(args.baseline_label or args.baseline, args.baseline)] if args.baseline else [])
    best: dict = {}
    for name, fields in SMALL_CONFIGS.items():
        for mode in ("none", "auto"):
            cfg = SweepConfig(**fields, kinks=mode, n_inits=n, slots=64, chunk_size=256)
            for _ in range(args.repeats):
                for code, root in codes:
                    for method in ("sweep", "loop"):
                        with _code_root(root):
                            r = measure(method, cfg, n)
                        key = (name, mode, code, method)
                        if key not in best or r["cpu_seconds"] < best[key]["cpu_seconds"]:
                            best[key] = r
                        print(name, mode, code, method, f"{n / r['cpu_seconds']:.1f} traj per CPU s", flush=True)
    rows = []
    for name in SMALL_CONFIGS:
        for mode in ("none", "auto"):
            for code, _ in codes:  # noqa: B007
                sw, lp = best[(name, mode, code, "sweep")], best[(name, mode, code, "loop")]
                none_sweep = best[(name, "none", code, "sweep")]
                rows.append(
                    [
                        name,
                        mode,
                        code,
                        n / sw["cpu_seconds"],
                        n / lp["cpu_seconds"],
                        lp["cpu_seconds"] / sw["cpu_seconds"],
                        none_sweep["cpu_seconds"] / sw["cpu_seconds"],
                        lp["seconds"] / sw["seconds"],
                        sw["mean_steps"],
                        sw["max_steps"],
                        sw["useful"] / sw["executed"],
                    ]
                )
    header = [
        "problem",
        "kinks",
        "code",
        "sweep traj / CPU s",
        "loop traj / CPU s",
        "sweep / loop",
        "sweep / none sweep",
        "sweep / loop, wall clock",
        "mean steps",
        "max steps",
        "useful fraction",
    ]
    run = f"`python benchmarks/sweep_throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
    note = (
        f"{n} initializations per problem, 64 slots, chunk 256, Tsit5, PID control; every measurement in fresh "
        f"processes pinned to core {core} (XLA's Eigen thread pool off), compilation excluded (the sweep after a "
        "warm-up sweep of the same configuration, the loop after its first solve). Rates are trajectories per CPU "
        "second of the measuring process (all its threads; on one pinned core, its share of that core): on a "
        "machine shared with other jobs they stay comparable where wall-clock times do not (the wall-clock ratio "
        "is given too). `auto` is the default kink mode "
        "(pin+slide for these shallow nets). Each (problem, kinks, code, method) ran "
        f"{args.repeats} time(s), alternating the codes; the one with the least CPU time is kept. Targets (issue "
        "16, must-show 5), with the default mode: sweep >= 2x the loop and >= the none sweep's trajectories/s."
    )
    path = write_report(
        "sweep_throughput_small",
        "Sweep throughput on small data, one core: kink handling's own cost (issue 16, must-show 5)",
        [("Run", run), ("Results", table(header, rows)), ("Method", note)],
        out_dir=out_dir,
    )
    print(table(header, rows))
    print(f"report: {path}")


@contextlib.contextmanager
def _code_root(root):
    """Spawned processes take the parent's ``sys.path``: with ``root`` first they import its gflow."""
    if root is None:
        yield
        return
    sys.path.insert(0, os.path.abspath(root))
    try:
        yield
    finally:
        sys.path.remove(os.path.abspath(root))


def _measure_group(name: str, n: int, mode: str, slots: list[int], args) -> dict:
    """Every method on one (problem, inits, kink mode), each in fresh processes:
    ``{(method, devices): result}`` (``devices``: CPU devices, or processes for the loop)."""
    from gflow.sweep.config import SweepConfig

    k = args.devices
    base = SweepConfig(**CONFIGS[name], kinks=mode, n_inits=n)
    res = {}
    for s in slots:
        cfg = dataclasses.replace(base, slots=s, chunk_size=max(256, s))
        res[(f"sweep, {s} slots", k)] = measure("sweep", cfg, n, devices=k)
        res[(f"sweep, {s} slots", 1)] = measure("sweep", cfg, n)
    if n <= 256:
        res[("loop", 1)] = measure("loop", base, n)
        res[("loop", k)] = measure("loop", base, n, processes=k)
    lockstep = max(r["max_steps"] for r in res.values())  # the slowest trajectory's steps
    for devices in (1, k):
        naive = res[("naive vmap", devices)] = measure(
            "naive vmap", base, n, devices=devices, timeout=args.vmap_timeout
        )
        if naive["seconds"] == float("inf"):  # estimate: lockstep steps x measured cost per step
            probe = measure("naive probe", base, n, devices=devices)
            res[(f"naive vmap (estimate: {PROBE_STEPS}-step probe x {lockstep} steps)", devices)] = dict(
                seconds=probe["seconds"] * lockstep / min(PROBE_STEPS, lockstep),
                compile=probe["compile"],
                executed=lockstep * n,
                useful=res[(f"sweep, {slots[0]} slots", 1)]["mean_steps"] * n,
                estimate=True,
            )
    return res


def _rate(r: dict, n: int) -> float:
    """Trajectories/s; for a run killed by its time box, the upper bound n / time run."""
    return n / (r["timeout"] if r["seconds"] == float("inf") else r["seconds"])


def _rows(name, n, mode, res) -> list[list]:
    rows = []
    for (method, devices), r in res.items():
        killed = r["seconds"] == float("inf")
        rows.append(
            [
                name,
                n,
                mode,
                method,
                devices,
                f"> {r['timeout']:.0f} (killed)" if killed else r["seconds"],
                f"< {_rate(r, n):.3g}" if killed else _rate(r, n),
                r.get("compile", "n/a"),
                r.get("executed") or "n/a",
                r["useful"] / r["executed"] if r.get("executed") else "n/a",
            ]
        )
    return rows


def _ratios(name, n, mode, res, k) -> list[list]:
    """Each sweep row against the baselines on the same hardware, and against the one-process
    baselines the issue defines."""

    def vs(sweep_rate, key):
        if key not in res:
            return "n/a (loop run at 256 inits only)"
        r = res[key]
        if r["seconds"] != float("inf"):
            return sweep_rate / _rate(r, n)
        est = [v for (m, d), v in res.items() if d == key[1] and v.get("estimate")]
        return f"> {sweep_rate / _rate(r, n):.3g} (estimate {sweep_rate / _rate(est[0], n):.3g})"

    out = []
    for (method, devices), r in res.items():
        if method.startswith("sweep"):
            rate = _rate(r, n)
            out.append(
                [
                    name,
                    n,
                    mode,
                    method,
                    devices,
                    vs(rate, ("naive vmap", devices)),
                    vs(rate, ("loop", devices)),
                    vs(rate, ("naive vmap", 1)),
                    vs(rate, ("loop", 1)),
                    r["useful"] / r["executed"],
                ]
            )
    return out


_NOTE = (
    "Within a row group every method integrates the same flow — `kinks = none` (the plain field -grad L, the "
    "issue's baseline, with its heavy tail of steps) or `auto` (the Filippov sliding field and pinning of "
    "gflow.kinks, the default) — with Tsit5 and the same PID controller, so each trajectory takes the same steps "
    "whichever way it is batched. Every method runs in fresh processes. `devices` is the hardware a row used: "
    "1 = one CPU device (one core: a single small solve does not use more, measured cpu/wall = 1.00 for the "
    "loop), {k} = the CPU split into {k} devices, one per core (what `gflow sweep` does on a CPU: the sweep "
    "spreads its slots over them with shard_map; the naive vmap's batch is split over them by XLA, still in "
    "lockstep until its slowest member ends), or, for the loop, {k} processes side by side, each looping over "
    "every {k}-th init, started together (the run lasts as long as the slowest process). The issue's baselines "
    "are the one-process loop and the one-device naive vmap; the columns 'same devices' / 'same cores' give "
    "each baseline the hardware the sweep row used. The sweep is timed after a warm-up sweep of the same "
    "configuration (min(n, 256) inits: it compiles every slot width), the loop after its first solve, the naive "
    "vmap after compiling ahead of time; the naive vmap is killed after the time box — then its rate is an upper "
    "bound (inits / seconds it ran) and the ratio a lower bound, and an estimate is added: a {probe}-step run of "
    "the same naive vmap (max_steps={probe}: in lockstep every step costs the same, finished members included) "
    "gives its cost per step, times the lockstep length (the slowest trajectory's steps, from the other rows). "
    "Targets of issue 6: toy >= 10x naive vmap and >= 2x the loop; breast cancer >= 1.5x both; >= 90% useful "
    "slot-steps. Ratios, not absolute times, are meaningful on a shared machine."
)


if __name__ == "__main__":
    main()
