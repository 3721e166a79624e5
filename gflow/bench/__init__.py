"""Benchmarks of gflow (issue 8): work–precision against gradient descent, peer tools, and
the sweep engine against the machine's limit with compile times and scaling.

``gflow bench [--quick]`` runs them all (:func:`run_all`); ``benchmarks/*.py`` run one each
(:func:`script`). Sizes: ``full`` (the committed reports, minutes each), ``quick`` (reduced
grids, about 3 minutes in all on a 2-core CPU), ``smoke`` (seconds of work, for the tests).
Reports go to ``<out>/<name>.md`` with CSV rows and figures beside them, and the headline
numbers of a run to ``<out>/summary.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import jax
import numpy as np

BENCHMARKS = ("work_precision", "peers", "machine")
SIZES = ("smoke", "quick", "full")


def _enable_x64():
    jax.config.update("jax_enable_x64", True)


def run_all(size: str = "quick", out_dir: str = "results/benchmarks", only=BENCHMARKS, log=print) -> dict:
    """Run the benchmarks named in ``only`` at ``size``; write their reports and
    ``summary.json``; return the summary (headline numbers, report paths, seconds)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}; got {size!r}.")
    unknown = sorted(set(only) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}.")
    _enable_x64()
    os.makedirs(out_dir, exist_ok=True)
    with _blas_threads(1) as svd_ms:
        summary = _run(size, out_dir, only, log)
    summary["svd_398x30_ms"] = svd_ms
    return _write_summary(os.path.join(out_dir, "summary.json"), summary)


def _write_summary(path: str, summary: dict) -> dict:
    """Write ``summary`` as strict JSON (non-finite numbers as null), merged into an existing
    summary of the same size, so running one benchmark keeps the others' headline numbers."""
    # deliberately lazy: report imports the sweep store (pyarrow), and every `gflow` command
    # imports this package to build its parser (issue 21)
    from .report import json_safe, write_json

    safe = json_safe(summary)
    assert isinstance(safe, dict)  # json_safe keeps a dict a dict (with str keys)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old.get("size") == safe["size"]:
            for key in ("reports", "seconds"):
                safe[key] = {**old.get(key, {}), **safe[key]}
            safe = {**old, **safe}
    write_json(path, safe)
    return safe


@contextlib.contextmanager
def _blas_threads(n: int):
    """Limit NumPy's BLAS to ``n`` threads (threadpoolctl) for the benchmarks, yielding the
    time of a 398x30 SVD (ms) with the default threads and with ``n``: host-side NumPy work
    (the kink set-up of ``gradient_flow``, SciPy's solver loop) on a shared machine is
    otherwise dominated by BLAS threads waiting for busy cores."""
    z = np.random.default_rng(0).standard_normal((398, 30))

    def svd_ms():
        np.linalg.svd(z, full_matrices=False)
        start = time.perf_counter()
        for _ in range(5):
            np.linalg.svd(z, full_matrices=False)
        return (time.perf_counter() - start) / 5 * 1e3

    timing = {"default threads": svd_ms()}
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield timing
        return
    with threadpool_limits(limits=n, user_api="blas"):
        timing[f"{n} thread"] = svd_ms()
        yield timing


def _run(size, out_dir, only, log) -> dict:
    # deliberately lazy: SciPy's integrators, the PyTorch peer and the sweep engine take seconds
    # to import, and every `gflow` command imports this package to build its parser (issue 21)
    from . import machine, peers, work_precision

    summary, wp = dict(size=size, reports={}, seconds={}), None
    for name in BENCHMARKS:
        if name not in only:
            continue
        start = time.perf_counter()
        if name == "work_precision":
            wp = work_precision.run(size, out_dir, log)
            summary["work_precision"] = wp["headline"]
            res = wp
        elif name == "peers":
            res = peers.run(size, out_dir, wp=wp, log=log)
            summary["peers"] = dict(time_to_error=res["time_to_error"], batched=res["batched"], torch=res["torch"])
        else:
            res = machine.run(size, out_dir, log)
            summary["machine"] = dict(peaks_gflops={str(k): v / 1e9 for k, v in res["peaks"].items()}, best=res["best"])
        summary["reports"][name] = res["report"]
        summary["seconds"][name] = time.perf_counter() - start
        log(f"{name}: {summary['seconds'][name]:.0f} s, report {res['report']}")
    return summary


def add_arguments(parser: argparse.ArgumentParser, default_out: str | None) -> None:
    """``--quick``, ``--size``, ``--out``: shared by ``gflow bench`` and the scripts."""
    parser.add_argument("--quick", action="store_true", help="reduced grids (about 3 minutes in all on 2 cores)")
    parser.add_argument("--size", choices=SIZES, default=None, help="full (default), quick or smoke")
    parser.add_argument(
        "--out",
        default=default_out,
        help="folder for the reports (default: results/benchmarks, or results/quick/benchmarks with --quick)",
    )


def resolve(args) -> tuple[str, str]:
    """``(size, out_dir)`` from parsed ``add_arguments`` options."""
    size = args.size or ("quick" if args.quick else "full")
    out = args.out or ("results/benchmarks" if size == "full" else f"results/{size}/benchmarks")
    return size, out


def script(name: str, argv=None) -> dict:
    """Entry point of ``benchmarks/<name>.py``: one benchmark, same options as ``gflow bench``."""
    parser = argparse.ArgumentParser(description=f"gflow benchmark: {name}")
    add_arguments(parser, None)
    size, out = resolve(parser.parse_args(argv))
    return run_all(size, out, only=(name,))
