"""Numbers that a refactor must not move: sweep rows, quick-figure data, smoke benchmarks.

    python scripts/fingerprint.py OUT.json            # run everything, write a fingerprint
    python scripts/fingerprint.py --compare A.json B.json

Run it before and after a change that should move code only; ``--compare`` lists every
number that differs (timing columns are left out). Each part runs in a fresh temporary
folder; nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import tempfile

SWEEPS = {
    "flow_auto": dict(n_inits=24, n_data=200, t1=5.0, delta=-1.0, delta_signs="random", slots=8, chunk_size=12),
    "flow_none_project": dict(n_inits=12, n_data=200, t1=5.0, kinks="none", project=True, slots=4),
    "mlp_flow": dict(model="mlp", hidden=[4, 3], n_inits=8, n_data=100, t1=3.0, slots=4),
    "gd": dict(method="gd", n_inits=16, n_data=200, t1=5.0, lr=0.05, slots=8),
    "adam_ts": dict(method="adam", data="teacher_student", width=4, n_data=50, n_inits=8, t1=2.0, lr=0.01, slots=4),
    "events": dict(
        events=["loss_below=0.05", "neuron_dies"], on_event="record", n_inits=12, n_data=200, t1=5.0, slots=4
    ),
    "ts_flow_traj": dict(
        data="teacher_student", width=4, n_data=50, n_inits=8, t1=5.0, slots=4, save_trajectories=True
    ),
}
_TIMING = {"wall_time"}


def _clean(value):
    """JSON-safe numbers (NaN and infinities as strings), lists for arrays."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def sweeps(tmp: str) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    from gflow.sweep import SweepConfig, load_trajectory, run_sweep

    out = {}
    for name, fields in SWEEPS.items():
        folder = os.path.join(tmp, name)
        cfg = SweepConfig(name=name, **fields)
        run_sweep(cfg, folder, progress=False)
        rows = pq.read_table(os.path.join(folder, "runs.parquet")).to_pylist()
        out[name] = [{k: v for k, v in row.items() if k not in _TIMING} for row in rows]
        if cfg.save_trajectories:
            ts, models = load_trajectory(folder, 3)
            import equinox as eqx
            import jax

            leaves = jax.tree_util.tree_leaves(eqx.filter(models, eqx.is_inexact_array))
            out[name + "_trajectory_3"] = [np.asarray(ts), *[np.asarray(x) for x in leaves]]
    return _clean(out)


def figures(tmp: str) -> dict:
    import numpy as np

    from gflow.figures import FIGURES, get

    out = {}
    for name in FIGURES:
        folder = os.path.join(tmp, name)
        get(name).run(folder, quick=True)
        for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
            rel = os.path.relpath(path, folder)
            if path.endswith(".json") and "manifest" not in rel:
                with open(path) as f:
                    out[f"{name}/{rel}"] = json.load(f)
            elif path.endswith(".npz"):
                with np.load(path) as z:
                    out[f"{name}/{rel}"] = {k: z[k] for k in z.files if z[k].dtype.kind in "fiub"}
            elif path.endswith("runs.parquet"):
                import pyarrow.parquet as pq

                rows = pq.read_table(path).to_pylist()
                out[f"{name}/{rel}"] = [{k: v for k, v in r.items() if k not in _TIMING} for r in rows]
    return _clean(out)


def bench(tmp: str) -> dict:
    from gflow import cli

    code = cli.main(["bench", "--size", "smoke", "--out", tmp])
    out = {"exit": code}
    for path in sorted(glob.glob(os.path.join(tmp, "*.csv"))):
        with open(path) as f:
            out[os.path.basename(path)] = f.read().splitlines()
    return out


def _walk(a, b, path, diffs, rtol):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                diffs.append(f"{path}/{k}: only in {'first' if k in a else 'second'}")
            else:
                _walk(a[k], b[k], f"{path}/{k}", diffs, rtol)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{i}]", diffs, rtol)
    elif isinstance(a, float) and isinstance(b, float):
        if not (a == b or abs(a - b) <= rtol * max(abs(a), abs(b))):
            diffs.append(f"{path}: {a!r} vs {b!r}")
    elif a != b:
        diffs.append(f"{path}: {str(a)[:80]} vs {str(b)[:80]}")


def compare(a_path: str, b_path: str, rtol: float, skip: list[str]) -> int:
    with open(a_path) as f:
        a = json.load(f)
    with open(b_path) as f:
        b = json.load(f)
    diffs: list[str] = []
    _walk(a, b, "", diffs, rtol)
    diffs = [d for d in diffs if not any(s in d for s in skip)]
    for d in diffs[:200]:
        print(d)
    print(f"{len(diffs)} differences (rtol {rtol})")
    return 1 if diffs else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+")
    p.add_argument("--compare", action="store_true")
    p.add_argument("--rtol", type=float, default=0.0)
    p.add_argument("--skip", action="append", default=[], help="ignore differences whose path contains this")
    p.add_argument("--parts", default="sweeps,figures,bench")
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.paths, rtol=args.rtol, skip=args.skip)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import jax

    jax.config.update("jax_enable_x64", True)
    result = {}
    for part in args.parts.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            result[part] = {"sweeps": sweeps, "figures": figures, "bench": bench}[part](tmp)
            print(f"{part}: done", file=sys.stderr)
    with open(args.paths[0], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
