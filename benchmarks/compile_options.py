"""gflow's XLA compiler options (gflow/_jit.py) against XLA's defaults: compile and run time.

    python benchmarks/compile_options.py [--repeat N] [--quick]

Compile time: ``gflow sweep`` on the example config (toy, width 2, 1000 points, t1 = 20,
rtol 1e-6, 128 initializations) in a fresh process with a new cache folder, so every program
is compiled; the CPU seconds XLA takes for each of the engine's programs are recorded. In the
``default`` variant the process sets ``gflow._jit._CPU_OPTIONS = {}`` before anything is
compiled: the code as it was before the options. The variants alternate within each repeat.

Run time: in one process, the sweep engine's step loop (``run_chunk``) for the first chunk
of each config is compiled twice, with gflow's options and with XLA's defaults, and each
executable runs the whole chunk from the same start, alternately, ``3 * repeat`` times; the
median seconds are compared (same process, same data, so the ratio is not moved by the
machine's load the way two processes' times are). Configs: the example with 1024 inits
(chunks of 256), breast cancer (width 8, t1 = 10, 32 inits, Kaiming init as drawn) and an MLP
(hidden (16, 16), breast cancer, t1 = 10, 16 inits), all at the example's rtol = atol = 1e-6.

Writes ``results/benchmarks/compile_options.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
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

PROGRAMS = ("_batch_params", "start_chunk", "run_chunk", "finalize")
# run-time configs: fields over the example config ("-name": the field removed)
RUN_CONFIGS = {
    "toy, 256 of 1024 inits": ["n_inits = 1024"],
    "breast cancer, width 8, 32 inits": [
        'data = "breast_cancer"', "width = 8", "t1 = 10.0", "n_inits = 32",
        "-delta", "-signs",
    ],
    "MLP (16, 16), breast cancer, 16 inits": [
        'model = "mlp"', "hidden = [16, 16]", 'data = "breast_cancer"', "t1 = 10.0", "n_inits = 16",
        "-delta", "-signs",
    ],
}  # fmt: skip

# a cold sweep in a fresh process: argv = variant, config, out folder; prints one JSON line
CHILD = r"""
import json, sys, time
variant, cfg, out = sys.argv[1:4]
import gflow._jit
if variant == "default":
    gflow._jit._CPU_OPTIONS = {}
from jax import stages
compiles = {}
original = stages.Lowered.compile
def timed_compile(self, *args, **kwargs):
    start = time.process_time()
    result = original(self, *args, **kwargs)
    name = self.as_text()[:300].split("module @")[1].split()[0].removeprefix("jit_")
    compiles[name] = compiles.get(name, 0.0) + time.process_time() - start
    return result
stages.Lowered.compile = timed_compile
from gflow.cli import main
wall, cpu = time.perf_counter(), time.process_time()
rc = main(["sweep", cfg, "--out", out])
print(json.dumps(dict(rc=rc, wall=time.perf_counter() - wall, cpu=time.process_time() - cpu, compiles=compiles)))
"""


def example(fields: list[str]) -> str:
    text = subprocess.run(
        [sys.executable, "-c", "from gflow.cli import main; main(['sweep', '--example'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keys = {f.lstrip("-").split("=")[0].strip() for f in fields}
    kept = [line for line in text.splitlines() if line.split("=")[0].strip() not in keys]
    return "\n".join(kept + [f for f in fields if not f.startswith("-")]) + "\n"


def cold_sweep(variant: str, cfg: str, work: str) -> dict:
    cache = tempfile.mkdtemp(prefix="cache-", dir=work)
    out = os.path.join(cache, "out")
    env = dict(os.environ, GFLOW_CACHE_DIR=cache, MPLBACKEND="Agg")
    for key in ("GFLOW_CACHE", "GFLOW_TRACE_CACHE"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-c", CHILD, variant, cfg, out], env=env, capture_output=True, text=True)
    shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_loop_ab(cfg_path: str, n_runs: int) -> dict:
    """Seconds for the step loop of the first chunk with each variant's executable (alternating)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.tree_util as jtu
    import numpy as np

    import gflow._jit as gjit
    from gflow import _traces
    from gflow.flow.batched import _AXIS, FlowStepper, run_chunk, start_chunk
    from gflow.sweep import SweepConfig
    from gflow.sweep.problems import _params_fn, dataset, flow_problem

    cfg = SweepConfig.from_toml(cfg_path)
    jax.config.update("jax_enable_x64", cfg.precision == 64)
    data, _ = dataset(cfg)
    stepper = FlowStepper(problem=flow_problem(cfg, data))
    mesh = jax.make_mesh((1,), (_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    n = min(cfg.chunk_size, cfg.n_inits)
    queue = _params_fn(cfg, data)[0](jnp.arange(n))
    chunk = start_chunk(stepper, mesh, min(cfg.slots, n), n, queue, jnp.arange(n))
    args = (stepper, mesh, max(1, min(cfg.slots, n) // 16), chunk, jnp.asarray(10**9))
    dynamic, static = eqx.partition(args, eqx.is_array)
    leaves, treedef = jtu.tree_flatten(dynamic)
    programs = {}
    for variant, options in (("gflow", dict(gjit._CPU_OPTIONS)), ("default", {})):
        gjit._CPU_OPTIONS = options
        gjit.compiler_options.cache_clear()
        programs[variant] = _traces._compile("run_chunk", run_chunk.__wrapped__, static, treedef, leaves)
    gjit.compiler_options.cache_clear()
    seconds: dict[str, list[float]] = {v: [] for v in programs}
    steps = {}
    for _ in range(n_runs):
        for variant, program in programs.items():
            start = time.perf_counter()
            done = program(leaves)
            jax.block_until_ready(done)
            seconds[variant].append(time.perf_counter() - start)
            steps[variant] = np.asarray(done.out.steps)
    return dict(
        seconds=seconds,
        slot_steps=int(steps["gflow"].sum()),
        same_steps=int(np.sum(steps["gflow"] == steps["default"])),
        n=n,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=1, help="cold sweeps per variant; step-loop runs: 3 per repeat")
    p.add_argument("--quick", action="store_true", help="the toy's step loop only")
    p.add_argument("--out", default=os.path.join(ROOT, "results", "benchmarks"))
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="gflow-opts-")
    load_start = os.getloadavg()
    cold: dict[str, list[dict]] = {"gflow": [], "default": []}
    runs = {}
    try:
        cfg = os.path.join(work, "example.toml")
        with open(cfg, "w") as f:
            f.write(example(["n_inits = 128"]))
        for _ in range(args.repeat):
            for variant in cold:
                cold[variant].append(cold_sweep(variant, cfg, work))
        print("cold", {v: [round(r["cpu"], 2) for r in rs] for v, rs in cold.items()}, flush=True)
        configs = dict(list(RUN_CONFIGS.items())[:1]) if args.quick else RUN_CONFIGS
        for name, fields in configs.items():
            cfg = os.path.join(work, "run.toml")
            with open(cfg, "w") as f:
                f.write(example(fields))
            runs[name] = step_loop_ab(cfg, 3 * args.repeat)
            print(name, {v: [round(x, 2) for x in xs] for v, xs in runs[name]["seconds"].items()}, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()

    from _report import table, write_report

    from gflow.bench.report import runtime, write_json
    from gflow.sweep.store import environment

    med = statistics.median
    cold_header = ["variant", "sweep wall (s)", "sweep CPU (s)"] + [f"compile {p} (CPU s)" for p in PROGRAMS]
    cold_body = [
        [v, med(r["wall"] for r in rs), med(r["cpu"] for r in rs)]
        + [med(r["compiles"].get(p, 0.0) for r in rs) for p in PROGRAMS]
        for v, rs in cold.items()
    ]
    run_header = ["config", "slot-steps", "rows with equal steps", "gflow (s)", "default (s)", "gflow / default"]
    run_body = [
        [
            name,
            r["slot_steps"],
            f"{r['same_steps']} of {r['n']}",
            med(r["seconds"]["gflow"]),
            med(r["seconds"]["default"]),
            med(r["seconds"]["gflow"]) / med(r["seconds"]["default"]),
        ]
        for name, r in runs.items()
    ]
    start, end = (tuple(round(x, 2) for x in load) for load in (load_start, load_end))
    load = f"Load average at start {start}, at end {end}."
    cold_note = (
        f"`gflow sweep` on the example config with 128 inits, cold, median of {args.repeat} per variant "
        "(alternating). `gflow`: the options of gflow/_jit.py (`xla_cpu_use_fusion_emitters = False`); "
        "`default`: XLA's defaults. Sweep times from the command line's `main` on (imports excluded); compile "
        "columns: CPU seconds inside XLA's compile of each engine program. " + load
    )
    run_note = (
        f"The step loop of each config's first chunk, one executable per variant in one process, run "
        f"{3 * args.repeat} times each, alternating; median seconds. Slot-steps: steps the chunk's "
        "trajectories took. The two executables round differently, so a trajectory may take another step "
        "count; the column counts the rows whose steps are equal."
    )
    os.makedirs(args.out, exist_ok=True)
    write_json(
        os.path.join(args.out, "compile_options.json"),
        dict(cold=cold, runs=runs, load_start=load_start, load_end=load_end),
    )
    sections = [
        ("Compile time (cold sweep)", cold_note + "\n\n" + table(cold_header, cold_body)),
        ("Run time (the engine's step loop)", run_note + "\n\n" + table(run_header, run_body)),
    ]
    env = dict(environment(), **runtime())
    path = write_report("compile_options", "XLA compiler options: compile and run time", sections, args.out, env)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
