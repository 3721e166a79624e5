"""Time to first result: each command in a fresh process, cold (empty compilation cache) and warm.

    python benchmarks/time_to_result.py [--ref REF] [--figures] [--repeat N]

Every command runs twice with ``GFLOW_CACHE_DIR`` set to a new, empty folder: the first
run is cold (nothing compiled yet), the second warm (the persistent compilation cache
filled by the first). ``--ref REF`` also runs each command against ``git worktree`` of
``REF`` (the code before a change) in the same session, alternating with the working tree,
so both columns see the same machine load. Writes ``results/benchmarks/time_to_result.md``
and ``.json``; the load average at start and end is in the report, as timings on a shared
machine move with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

SWEEP_N_INITS = 128
NEW_FIELDS = ("save_times", "curves")


def commands(figures: bool) -> list[tuple[str, list[str]]]:
    """(label, argv) pairs; ``{out}`` is a fresh output folder, ``{cfg}`` the sweep config."""
    py = sys.executable
    gflow = [py, "-c", "import sys; from gflow.cli import main; sys.exit(main())"]
    cmds = [
        ('python -c "import gflow"', [py, "-c", "import gflow"]),
        # the floor under it: JAX alone, and the libraries every solve needs
        ('python -c "import jax"', [py, "-c", "import jax"]),
        ('python -c "import jax, equinox, diffrax"', [py, "-c", "import jax, equinox, diffrax"]),
        ("gflow run --data toy --width 2 --t1 20", [*gflow, "run", "--data", "toy", "--width", "2", "--t1", "20"]),
        (f"gflow sweep (example, n_inits = {SWEEP_N_INITS})", [*gflow, "sweep", "{cfg}", "--out", "{out}"]),
        ("gflow demo", [*gflow, "demo", "--out", "{out}"]),
    ]
    if figures:
        from gflow.figures import FIGURES

        cmds += [(f"gflow figure {n} --quick", [*gflow, "figure", n, "--quick", "--out", "{out}"]) for n in FIGURES]
    return cmds


NOTES = (
    "JAX's persistent cache keeps compiled programs, not traces: with it alone (the "
    "GFLOW_TRACE_CACHE=0 column) every process still traces and lowers each program in Python. "
    "gflow's saved executables (gflow/_traces.py) keep the single solve and the sweep engine's "
    "programs fully built under <cache>/traces/: a warm run loads them without tracing, lowering "
    "or compiling. A cold run compiles them with XLA's classic CPU fusion emitters (gflow/_jit.py), "
    "which compile the engine's step loop in about two thirds of the default's time "
    "(results/benchmarks/compile_options.md). The sweep takes initialization 0 (for its kink "
    "set-up) from its own batch program instead of about 25 small eager programs, and builds its "
    "row function in a background thread while the first chunk's step loop runs. What remains in "
    "a warm run: importing JAX, Equinox and Diffrax (the `import jax` line alone is most of it), "
    "building the data, loading the saved programs, running, and writing the rows."
)


def sweep_config(path: str) -> str:
    example = subprocess.run(
        [sys.executable, "-c", "from gflow.cli import main; main(['sweep', '--example'])"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    lines = [f"n_inits = {SWEEP_N_INITS}" if line.startswith("n_inits") else line for line in example.splitlines()]
    # fields added since the 'before' code, at their defaults: both versions read the same config
    lines = [line for line in lines if not line.startswith(NEW_FIELDS)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def timed(argv: list[str], env: dict, cwd: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return wall, proc.returncode, (proc.stderr or proc.stdout)[-400:]


def cache_entries(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", default=None, help="git ref of the 'before' code (default: only the working tree)")
    p.add_argument("--figures", action="store_true", help="also every `gflow figure NAME --quick`")
    p.add_argument("--only", default=None, help="comma-separated substrings of the command labels to run")
    p.add_argument("--out", default=os.path.join(ROOT, "results", "benchmarks"))
    p.add_argument("--name", default="time_to_result", help="report name: <out>/<name>.md and .json")
    p.add_argument("--repeat", type=int, default=1, help="cold + warm pairs per command and version (median)")
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="gflow-ttr-")
    # the working tree twice: with gflow's saved executables (the default) and without them
    versions = [("after", ROOT, {}), ("after, GFLOW_TRACE_CACHE=0", ROOT, {"GFLOW_TRACE_CACHE": "0"})]
    if args.ref:
        before = os.path.join(work, "before")
        subprocess.run(
            ["git", "worktree", "add", "--detach", before, args.ref], cwd=ROOT, check=True, capture_output=True
        )
        versions.insert(0, (f"before ({args.ref})", before, {}))
    cfg = sweep_config(os.path.join(work, "sweep.toml"))
    cmds = commands(args.figures)
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        cmds = [c for c in cmds if any(k in c[0] for k in keys)]

    for src in dict.fromkeys(src for _, src, _ in versions):  # bytecode written once, as an install has it
        subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(src, "gflow")], check=True)
    load_start = os.getloadavg()
    rows = []
    try:
        for label, argv_ in cmds:
            row = {"command": label}
            times = {(version, phase): [] for version, _, _ in versions for phase in ("cold", "warm")}
            for _ in range(args.repeat):  # versions alternate within each repeat: the same load for all
                for version, src, extra in versions:
                    cache = tempfile.mkdtemp(prefix="cache-", dir=work)
                    # the code under test first on the path; the same cache folder for cold and warm
                    env = dict(os.environ, PYTHONPATH=src, GFLOW_CACHE_DIR=cache, MPLBACKEND="Agg", **extra)
                    env.pop("GFLOW_CACHE", None)
                    env.pop("PYTHONDONTWRITEBYTECODE", None)
                    if "GFLOW_TRACE_CACHE" not in extra:
                        env.pop("GFLOW_TRACE_CACHE", None)
                    for phase in ("cold", "warm"):
                        out = tempfile.mkdtemp(prefix="out-", dir=work)
                        shutil.rmtree(out)
                        cmd = [a.replace("{out}", out).replace("{cfg}", cfg) for a in argv_]
                        wall, rc, tail = timed(cmd, env, cwd=work)
                        times[version, phase].append(wall if rc == 0 else None)
                        if rc != 0:
                            print(f"{label} [{version} {phase}] failed ({rc}): {tail}", file=sys.stderr)
                    row[f"{version} cache entries"] = cache_entries(cache)
            for (version, phase), walls in times.items():
                row[f"{version} {phase}"] = None if None in walls else statistics.median(walls)
            print(label, {k: round(v, 2) for k, v in row.items() if isinstance(v, float)}, flush=True)
            rows.append(row)
    finally:
        if args.ref:
            subprocess.run(["git", "worktree", "remove", "--force", versions[0][1]], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()

    from _report import table, write_report

    from gflow.bench.report import write_json

    names = [v for v, _, _ in versions]
    header = (
        ["command"] + [f"{v} {ph} (s)" for v in names for ph in ("cold", "warm")] + [f"{v} cache files" for v in names]
    )
    body = [
        [r["command"]]
        + [("failed" if r[f"{v} {ph}"] is None else r[f"{v} {ph}"]) for v in names for ph in ("cold", "warm")]
        + [r[f"{v} cache entries"] for v in names]
        for r in rows
    ]
    note = (
        f"Median of {args.repeat} cold/warm pair(s) per cell. "
        f"Each command in a fresh Python process (`python -c 'from gflow.cli import main; main()' ...`, "
        f"the same as the `gflow` script), wall time of the whole process. Cold: `GFLOW_CACHE_DIR` is a "
        f"new empty folder; warm: the same folder again, right after. The sweep is `gflow sweep --example` "
        f"with `n_inits = {SWEEP_N_INITS}`, into a new output folder each time. Python's bytecode of "
        f"gflow is compiled once before the runs (`python -m compileall`), as in a normal install. "
        f"Load average (1, 5, 15 min) at start {tuple(round(x, 2) for x in load_start)}, "
        f"at end {tuple(round(x, 2) for x in load_end)}: on a shared machine the absolute times move "
        f"with the load; the before/after columns ran alternately, command by command, under the same load. "
        f"'after' is the working tree at the commit above."
    )
    os.makedirs(args.out, exist_ok=True)
    write_json(
        os.path.join(args.out, f"{args.name}.json"),
        dict(rows=rows, versions=names, load_start=load_start, load_end=load_end),
    )
    from gflow.bench.report import runtime
    from gflow.sweep.store import environment

    env = dict(environment(), **runtime())
    env["persistent compilation cache"] = "per command: a new folder (cold), then the same folder (warm)"
    sections = [("Commands", note + "\n\n" + table(header, body)), ("Where the time goes", NOTES)]
    path = write_report(args.name, "Time to first result", sections, args.out, env)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
