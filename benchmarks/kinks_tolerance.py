"""Tolerance proportionality through ReLU kinks (issue 16, must-shows 1 and 6): error at t1 over rtol.

    python benchmarks/kinks_tolerance.py [PROBLEM ...]   (default: all four)

Problems (:mod:`gflow.bench.problems`): breast cancer (width 8, t1 = 10), the toy (1000 points,
width 2, t1 = 10), teacher-student (200 points, width 4, t1 = 50), MLP (16, 16) on breast cancer
(t1 = 10). Tsit5 at rtol = atol in 1e-4 ... 1e-10 in the located mode (``LOCATED``) and in the
default mode ``auto`` (for the MLP ``auto`` is the located mode; its ``none`` rows are the plain
field, as before issue 16). Error = ||theta(t1) - theta_ref(t1)|| / ||theta_ref(t1)||.

Reference: Dopri8 at rtol = atol = 1e-12 in the located mode. Checked two ways: (a) against
:func:`gflow.bench.piecewise.piecewise_flow` (NumPy field, SciPy DOP853 at 1e-12, every kink
located by a SciPy event; an implementation that shares no code with gflow's solvers), to t1 or,
where the flow reaches an attractive kink (a sliding mode, which a piecewise integration cannot
follow), to that time, with a located Dopri8 1e-12 solve to the same time; (b) against Tsit5 at
1e-12 in the located mode (another solver, same location code).

Writes ``results/benchmarks/kinks_tolerance.md``/``.csv``/``.png``.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from _report import table, write_csv, write_report  # noqa: E402

import gflow as gf  # noqa: E402
from gflow.bench.piecewise import piecewise_flow  # noqa: E402
from gflow.bench.problems import LOCATED_KINKS, PROBLEMS, flat, make_problem, relative_error  # noqa: E402

OUT = "results/benchmarks"
TOLS = (1e-4, 1e-6, 1e-8, 1e-10)
LOCATED = LOCATED_KINKS
BEFORE = {"toy": "auto", "breast_cancer": "auto", "teacher_student": "auto", "mlp": "none"}
STATS = ("steps", "rejected", "located", "jumps", "grad_evals")
MAX_STEPS = 1 << 18


def solve(p, solver, tol, kinks, t1=None):
    start = time.perf_counter()
    tr = gf.gradient_flow(p.model, p.data, p.loss, t1 or p.t1, solver=solver, rtol=tol, atol=tol, kinks=kinks,
                          n_save=2, max_steps=MAX_STEPS)  # fmt: skip
    return tr, time.perf_counter() - start


def run(name: str, log=print):
    p = make_problem(name)
    mode = LOCATED[name]
    ref, wall = solve(p, "dopri8", 1e-12, mode)
    theta = flat(ref.final)
    info = dict(problem=name, mode=mode, ref_status=ref.status_name, ref_wall=wall,
                **{f"ref_{k}": int(ref.stats[k]) for k in STATS})  # fmt: skip
    log(f"{name}: reference dopri8 1e-12 {mode}: {ref.status_name}, {wall:.0f} s")
    tsit, _ = solve(p, "tsit5", 1e-12, mode)
    info["check_tsit5"] = relative_error(flat(tsit.final), theta)
    pw = piecewise_flow(p.model, p.data, p.loss, p.t1, 1e-12)
    info.update(pw_status=pw.status, pw_t=pw.t, pw_pieces=pw.pieces)
    if pw.t > 0:
        to = ref if pw.t >= p.t1 else solve(p, "dopri8", 1e-12, mode, pw.t)[0]
        info["check_piecewise"] = relative_error(flat(to.final), pw.theta)
    else:
        info["check_piecewise"] = float("nan")
    log(f"  checks: tsit5 1e-12 {info['check_tsit5']:.2g}; piecewise {pw.status} to t = {pw.t:.4g} "
        f"({pw.pieces} pieces) {info['check_piecewise']:.2g}")  # fmt: skip
    rows = []
    modes = (mode, BEFORE[name]) if BEFORE[name] != mode else (mode,)
    for kinks in modes:
        for tol in TOLS:
            tr, wall = solve(p, "tsit5", tol, kinks)
            err = relative_error(flat(tr.final), theta)
            rows.append(dict(problem=name, kinks=kinks, located_mode=kinks == mode, rtol=tol, status=tr.status_name,
                             **{k: int(tr.stats[k]) for k in STATS}, error=err, error_over_rtol=err / tol,
                             wall=wall))  # fmt: skip
            log(f"  {kinks:>17} {tol:.0e} {tr.status_name} "
                + " ".join(f"{k} {rows[-1][k]}" for k in STATS) + f" error/rtol {err / tol:.3g}")  # fmt: skip
    return rows, info


def plot(rows, path):
    from gflow.figures.style import COLUMN_WIDTH, PALETTE, figure, save

    fig, axes = figure(ncols=1, width=COLUMN_WIDTH, aspect=0.9, squeeze=False)
    ax = axes[0][0]
    names = sorted({r["problem"] for r in rows}, key=list(PROBLEMS).index)
    for i, name in enumerate(names):
        rs = [r for r in rows if r["problem"] == name and r["located_mode"] and np.isfinite(r["error"])]
        ax.loglog([r["rtol"] for r in rs], [r["error"] for r in rs], "o-", color=PALETTE[i], ms=3, label=name)
    t = np.array([min(TOLS), max(TOLS)])
    ax.loglog(t, t, "k--", lw=0.8, label="error = rtol (slope 1)")
    ax.loglog(t, 10 * t, "k:", lw=0.8, label="10 rtol")
    ax.set_xlabel("rtol = atol")
    ax.set_ylabel("relative parameter error at t1")
    ax.set_title("located kinks, Tsit5")
    ax.legend(frameon=False, fontsize=6)
    return save(fig, path)


def main(names):
    rows, infos = [], []
    for name in names:
        r, info = run(name)
        rows += r
        infos.append(info)
    write_csv(os.path.join(OUT, "kinks_tolerance.csv"), rows)
    plot(rows, os.path.join(OUT, "kinks_tolerance"))
    ref_rows = [
        [i["problem"], i["mode"], i["ref_status"], *[i[f"ref_{k}"] for k in STATS],
         f"{i['check_tsit5']:.2g}", f"{i['pw_status']} to t = {i['pw_t']:.4g}, {i['pw_pieces']} pieces",
         f"{i['check_piecewise']:.2g}"]
        for i in infos
    ]  # fmt: skip
    refs = table(["problem", "located mode", "status", *STATS, "Tsit5 1e-12 vs it", "piecewise SciPy",
                  "located Dopri8 1e-12 vs piecewise at that t"], ref_rows)  # fmt: skip
    res = table(
        ["problem", "kinks", "rtol", "status", *STATS, "error", "error / rtol", "≤ 10 rtol"],
        [[r["problem"], r["kinks"], f"{r['rtol']:.0e}", r["status"], *[r[k] for k in STATS], f"{r['error']:.3g}",
          f"{r['error_over_rtol']:.3g}", "yes" if r["error"] <= 10 * r["rtol"] else "**no**"] for r in rows],
    )  # fmt: skip
    method = (
        "Tsit5 at rtol = atol, `gf.gradient_flow(..., n_save=2)`, float64. Error: relative parameter distance at t1 "
        "to the reference (Dopri8 at 1e-12 in the located mode). Counts from `Trajectory.stats`: steps (attempted: "
        "accepted + rejected), rejected (error control and location), located (steps rejected to end at a "
        "crossing), jumps (accepted steps that changed the activation pattern), gradient evaluations. Located mode "
        "per problem: "
        + ", ".join(f"{k} `{v}`" for k, v in LOCATED.items())
        + ". The second mode is the default (`auto`: `pin+slide` for shallow nets) or, for the MLP, whose default "
        "is the located mode, the plain field `none` (before issue 16). The piecewise check integrates the flow "
        "of each smooth piece with SciPy's DOP853 and locates every kink with a SciPy event "
        "(`gflow.bench.piecewise`); it cannot follow a sliding mode and stops at the first kink that the new "
        "piece's field drives the pair back into (an attractive kink, or a degenerate one, such as a deep unit "
        "whose inputs at a point are all 0)."
    )
    print(write_report("kinks_tolerance", "Tolerance proportionality through ReLU kinks",
                       [("Reference and its checks", refs), ("Results", res), ("Method", method),
                        ("Figure", "![kinks tolerance](kinks_tolerance.png)")], OUT))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:] or list(PROBLEMS))
