"""gflow against peer tools on the same problem, in the same run (issue 8, item 2).

Single trajectory (breast cancer in the quick and full runs), errors against the
work–precision reference:

- gflow: ``gradient_flow`` (Heun at fixed steps; Tsit5, Dopri5, Dopri8 with the kink-aware
  default) and small-lr GD
  (``gflow.train``; the NeurIPS paper's method), from :mod:`gflow.bench.work_precision`;
- SciPy ``solve_ivp`` (RK45, DOP853) on the same field: ``jax.jit`` of the flat
  ``-grad L`` (:func:`gflow.flow.flow_field`), NumPy in and out;
- torchdiffeq ``dopri5`` on the same network, data and initial weights in PyTorch (CPU,
  float64; :mod:`gflow.bench.torch_net`); skipped with a note when torch is not installed.

Each is run at several tolerances (learning rates for GD); the time to reach an error is
read off its (wall time, error) curve (:func:`gflow.bench.curves.cost_at`).

Batched (many initializations): naive ``jit(vmap(solve_flow))`` vs ``run_sweep``
(:mod:`gflow.bench.sweeps`), same solver, tolerance and kink mode, so the same steps and
errors per trajectory; trajectories per second.
"""

from __future__ import annotations

import dataclasses
import os
import time
from importlib.metadata import PackageNotFoundError, version

import equinox as eqx
import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy.integrate import solve_ivp

from ..flow.field import flow_field
from ..losses import get_loss
from ..sweep.config import SweepConfig
from ..sweep.store import environment
from . import torch_net, work_precision
from .peers_report import render
from .problems import Problem, relative_error
from .report import runtime, write_csv, write_json
from .sweeps import CONFIGS, naive_vmap_timeboxed, run_engine
from .timing import TimeBox, call_time

GFLOW_METHODS = ("heun", "tsit5", "dopri5", "dopri8", "gd")


@dataclasses.dataclass(frozen=True)
class Grid:
    problem: str
    tols: tuple[float, ...]
    torch_tols: tuple[float, ...]
    budget_s: float
    batch_inits: int  # 0: no batched comparison
    slots: int = 32
    vmap_timeout: float = 300.0


GRIDS = {
    "smoke": Grid("toy", (1e-4, 1e-6), (1e-4,), 20.0, 0),
    "quick": Grid("breast_cancer", (1e-4, 1e-6, 1e-8), (1e-4, 1e-6, 1e-8), 20.0, 0),
    "full": Grid(
        "breast_cancer",
        tuple(10.0**-k for k in range(3, 12)),
        tuple(10.0**-k for k in range(3, 12)),
        120.0,
        64,
        slots=32,
        vmap_timeout=300.0,
    ),
}


def jax_flat_field(problem: Problem):
    """``(f, y0)``: ``f(y) = -grad L`` on a flat NumPy vector (``jax.jit``, compiled here), and
    the initial flat parameters."""
    params, static = eqx.partition(problem.model, eqx.is_inexact_array)
    y0, unravel = ravel_pytree(params)
    field = flow_field(static, problem.data, get_loss(problem.loss))
    f = jax.jit(lambda y: ravel_pytree(field(0.0, unravel(y), None))[0])
    jax.block_until_ready(f(y0))
    return (lambda y: np.asarray(f(y))), np.asarray(y0)


def _series(name, tool, tols, budget, call, ref, log):
    rows, box = [], TimeBox(budget)
    for tol in tols:
        if not box.allows():
            log(f"  {name}: time box of {budget:g} s reached, skipping tol <= {tol:g}")
            break
        start = time.perf_counter()
        theta, evals, status = call(tol)
        wall = time.perf_counter() - start
        box.add(wall)
        rows.append(
            dict(
                method=name,
                tool=tool,
                setting=tol,
                grad_evals=int(evals),
                error=relative_error(theta, ref),
                wall=wall,
                status=status,
            )
        )
        log(f"  {name:>18} tol {tol:<7g} evals {evals:>8} error {rows[-1]['error']:.2e} wall {wall:.2f}s {status}")
    return rows


def scipy_rows(problem: Problem, ref: np.ndarray, grid: Grid, log=print) -> list[dict]:
    """``solve_ivp`` RK45 and DOP853 on the jitted JAX field (compiled before timing)."""
    f, y0 = jax_flat_field(problem)

    def call(method):
        def one(tol):
            sol = solve_ivp(lambda t, y: f(y), (0.0, problem.t1), y0, method=method, rtol=tol, atol=tol)
            return sol.y[:, -1], sol.nfev, "successful" if sol.status == 0 else f"failed: {sol.message}"

        return one

    return [
        r
        for m in ("RK45", "DOP853")
        for r in _series(f"scipy {m}", "SciPy solve_ivp + jax.jit field", grid.tols, grid.budget_s, call(m), ref, log)
    ]


def torch_rows(problem: Problem, ref: np.ndarray, grid: Grid, log=print) -> tuple[list[dict], str | None]:
    """torchdiffeq dopri5 in PyTorch float64, with one intra-op thread (after checking its
    field against JAX's at the initial point and timing one field call with the default
    threads and with one); ``([], reason)`` when torch is not installed."""
    missing = torch_net.available()
    if missing:
        return [], missing
    import torch  # pyright: ignore[reportMissingImports]  # the optional bench extra (checked just above)

    f, y0 = jax_flat_field(problem)
    field, theta0, _ = torch_net.torch_field(problem)
    gap = float(np.max(np.abs(field(0.0, theta0).numpy() - f(y0))))
    if not np.array_equal(theta0.numpy(), y0) or gap > 1e-12 * max(1.0, float(np.abs(f(y0)).max())):
        raise RuntimeError(f"the torch field differs from the JAX field at the initial point (max gap {gap:.2e}).")
    threads = torch.get_num_threads()
    per_call = {threads: call_time(lambda: field(0.0, theta0))}
    torch.set_num_threads(1)
    try:
        per_call[1] = call_time(lambda: field(0.0, theta0))
        torch_net.solve(problem, 1e-2, 1e-2)  # warm-up (first-call overheads)
        rows = _series(
            "torchdiffeq dopri5",
            f"torchdiffeq {_version('torchdiffeq')}, torch {torch.__version__}",
            grid.torch_tols,
            grid.budget_s,
            lambda tol: torch_net.solve(problem, tol, tol),
            ref,
            log,
        )
    finally:
        torch.set_num_threads(threads)
    jax_call = call_time(lambda: f(y0))
    timing = ", ".join(f"{k} thread{'s' if k > 1 else ''}: {v * 1e3:.3g} ms" for k, v in per_call.items())
    return rows, (
        f"run with 1 intra-op thread. One field call (measured here): torch {timing}; the jitted JAX "
        f"field with NumPy in/out: {jax_call * 1e3:.3g} ms. Field checked against JAX's at θ0 "
        f"(max gap {gap:.1e})."
    )


def _version(module: str) -> str:
    try:
        return version(module)
    except PackageNotFoundError:
        return "?"


def batched_rows(grid: Grid, log=print) -> list[dict]:
    """Naive vmap vs ``run_sweep`` on the breast-cancer sweep configuration."""
    if not grid.batch_inits:
        return []

    n = grid.batch_inits
    cfg = SweepConfig(**CONFIGS["breast_cancer"], n_inits=n, slots=grid.slots, chunk_size=max(256, grid.slots))
    out = []
    for method, res in (
        ("run_sweep (continuous batching)", run_engine(cfg, n)),
        ("naive jit(vmap(diffeqsolve))", naive_vmap_timeboxed(cfg, n, grid.vmap_timeout)),
    ):
        timed_out = not np.isfinite(res["seconds"])
        rate = n / (res["timeout"] if timed_out else res["seconds"])
        out.append(
            dict(
                method=method,
                inits=n,
                seconds=res["seconds"],
                rate=rate,
                timed_out=timed_out,
                compile=res.get("compile", float("nan")),
                useful=(res["useful"] / res["executed"]) if res.get("executed") else float("nan"),
            )
        )
        log(f"  batched {method}: {n} inits in {res['seconds']:.2f} s")
    return out


def gflow_rows(wp_rows: list[dict], problem: str) -> list[dict]:
    """The work–precision rows of gflow's methods on ``problem``, in this module's format."""
    names = {"gd": "gflow GD (small lr)"}
    return [
        dict(
            method=names.get(r["method"], f"gflow {r['method']}"),
            tool="gflow",
            setting=r["setting"],
            grad_evals=r["grad_evals"],
            error=r["error"],
            wall=r["wall"],
            status=r["status"],
        )
        for r in wp_rows
        if r["problem"] == problem and r["method"] in GFLOW_METHODS
    ]


def run(size: str = "full", out_dir: str = "results/benchmarks", wp: dict | None = None, log=print) -> dict:
    """Run the peers at ``GRIDS[size]``; ``wp``: the result of :func:`work_precision.run` on
    the same problem in this process (else it is run here for that problem only)."""
    grid = GRIDS[size]
    if wp is None or grid.problem not in wp["references"]:
        base = work_precision.GRIDS[size]
        wp_grid = dataclasses.replace(
            base,
            problems=(grid.problem,),
            fixed={k: v for k, v in base.fixed.items() if k in GFLOW_METHODS},
            tols={k: v for k, v in base.tols.items() if k in GFLOW_METHODS},
        )
        problem = work_precision.make_problem(grid.problem, wp_grid.toy_n)
        ref, info = work_precision.reference(problem, wp_grid)
        wp_rows = work_precision.run_problem(problem, wp_grid, ref, log)[0]
    else:
        info = wp["references"][grid.problem]
        problem, ref, wp_rows = info["problem"], info["flat"], wp["rows"]
    log(f"peers: {grid.problem}")
    rows = gflow_rows(wp_rows, grid.problem)
    rows += scipy_rows(problem, ref, grid, log)
    trows, torch_note = torch_rows(problem, ref, grid, log)
    rows += trows
    batched = batched_rows(grid, log)
    write_csv(os.path.join(out_dir, "peers.csv"), rows)
    meta = dict(
        size=size,
        problem=problem.name,
        shape=list(problem.shape),
        loss=problem.loss,
        t1=problem.t1,
        reference=dict(solver=info["solver"], tol=info["tol"]),
        budget_s=grid.budget_s,
        slots=grid.slots,
        torch=torch_note,
        have_torch=bool(trows),
        batched=batched,
        environment=dict(environment(), **runtime()),
    )
    write_json(os.path.join(out_dir, "peers.json"), meta)
    path, tte = render(out_dir)
    return dict(rows=rows, time_to_error=tte, batched=batched, report=path, torch=torch_note)
