"""The peers report, drawn from a run's files only (``peers.csv`` and ``peers.json``)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from .curves import cost_at
from .report import table, write_report

TARGETS = (1e-3, 1e-6)


def read_rows(path: str) -> list[dict]:
    """The rows of ``peers.csv`` with numbers as numbers."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update(
            grad_evals=int(r["grad_evals"]), setting=float(r["setting"]), error=float(r["error"]), wall=float(r["wall"])
        )
    return rows


def _is_gd(method: str) -> bool:
    return method.startswith("gflow GD")


def time_to_error(rows: list[dict]) -> list[list]:
    """Per target and method: gradient evaluations and time read off its curve (``> t (not
    reached)``: its most accurate run, which took ``t``, stayed above the target), and its
    time over the fastest gflow flow solver's."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for target in TARGETS:
        readings = {}
        for m in methods:
            rs = [r for r in rows if r["method"] == m]
            curve = [r["error"] for r in rs]
            readings[m] = (
                cost_at([r["grad_evals"] for r in rs], curve, target, extrapolate=_is_gd(m)),
                cost_at([r["wall"] for r in rs], curve, target, extrapolate=_is_gd(m)),
                max(r["wall"] for r in rs),
            )
        flows = [m for m in methods if m.startswith("gflow") and not _is_gd(m)]
        best = min(flows, key=lambda m: readings[m][1].cost)
        for m in methods:
            evals, wall, longest = readings[m]
            ratio = wall.cost / readings[best][1].cost if np.isfinite(readings[best][1].cost) else float("nan")
            shown = str(wall) if np.isfinite(wall.cost) else f"> {longest:.3g} (not reached)"
            ratio_text = (
                f"{ratio:.3g}"
                if np.isfinite(ratio)
                else (f"> {longest / readings[best][1].cost:.3g}" if np.isfinite(readings[best][1].cost) else "n/a")
            )
            out.append(
                [
                    f"{target:g}",
                    m,
                    str(evals),
                    shown,
                    ratio_text,
                    "(the fastest gflow flow solver)" if m == best else "",
                ]
            )
    return out


def render(out_dir: str) -> tuple[str, list[list]]:
    """Write ``peers.md`` from ``peers.csv`` and ``peers.json`` in ``out_dir``; returns the
    report path and the time-to-error rows."""
    rows = read_rows(os.path.join(out_dir, "peers.csv"))
    with open(os.path.join(out_dir, "peers.json")) as f:
        meta = json.load(f)
    tte = time_to_error(rows)
    path = write_report(
        "peers",
        "gflow vs peer tools: time to equal error",
        _sections(meta, rows, tte),
        out_dir,
        env=meta["environment"],
    )
    return path, tte


def _batched(meta) -> str:
    b = {r["method"]: r for r in meta["batched"]}
    if not b:
        return (
            "Full size only (each side compiles for about half a minute here); "
            "`benchmarks/sweep_throughput.py` compares them at more sizes."
        )
    sweep, naive = b["run_sweep (continuous batching)"], b["naive jit(vmap(diffeqsolve))"]
    body = table(
        ["method", "inits", "seconds", "traj/s", "compile s", "useful slot-steps"],
        [
            [
                r["method"],
                r["inits"],
                r["seconds"],
                ("< " if r["timed_out"] else "") + f"{r['rate']:.3g}",
                "warm-up run first" if r["compile"] is None or not np.isfinite(r["compile"]) else r["compile"],
                r["useful"],
            ]
            for r in meta["batched"]
        ],
    )
    ratio = sweep["rate"] / naive["rate"]
    return body + (
        f"\n\nrun_sweep / naive vmap: {'> ' if naive['timed_out'] else ''}{ratio:.3g}× the trajectories "
        f"per second (breast cancer, Tsit5 at rtol = atol = 1e-5, the sweep's default kink mode, "
        f"{meta['slots']} slots; equal error by construction: each slot takes the steps of a single "
        "solve). The run_sweep time excludes its compilation (a warm-up sweep on the same shapes "
        "first); the naive vmap is compiled ahead of time ('compile s')."
    )


def _sections(meta, rows, tte):
    ref = meta["reference"]
    run_text = (
        f"Size `{meta['size']}`. Problem `{meta['problem']}` ((n, d, l) = {tuple(meta['shape'])}, loss "
        f"{meta['loss']}, t1 = {meta['t1']:g}, float64). Reference: {ref['solver']} at rtol = atol = "
        f"{ref['tol']:g} (the work–precision reference of the same run)."
    )
    notes = [
        "Times are whole warm calls (each tool's compiled or first-call work done beforehand): `gradient_flow` / "
        "`train` for gflow, `solve_ivp` for SciPy (the field is a `jax.jit` function called with NumPy arrays, "
        "so every evaluation pays a host round trip), `odeint` for torchdiffeq. The time and evaluations at a "
        "target error are read off each method's curve by log-log interpolation between the runs that bracket "
        "it ('≤': its cheapest run already beats the target; '≈ … (extrapolated)': GD's first-order fit "
        "carried past its most accurate run; '> t (not reached)': its most accurate run, which took t, stayed "
        "above the target, so the ratio is a lower bound). Ratio: time over the fastest gflow flow solver at "
        "that error.",
        "SciPy and torchdiffeq integrate the plain field `-∇L`; gflow's adaptive solvers use the kink-aware "
        'default (`kinks="auto"`), gflow\'s Heun (fixed steps) and GD the plain field. All compute in float64 '
        "on the CPU.",
        f"Time box: {meta['budget_s']:g} s per method; a method's tighter tolerances are skipped once the next "
        "run is expected to overrun it (5× the last run's time). This run used an earlier rule (stop once a "
        "method has used the box), so single runs reached 3–5 minutes."
        if meta.get("old_time_box")
        else f"Time box: {meta['budget_s']:g} s per method; a method's tighter tolerances are skipped once the next "
        "run is expected to overrun it (5× the last run's time).",
        "torchdiffeq: " + (meta["torch"] if meta["have_torch"] else f"skipped — {meta['torch']}"),
        "The machine was shared with other jobs (2 cores): ratios measured side by side in this run are what count.",
    ]
    return [
        ("Run", run_text),
        (
            "Time to equal error",
            table(["target error", "method", "grad evals", "wall s", "× fastest gflow flow", ""], tte),
        ),
        (
            "All runs",
            table(
                ["method", "tool", "tol / lr / dt", "grad evals", "error", "wall s", "status"],
                [
                    [r["method"], r["tool"], f"{r['setting']:g}", r["grad_evals"], r["error"], r["wall"], r["status"]]
                    for r in rows
                ],
            ),
        ),
        ("Batched: naive vmap vs run_sweep", _batched(meta)),
        ("Method", "\n\n".join(notes)),
    ]
