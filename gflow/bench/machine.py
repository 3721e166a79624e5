"""The sweep engine against the machine's limit, and how sweeps scale (issue 8, items 3–4).

Each configuration is a ``run_sweep`` of exact flows (Tsit5, rtol = atol = 1e-6, plain
field ``kinks="none"`` so that every gradient evaluation is the matmul work counted
below, t1 = 2 unless stated) run twice into fresh folders in one process: the first run compiles every
shape it needs (first call), the second is the steady state. From the second run:
trajectories/s, gradient evaluations/s (the ``grad_evals`` of its rows) and the achieved
matmul FLOP/s, ``evals x flops_per_grad(n, d, l) / seconds`` with
:func:`gflow.bench.problems.flops_per_grad` (``6 n l (d + 1)``), against the peak of a
large ``jnp.dot`` in float64 and float32 measured in the same run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from typing import cast

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..data import Dataset
from ..sweep.config import SweepConfig
from ..sweep.problems import dataset
from ..sweep.run import run_sweep
from ..sweep.store import environment, read_runs
from .machine_report import render
from .problems import flops_per_grad
from .report import runtime, write_csv, write_json


@dataclasses.dataclass(frozen=True)
class Case:
    """One sweep configuration: ``scan`` names the axis it belongs to in the table."""

    scan: str
    data: str
    width: int
    slots: int
    n_data: int = 1000
    precision: int = 64
    kinks: str = "none"
    t1: float = 2.0

    @property
    def n_inits(self) -> int:
        """One initialization per slot (all start together: no refill), at least 8."""
        return max(8, self.slots)


def _cases(slots, widths, sizes, extra) -> tuple[Case, ...]:
    out = [Case("slots", "breast_cancer", 8, s) for s in slots]
    out += [Case("width", "breast_cancer", w, 32) for w in widths]
    out += [Case("data size", "toy", 8, 32, n_data=n) for n in sizes]
    return tuple(out) + extra


_LARGE = (
    Case("large batch", "breast_cancer", 128, 128, t1=0.5),
    Case("large batch", "breast_cancer", 128, 128, precision=32, t1=0.5),
)
GRIDS = {
    "smoke": dict(peak_n=256, cases=(Case("slots", "toy", 2, 4, n_data=200),)),
    "quick": dict(peak_n=1024, cases=_cases((32,), (), (), ())),
    "full": dict(
        peak_n=2048,
        cases=_cases(
            (1, 32, 128, 512),
            (32, 128),
            (250, 4000),
            (*_LARGE, Case("kink-aware default", "breast_cancer", 8, 32, kinks="auto")),
        ),
    ),
}


def matmul_peak(dtype: str, n: int, reps: int = 5) -> float:
    """FLOP/s of the best of ``reps`` warm ``jnp.dot`` calls on ``(n, n)`` matrices (``2 n^3`` flops)."""
    a, b = (jr.normal(k, (n, n), jnp.dtype(dtype)) for k in jr.split(jr.PRNGKey(0)))
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(dot(a, b))
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


@contextlib.contextmanager
def _x64(enabled: bool):
    """Run with ``jax_enable_x64 = enabled`` (a sweep's precision), then restore it."""
    # jax.config's options are dynamic attributes, unknown to type checkers
    before = jax.config.jax_enable_x64  # pyright: ignore[reportAttributeAccessIssue]
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def run_case(case: Case, repeats: int = 2) -> dict:
    """``run_sweep`` of ``case`` once to compile, then ``repeats`` times (the fastest is the
    steady state: on a shared machine the slower ones met other jobs); one table row."""
    cfg = SweepConfig(
        data=case.data,
        n_data=case.n_data,
        width=case.width,
        slots=case.slots,
        n_inits=case.n_inits,
        t1=case.t1,
        rtol=1e-6,
        atol=1e-6,
        kinks=case.kinks,
        precision=case.precision,
        chunk_size=max(256, case.n_inits),
    )
    n, d = cast(Dataset, dataset(cfg)[0]).x_train.shape  # a finite sample: the benchmark's configs
    out = tempfile.mkdtemp(prefix="gflow-bench-machine-")
    try:
        with _x64(cfg.precision == 64):
            first = run_sweep_quiet(cfg, os.path.join(out, "first"))
            steady = min(
                (run_sweep_quiet(cfg, os.path.join(out, f"steady{k}")) for k in range(repeats)),
                key=lambda s: s["seconds"],
            )
        rows = read_runs(steady["out_dir"]).to_pydict()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    evals = int(np.sum(rows["grad_evals"]))
    seconds = steady["seconds"]
    flops = evals * flops_per_grad(n, d, case.width) / seconds
    return dict(
        scan=case.scan,
        data=case.data,
        n=n,
        d=d,
        width=case.width,
        slots=case.slots,
        inits=case.n_inits,
        precision=case.precision,
        kinks=case.kinks,
        t1=case.t1,
        first_s=first["seconds"],
        steady_s=seconds,
        compile_s=first["seconds"] - seconds,
        traj_per_s=case.n_inits / seconds,
        evals_per_s=evals / seconds,
        gflops=flops / 1e9,
        useful=steady["useful"] / max(1, steady["executed"]),
        failures=int(sum(s != "successful" for s in rows["status"])),
    )


def run_sweep_quiet(cfg, out_dir):
    return run_sweep(cfg, out_dir, progress=False)


def run(size: str = "full", out_dir: str = "results/benchmarks", log=print) -> dict:
    """Peaks, every case of ``GRIDS[size]``, peaks again; writes ``machine_limit.csv``/``.json``
    and the report drawn from them (:func:`gflow.bench.machine_report.render`).

    The peak of each precision is the larger of the two measurements (before and after the
    cases), so a fraction is never inflated by a peak measured while other jobs ran."""
    grid = GRIDS[size]
    n = grid["peak_n"]
    peaks = [{64: matmul_peak("float64", n), 32: matmul_peak("float32", n)}]
    log(f"machine: matmul peak ({n}x{n}) float64 {peaks[0][64] / 1e9:.3g} GFLOP/s, float32 {peaks[0][32] / 1e9:.3g}")
    rows = []
    for case in grid["cases"]:
        rows.append(run_case(case))
        r = rows[-1]
        log(
            f"  {case.scan:>18} {case.data:>13} n={r['n']} l={case.width} slots={case.slots} f{case.precision}: "
            f"first {r['first_s']:.1f}s steady {r['steady_s']:.2f}s {r['gflops']:.3g} GFLOP/s"
        )
    peaks.append({64: matmul_peak("float64", n), 32: matmul_peak("float32", n)})
    peak = {bits: max(p[bits] for p in peaks) for bits in (64, 32)}
    for r in rows:
        r["peak_fraction"] = r["gflops"] * 1e9 / peak[r["precision"]]
        r["f32_peak_fraction"] = r["gflops"] * 1e9 / peak[32]
    write_csv(os.path.join(out_dir, "machine_limit.csv"), rows)
    write_json(
        os.path.join(out_dir, "machine_limit.json"),
        dict(
            size=size,
            peak_n=n,
            peaks=[{str(k): v for k, v in p.items()} for p in peaks],
            environment=dict(environment(), **runtime()),
        ),
    )
    path, best = render(out_dir)
    return dict(rows=rows, peaks=peak, best=best, report=path)
