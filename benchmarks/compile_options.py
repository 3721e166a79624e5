"""gflow's XLA compiler options (gflow/_jit.py) against XLA's defaults: compile and run time.

    python benchmarks/compile_options.py [--repeat N] [--quick]

Each case runs ``gflow sweep CONFIG`` in a fresh process, twice with one new cache folder:
cold (every program compiled; the time XLA takes for each of the engine's programs is
recorded) and warm (the saved programs loaded; the CPU time is then mostly running). In the
``default`` variant the process sets ``gflow._jit._CPU_OPTIONS = {}`` before anything is
compiled, which is the code as it was before the options. The variants alternate within each
repeat, so they see the same load; CPU seconds (``time.process_time``) are reported beside
wall seconds, as they move less with other work on the machine.

Configs: the example sweep (toy, width 2, 1000 points, t1 = 20, rtol 1e-6) with 128 and 1024
initializations, breast cancer (width 8, t1 = 10, rtol 1e-8, 64 inits) and an MLP (hidden
(16, 16), breast cancer, t1 = 10, rtol 1e-6, 32 inits). Writes
``results/benchmarks/compile_options.md`` and ``.json``.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

PROGRAMS = ("_batch_params", "start_chunk", "run_chunk", "finalize")
CONFIGS = {
    "toy, 128 inits": "n_inits = 128",
    "toy, 1024 inits": "n_inits = 1024",
    "breast cancer, width 8, 64 inits": (
        'data = "breast_cancer"\nwidth = 8\nt1 = 10.0\nrtol = 1e-8\natol = 1e-8\nn_inits = 64'
    ),
    "MLP (16, 16), breast cancer, 32 inits": (
        'model = "mlp"\nhidden = [16, 16]\ndata = "breast_cancer"\nt1 = 10.0\nn_inits = 32'
    ),
}

# run in a fresh process: argv = variant, config, out folder; prints one JSON line
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


def example(extra: str) -> str:
    text = subprocess.run(
        [sys.executable, "-c", "from gflow.cli import main; main(['sweep', '--example'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keys = {line.split("=")[0].strip() for line in extra.splitlines()}
    kept = [line for line in text.splitlines() if line.split("=")[0].strip() not in keys]
    return "\n".join(kept + extra.splitlines()) + "\n"


def run(variant: str, cfg: str, cache: str, work: str) -> dict:
    out = tempfile.mkdtemp(prefix="out-", dir=work)
    shutil.rmtree(out)
    env = dict(os.environ, GFLOW_CACHE_DIR=cache, MPLBACKEND="Agg")
    for key in ("GFLOW_CACHE", "GFLOW_TRACE_CACHE"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-c", CHILD, variant, cfg, out], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=1, help="cold + warm pairs per config and variant (median)")
    p.add_argument("--quick", action="store_true", help="the 128-init toy sweep only")
    p.add_argument("--out", default=os.path.join(ROOT, "results", "benchmarks"))
    args = p.parse_args(argv)

    configs = dict(list(CONFIGS.items())[:1]) if args.quick else CONFIGS
    work = tempfile.mkdtemp(prefix="gflow-opts-")
    load_start = os.getloadavg()
    results: dict = {}
    try:
        for name, extra in configs.items():
            cfg = os.path.join(work, "sweep.toml")
            with open(cfg, "w") as f:
                f.write(example(extra))
            for _ in range(args.repeat):
                for variant in ("gflow", "default"):
                    cache = tempfile.mkdtemp(prefix="cache-", dir=work)
                    for phase in ("cold", "warm"):
                        results.setdefault((name, variant, phase), []).append(run(variant, cfg, cache, work))
                    shutil.rmtree(cache)
            print(name, {f"{v} {ph}": round(r[-1]["cpu"], 2) for (n, v, ph), r in results.items() if n == name})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()

    from _report import table, write_report

    from gflow.bench.report import runtime, write_json
    from gflow.sweep.store import environment

    def median(name, variant, phase, key, program=None):
        values = [r["compiles"].get(program, 0.0) if program else r[key] for r in results[name, variant, phase]]
        return statistics.median(values)

    header = ["config", "variant", "cold wall (s)", "cold CPU (s)", "warm wall (s)", "warm CPU (s)"]
    header += [f"compile {p} (CPU s)" for p in PROGRAMS]
    body = [
        [name, variant]
        + [median(name, variant, ph, key) for ph in ("cold", "warm") for key in ("wall", "cpu")]
        + [median(name, variant, "cold", "compiles", p) for p in PROGRAMS]
        for name in configs
        for variant in ("gflow", "default")
    ]
    note = (
        f"Median of {args.repeat} cold/warm pair(s) per cell; `gflow`: the options of gflow/_jit.py "
        "(`xla_cpu_use_fusion_emitters = False`), `default`: XLA's defaults. Cold: a new cache folder; warm: "
        "the same folder right after (programs loaded from saved executables, so warm CPU time is set-up "
        "and running). Times from the command line's `main` on (the imports before it excluded). "
        "Compile columns: CPU seconds inside XLA's compile of each engine program in the "
        f"cold run. Load average at start {tuple(round(x, 2) for x in load_start)}, at end "
        f"{tuple(round(x, 2) for x in load_end)}."
    )
    os.makedirs(args.out, exist_ok=True)
    write_json(
        os.path.join(args.out, "compile_options.json"),
        dict(rows=[dict(zip(header, row, strict=True)) for row in body], load_start=load_start, load_end=load_end),
    )
    env = dict(environment(), **runtime())
    path = write_report(
        "compile_options",
        "XLA compiler options: compile and run time",
        [("Results", note + "\n\n" + table(header, body))],
        args.out,
        env,
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
