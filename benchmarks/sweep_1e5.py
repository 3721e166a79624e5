"""10^5 toy initializations of the exact flow through ``gflow sweep`` (issue 6, must-show 4):
wall time, rate, peak memory, useful slot-steps, results by component.

    python benchmarks/sweep_1e5.py [--n-inits 100000] [--out DIR]

Runs the command line on ``results/benchmarks/sweep_1e5.toml`` (n_inits overridden) in a
child process; its peak RSS is ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, which counts the
XLA runtime and compiled programs. Writes ``results/benchmarks/sweep_1e5.md``.
"""

from __future__ import annotations  # noqa: I001 -- tomllib is stdlib from Python 3.11 (this script needs it); ruff's py310 target sorts it as third-party

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

sys.path.insert(0, os.path.dirname(__file__))

CONFIG = os.path.join(os.path.dirname(__file__), "..", "results", "benchmarks", "sweep_1e5.toml")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-inits", type=int, default=100_000)
    p.add_argument("--out", help="results folder (default: a temporary one, removed afterwards)")
    args = p.parse_args(argv)
    import numpy as np
    from _report import table, write_report

    from gflow.sweep import store

    with open(CONFIG, "rb") as f:
        config = tomllib.load(f)
    config["n_inits"] = args.n_inits
    work = tempfile.mkdtemp(prefix="gflow-1e5-")
    out = args.out or os.path.join(work, "out")
    path = os.path.join(work, "sweep.toml")
    with open(path, "w") as f:
        f.writelines(f"{k} = {v!r}\n".replace("'", '"') for k, v in config.items())
    try:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "gflow.cli", "sweep", path, "--out", out, "--quiet"], capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        print(proc.stdout, proc.stderr[-2000:])
        proc.check_returncode()
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        useful, executed = map(int, re.search(r"useful/executed: (\d+)/(\d+)", proc.stdout).groups())
        runs = store.read_runs(out)
        status = runs["status"].to_pylist()
        steps = np.asarray(runs["steps"])
        neg = np.asarray(runs["effective_label_start"])
        loss = np.asarray(runs["final_loss"])
        size = os.path.getsize(os.path.join(out, store.RUNS)) / 2**20
        results = [
            ["trajectories", runs.num_rows],
            ["statuses", {s: status.count(s) for s in sorted(set(status))}],
            ["wall time of the command (s, compilation included)", f"{wall:.0f}"],
            ["rate (traj/s)", f"{runs.num_rows / wall:.1f}"],
            ["peak RSS of the command (MiB)", f"{peak_mib:.0f}"],
            ["slot-steps useful / executed", f"{useful} / {executed} ({useful / executed:.3f})"],
            [
                "steps per trajectory mean / p99 / max",
                f"{steps.mean():.1f} / {np.percentile(steps, 99):.0f} / {steps.max()}",
            ],
            ["max relative drift of delta", f"{np.max(np.asarray(runs['relative_drift'])):.2g}"],
            ["runs.parquet size (MiB, not committed)", f"{size:.1f}"],
        ]
        components = [[k, int(np.sum(neg == k)), f"{np.median(loss[neg == k]):.4g}"] for k in np.unique(neg)]
        cmd = (
            f"`python benchmarks/sweep_1e5.py --n-inits {args.n_inits}`: `gflow sweep` on "
            f"`results/benchmarks/sweep_1e5.toml` ({', '.join(f'{k} = {v}' for k, v in config.items())}), "
            "the CPU split into one device per core (the command's default)"
        )
        body = (
            table(["", ""], results)
            + "\n\n"
            + table(["negative output signs among pathological neurons", "runs", "median final loss"], components)
        )
        note = (
            "Memory is bounded: rows stream to one chunk file per `chunk_size` initializations and no "
            "trajectory is kept; the peak RSS is that of the whole command, XLA runtime and compiled "
            "programs included. Obstructed components (0 or 2 negative output weights among the two "
            "pathological neurons of the target y = relu(x1) - relu(x2)) cannot reach the target."
        )
        report = write_report(
            "sweep_1e5",
            "10^5 toy initializations of the exact flow (issue 6, must-show 4)",
            [("Run", cmd), ("Results", body), ("Notes", note)],
        )
        print(f"report: {report}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
