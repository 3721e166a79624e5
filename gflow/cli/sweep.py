"""``gflow sweep CONFIG.toml | --example | merge DIR | report DIR... | annotate DIR``."""

from __future__ import annotations

import json
import os
import sys
import warnings

from .._devices import cpu_cores, host_devices_flag, sets_host_devices
from .._validate import InputError, Int, OutFolder, Real, in_folder, out_folder, read_json
from ._args import value

EXAMPLE = """\
# gflow sweep config (TOML). Run: gflow sweep sweep.toml --out results/my-sweep
name = "toy-obstruction"
model = "shallow"          # shallow | mlp | "package.module:factory" (a callable key -> eqx.Module)
width = 2                  # hidden width (shallow); hidden = [16, 16] for mlp
bias = false
data = "toy"               # toy | breast_cancer | teacher_student | "file.npz" (x, y) | "package.module:factory"
n_data = 1000              # toy / teacher-student training points
loss = "mse"               # mse | bce | cross_entropy (default: bce for breast_cancer, else mse)
method = "flow"            # flow | gd | sgd | momentum | adam
solver = "tsit5"           # heun | tsit5 | dopri5 | dopri8 (adaptive, PID controller)
rtol = 1e-6
atol = 1e-6
max_steps = 100000
kinks = "auto"             # auto (shallow: pin collapsed neurons + slide on kinks) | none | pin | slide | pin+slide
events = []                # e.g. ["loss_below=1e-3", "grad_norm_below=1e-8", "output_sign_change", "neuron_dies"]
on_event = "stop"          # stop | record (event columns: event, event_time, t_<name>)
t1 = 20.0                  # final time (discrete optimizers: steps = t1 / lr unless steps is set)
lr = 0.01
n_inits = 256              # initialization i is drawn from fold_in(PRNGKey(seed), i)
init = "kaiming"           # kaiming (fan-in) | xavier
delta = -1.0               # relocate every neuron to this conserved value (Prop. 4); omit to keep the init
# delta_signs = "random"   # each neuron's delta gets a random sign: |delta_k| = |delta| (docs/theory.md section 5)
signs = "random"           # output-weight signs after relocating: "random", a list like [1, -1], or omit
seed = 0
precision = 64             # 64 | 32
slots = 32                 # trajectories advanced in parallel, over all devices (CPU: 16-32; GPU: thousands)
steps_per_call = 32        # first step budget per jitted call (doubled while calls take < 0.2 s; no effect on the rows)
chunk_size = 256           # rows per chunk file: the unit of resumption and of --part
n_save = 11                # saved times at which drift and component labels are checked
save_times = "linear"      # linear | log (0, then log-spaced from t1/1000) | a list of n_save times from 0 to t1
curves = false             # true: loss, test loss and gradient norm at the saved times, as list columns
save_trajectories = false  # true: also keep every network at the n_save times (trajectories/*.npz)
"""


TEACHER_STUDENT = """\
# gflow sweep config (TOML), teacher-student. Run: gflow sweep ts.toml --out results/ts
name = "teacher-student"
data = "teacher_student"     # x ~ N(0, I_2), y = teacher(x) + noise * N(0, 1)
teacher_width = 2            # the teacher: a ShallowReLU(2, teacher_width) drawn with teacher_seed
teacher_seed = 1234
teacher_min_strength = 0.3   # from teacher_seed on, the first teacher with every |a_j| ||u_j|| >= 0.3
teacher_min_angle = 30.0     # and kink lines >= 30 degrees apart (0, 0: take teacher_seed's as drawn)
noise = 0.0
n_data = 200                 # training points (and as many test points)
width = 4                    # the student
bias = false                 # reachable and recovered are defined for nets without biases
init = "kaiming"             # the inits as drawn: no delta/signs, so nothing is relocated
# delta = -1.0               # relocate every neuron to this conserved value (Prop. 4)
# signs = "random"           # output-weight signs after relocating
t1 = 20.0
rtol = 1e-6                  # the flow's final losses bottom out near rtol^2: compare above that floor
atol = 1e-6
recover_tol = 1e-3           # recovered: canonical forms within this (re-score: gflow sweep annotate DIR)
n_inits = 500
seed = 0
slots = 32
chunk_size = 500

# one table per method, same inits (drop these for the flow alone); rows get a method column
[methods.flow]
[methods.gd]
lr = 0.05
[methods.adam]
lr = 0.01
"""

EXAMPLES = {"toy": EXAMPLE, "teacher_student": TEACHER_STUDENT}


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep over initializations from a TOML config",
        description="gflow sweep CONFIG.toml [--out DIR] [--slurm ...] | gflow sweep --example | "
        "gflow sweep merge DIR | gflow sweep report DIR [DIR2 ...] | gflow sweep annotate DIR --recover-tol TOL",
    )
    p.add_argument("args", nargs="*", help="CONFIG.toml, or: merge DIR, or: report DIR [DIR2 ...], or: annotate DIR")
    p.add_argument(
        "--out",
        type=value("--out", OutFolder()),
        help="results folder (default: results/<name>); report: where to write it (default: DIR)",
    )
    p.add_argument(
        "--devices",
        type=value("--devices", Int(1)),
        help="on a CPU, split the host into N devices, slots spread over them (default: one per core; "
        "sets XLA_FLAGS; GPUs are used as they are)",
    )
    p.add_argument(
        "--resume",
        action=__import__("argparse").BooleanOptionalAction,
        default=True,
        help="continue a sweep in the same folder (default) or refuse to touch existing results",
    )
    p.add_argument("--part", default="0/1", help="run part i of N (chunks c with c %% N == i), e.g. 2/8")
    p.add_argument(
        "--example",
        nargs="?",
        const="toy",
        choices=tuple(EXAMPLES),
        help="print a documented example config: toy (default) or teacher_student",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    c = p.add_argument_group(
        'cluster (submitit: pip install "gflow[cluster]")',
        "submit the sweep as one job array of N parts into --out, then a merge job after it; the same "
        "command again submits only the parts whose chunks are missing",
    )
    c.add_argument("--slurm", action="store_true", help="submit to SLURM (sbatch array + dependent merge job)")
    c.add_argument(
        "--executor",
        choices=("slurm", "local"),
        help="slurm (default with --slurm) or local: the same tasks as local processes",
    )
    c.add_argument(
        "--array",
        type=value("--array", Int(1)),
        metavar="N",
        help="number of parts (array tasks; default: one per chunk)",
    )
    c.add_argument(
        "--max-concurrent",
        type=value("--max-concurrent", Int(1)),
        metavar="K",
        help="at most K tasks at once (sbatch --array=...%%K)",
    )
    c.add_argument("--partition", metavar="P", help="SLURM partition")
    c.add_argument(
        "--time", type=value("--time", Int(1)), metavar="MIN", help="time limit per task, minutes (default 60)"
    )
    c.add_argument("--mem", type=value("--mem", Real()), metavar="GB", help="memory per task, GB")
    c.add_argument(
        "--gpus-per-task", type=value("--gpus-per-task", Int(0)), metavar="G", help="GPUs per task (default 0)"
    )
    c.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --sbatch account=abc --sbatch qos=short (repeatable)",
    )
    c.add_argument("--dry-run", action="store_true", help="print the sbatch script of the array; submit nothing")
    r = p.add_argument_group("report (gflow sweep report DIR [DIR2 ...])")
    r.add_argument("--by", metavar="COLUMN", help="group final losses by this column (default: label_start)")
    r.add_argument(
        "--solved",
        type=value("--solved", Real()),
        default=1e-3,
        metavar="LOSS",
        help="a run fits when its final loss < LOSS",
    )
    r.add_argument("--json", action="store_true", help="print the report's summary as JSON")
    a = p.add_argument_group(
        "annotate (gflow sweep annotate DIR)",
        "re-score a finished teacher-student sweep from its stored networks, without running it again; "
        "writes DIR/annotations.parquet (the config and runs.parquet stay as they are)",
    )
    a.add_argument(
        "--recover-tol",
        type=value("--recover-tol", _RecoverTol()),
        metavar="TOL|data",
        help="tolerance of the recovered column: a positive number, or data (the inputs' angular "
        "resolution, gflow.data_resolution; default)",
    )
    p.set_defaults(func=run_sweep_cli)


def _part(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--part must look like i/N (e.g. 0/4), got {text!r}.") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--part i/N needs 0 <= i < N, got {text!r}.")
    return i, n


def run_sweep_cli(args) -> int:
    if args.example:
        print(EXAMPLES[args.example], end="")
        return 0
    flags = os.environ.get("XLA_FLAGS")
    if args.devices is not None or not sets_host_devices(flags):
        os.environ["XLA_FLAGS"] = host_devices_flag(flags, args.devices or cpu_cores())
    if args.args[:1] == ["merge"]:
        if len(args.args) != 2:
            raise ValueError("usage: gflow sweep merge DIR.")
        return _merge(args.args[1])
    if args.args[:1] == ["report"]:
        return _report(args)
    if args.args[:1] == ["annotate"]:
        return _annotate(args.args[1:], "data" if args.recover_tol is None else args.recover_tol)
    if args.recover_tol is not None:
        raise InputError("--recover-tol applies to gflow sweep annotate DIR.")
    if len(args.args) != 1:
        raise ValueError("give one CONFIG.toml (or --example, or merge DIR, or report DIR [DIR2 ...]).")
    if args.by is not None or args.json:
        raise ValueError("--by and --json apply to gflow sweep report DIR [DIR2 ...].")
    if args.slurm or args.executor:
        return _cluster(args)
    _no_cluster_options(args)
    # set before anything touches a device: JAX reads XLA_FLAGS when its CPU backend starts
    import jax

    from ..sweep import SweepConfig, run_sweep

    part = _part(args.part)
    config = SweepConfig.from_toml(args.args[0])
    out = out_folder(args.out or os.path.join("results", config.name), "--out")
    jax.config.update("jax_enable_x64", config.precision == 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_sweep(config, out, resume=args.resume, part=part, progress=not args.quiet)
    _print_notices(caught)
    _print_summary(summary)
    return 0


_CLUSTER_ONLY = ("array", "max_concurrent", "partition", "time", "mem", "gpus_per_task", "sbatch", "dry_run")


def _no_cluster_options(args) -> None:
    for name in _CLUSTER_ONLY:
        if getattr(args, name) not in (None, [], False):
            option = "--" + name.replace("_", "-")
            raise ValueError(f"{option} applies to cluster sweeps: add --slurm (or --executor local).")


def _cluster(args) -> int:
    """``--slurm`` / ``--executor``: validate everything, then print the script or submit."""
    from ..sweep import SweepConfig, slurm

    executor = args.executor or "slurm"
    if args.part != "0/1":
        raise ValueError("--part and --slurm exclude each other: the array runs every part (set --array N).")
    if args.dry_run and executor != "slurm":
        raise ValueError("--dry-run prints the sbatch script: use it with --slurm (executor slurm).")
    options = slurm.ClusterOptions(
        array=args.array,
        max_concurrent=args.max_concurrent,
        partition=args.partition,
        time=60 if args.time is None else args.time,
        mem=args.mem,
        gpus_per_task=args.gpus_per_task or 0,
        sbatch=tuple(args.sbatch),
        executor=executor,
        devices=args.devices,
    )
    config = SweepConfig.from_toml(args.args[0])
    out = out_folder(args.out or os.path.join("results", config.name), "--out")
    slurm._import_submitit()
    from ..sweep import store

    store.check_same_config(out, config.to_dict())  # before anything is written

    cfg = config.to_dict()
    n_chunks = store.n_chunks_of(cfg)
    n_parts = options.array or n_chunks
    if args.dry_run:
        done = store.done_chunks(out) if os.path.isdir(out) else set()
        parts = slurm.parts_to_run(n_chunks, n_parts, done)
        print(
            f"# dry run: would submit parts {slurm._ranges(parts) or 'none'} of {n_parts} as array tasks "
            f"0-{max(len(parts) - 1, 0)} into {out}, then a merge job (--dependency=afterok:<array id>)",
            file=sys.stderr,
        )
        print(slurm.sbatch_script(config.name, out, max(len(parts), 1), options), end="")
        return 0
    result = slurm.submit(config, out, options)
    return 1 if result["failed"] else 0


def _report(args) -> int:
    from ..sweep import report

    if args.slurm or args.executor:
        raise ValueError("--slurm and --executor apply to running a sweep, not to a report.")

    dirs = args.args[1:]
    if not dirs:
        raise ValueError("usage: gflow sweep report DIR [DIR2 ...] [--by COLUMN] [--json] [--out DIR].")
    for d in dirs:
        in_folder(d, "gflow sweep report DIR")
    paths, summary = report.write_report(dirs, by=args.by, out_dir=args.out, solved=args.solved)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(report.text_summary(summary))
        print("report: " + ", ".join(paths))
    return 0


class _RecoverTol(Real):
    """A positive number or ``data``."""

    def __init__(self):
        super().__init__()
        self.allowed = "a positive finite number or data"

    def parse(self, text, name):
        return "data" if text == "data" else super().parse(text, name)


def _annotate(dirs: list[str], recover_tol) -> int:
    if len(dirs) != 1:
        raise InputError("usage: gflow sweep annotate DIR [--recover-tol TOL|data].")
    in_folder(dirs[0], "gflow sweep annotate DIR")
    from ..sweep.annotate import annotate

    table = annotate(dirs[0], recover_tol)
    n, tol = table.num_rows, table.column("recover_tol")[0].as_py() if table.num_rows else float("nan")
    print(
        f"recovered at tol {tol:.4g}: {sum(table.column('recovered').to_pylist())} of {n} runs; "
        f"written to {os.path.join(dirs[0], 'annotations.parquet')}"
    )
    return 0


def _print_notices(caught) -> None:
    """A network without known conserved quantities: its notice as one line (once); other
    warnings as Python shows them."""
    from ..conservation import NoConservedQuantities
    from ..sweep.run import WeakTeacher

    notices = set()
    for w in caught:
        if issubclass(w.category, (NoConservedQuantities, WeakTeacher)):
            text = str(w.message).removeprefix("gflow: ")
            if text not in notices:
                notices.add(text)
                print(f"gflow sweep: note: {text}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _merge(out_dir: str) -> int:
    from ..sweep import store

    in_folder(out_dir, "gflow sweep merge DIR")
    path = os.path.join(out_dir, store.MANIFEST)
    if not os.path.exists(path):
        raise InputError(f"gflow sweep merge DIR must be a sweep folder; {out_dir} has no {store.MANIFEST}.")
    manifest = read_json(path, store.MANIFEST)
    config = manifest.get("config") if isinstance(manifest, dict) else None
    if not isinstance(config, dict):
        raise InputError(f"{path} must hold the sweep's config (a 'config' table); it has none.")
    if isinstance(config.get("methods"), dict):  # each method's sweep, then their rows together
        for name in config["methods"]:
            _merge(os.path.join(out_dir, name))
        table = store.merge_methods(out_dir, list(config["methods"]))
        print(
            f"merged {table.num_rows} rows of {len(config['methods'])} methods into {os.path.join(out_dir, store.RUNS)}"
        )
        return 0
    for field in ("n_inits", "chunk_size"):
        Int(1)(config.get(field), f"{store.MANIFEST} config field {field!r}")
    n_chunks = store.n_chunks_of(config)
    table = store.merge(out_dir, n_chunks)
    print(f"merged {table.num_rows} rows from {n_chunks} chunks into {os.path.join(out_dir, store.RUNS)}")
    return 0


def _print_summary(summary: dict) -> None:
    import numpy as np

    from ..sweep import store

    print(
        f"ran {summary['ran']} trajectories in {summary['seconds']:.1f} s ({summary['rate']:.2f}/s); "
        f"failures: {summary['failures']}; slot-steps useful/executed: {summary['useful']}/{summary['executed']}"
    )
    if not summary["complete"]:
        print(f"partial results in {summary['out_dir']}/chunks (other parts still to run; then gflow sweep merge)")
        return
    table = store.read_runs(summary["out_dir"])
    cols = {c: np.asarray(table[c]) for c in ("final_loss", "drift", "steps")}
    status = table["status"].to_pylist()
    print(f"{'rows':>6} {'final loss (median)':>20} {'max drift':>10} {'steps mean/max':>15}  statuses")
    counts = ", ".join(f"{s}: {status.count(s)}" for s in sorted(set(status)))
    print(
        f"{table.num_rows:>6} {np.median(cols['final_loss']):>20.4g} {np.max(cols['drift']):>10.2e} "
        f"{cols['steps'].mean():>7.0f}/{cols['steps'].max():<7d}  {counts}"
    )
    print(f"rows: {os.path.join(summary['out_dir'], store.RUNS)}")
