"""Work–precision of the exact flow vs gradient descent (issue 8, item 1).

For each problem of :mod:`gflow.bench.problems` (float64, ``t1 = 10``) and each method:

- GD (``gflow.train``) at learning rates ``lr``: ``t1 / lr`` steps, one gradient each;
- Euler and Heun at fixed steps ``dt`` (``gradient_flow(step_size=dt)``);
- Tsit5, Dopri5, Dopri8 and Kvaerno5 (adaptive, PID) at ``rtol = atol = tol``;

it records the relative parameter error at ``t1`` against a reference (Dopri8 at
``rtol = atol = 1e-13`` in the full run), the gradient evaluations (``stats["grad_evals"]``;
for GD the steps), the relative drift of the conserved quantities over the saved times,
and the wall time of the whole warm call (compiled beforehand: a call with the same
compiled shapes on a 100× shorter horizon, whose time is reported as the first call).
The flow uses ``gradient_flow``'s defaults, ``kinks="auto"``: the Filippov sliding field
and pinning for adaptive steps, the plain field for fixed steps (Euler, Heun) and GD.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from .curves import cost_at, order
from .problems import Problem, flat, make_problem, relative_error
from .report import table, write_csv, write_report

ADAPTIVE = ("tsit5", "dopri5", "dopri8", "kvaerno5")
EXPLICIT_ADAPTIVE = ("tsit5", "dopri5", "dopri8")  # grad_evals exact; kvaerno5 counts stages only
TARGETS = (1e-6, 1e-3)
MAX_STEPS = 1_000_000


@dataclasses.dataclass(frozen=True)
class Grid:
    """What one run covers. ``budget_s``: a method's settings run from cheapest to most
    expensive and stop once the method has used this many seconds (the rest are listed
    as skipped)."""

    problems: tuple[str, ...]
    reference: tuple[str, float]
    lrs: tuple[float, ...]
    fixed: dict
    tols: dict
    budget_s: float
    toy_n: int = 1000
    n_save: int = 21


_DECADES = tuple(10.0**-k for k in range(3, 13))
GRIDS = {
    "smoke": Grid(problems=("toy",), reference=("tsit5", 1e-9), lrs=(1e-1, 1e-2), fixed={"heun": (1e-1,)},
                  tols={"tsit5": (1e-3, 1e-5)}, budget_s=30.0, toy_n=200, n_save=5),
    "quick": Grid(problems=("breast_cancer",), reference=("tsit5", 1e-10), lrs=(1e-1, 1e-2, 1e-3),
                  fixed={"heun": (1e-1, 1e-2)}, tols={"tsit5": (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)}, budget_s=30.0,
                  n_save=11),
    "full": Grid(problems=("breast_cancer", "toy"), reference=("dopri8", 1e-13),
                 lrs=(1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4), fixed={"euler": (1e-1, 1e-2, 1e-3),
                                                                       "heun": (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)},
                 tols={"tsit5": _DECADES, "dopri5": _DECADES, "dopri8": _DECADES, "kvaerno5": (1e-3, 1e-4)},
                 budget_s=120.0),
}


def _flow(problem: Problem, solver, *, tol=1e-3, dt=None, t1=None, n_save=21):
    from ..flow import gradient_flow

    start = time.perf_counter()
    traj = gradient_flow(problem.model, problem.data, problem.loss, t1 or problem.t1, solver=solver, rtol=tol,
                         atol=tol, step_size=dt, n_save=n_save, max_steps=MAX_STEPS)
    return traj, time.perf_counter() - start


def _gd(problem: Problem, lr, n_save):
    from ..discrete import train

    steps = max(1, round(problem.t1 / lr))
    start = time.perf_counter()
    traj = train(problem.model, problem.data, problem.loss, "gd", lr=problem.t1 / steps, steps=steps, n_save=n_save)
    return traj, time.perf_counter() - start


def _row(problem, method, setting, traj, wall, ref, first_call=None) -> dict:
    s = traj.summary()
    return dict(problem=problem.name, method=method, setting=float(setting), grad_evals=int(s["grad_evals"]),
                steps=int(s["steps"]), rejected=int(s["rejected"]), error=relative_error(flat(traj.final), ref),
                drift=float(s["relative_drift"]), wall=float(wall), solve_wall=float(s["wall_time"]),
                status=s["status"], first_call=float("nan") if first_call is None else float(first_call))


def reference(problem: Problem, grid: Grid):
    """The reference solve (compiled first by a short-horizon call, whose time is
    ``info["first_call"]``); returns ``(flat params at t1, info dict)``."""
    solver, tol = grid.reference
    first = _flow(problem, solver, t1=problem.t1 / 100, n_save=grid.n_save)[1]
    traj, wall = _flow(problem, solver, tol=tol, n_save=grid.n_save)
    if traj.status_name != "successful":
        raise RuntimeError(f"the reference solve ({solver}, tol {tol:g}) ended with {traj.status_name}.")
    info = dict(solver=solver, tol=tol, first_call=first, steps=int(traj.stats["steps"]),
                grad_evals=int(traj.stats["grad_evals"]), wall=wall, pattern_changes=int(traj.stats["pattern_changes"]))
    return flat(traj.final), info


def run_problem(problem: Problem, grid: Grid, ref: np.ndarray, log=print,
                compiled=None) -> tuple[list[dict], list[str]]:
    """All methods on one problem: (rows, skipped settings). ``compiled``: ``{solver: first
    call s}`` of solvers already compiled (by the reference solve), reported as their first call."""
    compiled = compiled or {}
    rows, skipped = [], []

    def series(method, settings, call, warm=None):
        used = 0.0
        for k, setting in enumerate(settings):
            if used > grid.budget_s:
                skipped.append(f"{problem.name} {method} {setting:g}")
                continue
            traj, wall, first = call(setting)
            used += wall
            rows.append(_row(problem, method, setting, traj, wall, ref, first if k or warm is None else warm))
            log(f"  {problem.name:>13} {method:>8} {setting:<7g} evals {rows[-1]['grad_evals']:>8} "
                f"error {rows[-1]['error']:.2e} wall {wall:.2f}s {rows[-1]['status']}")

    def gd(lr):  # GD compiles once per number of steps: the first call is the warm-up
        first = _gd(problem, lr, grid.n_save)[1]
        return (*_gd(problem, lr, grid.n_save), first)

    series("gd", grid.lrs, gd)
    for solver, settings in [*grid.fixed.items(), *grid.tols.items()]:
        fixed = solver in grid.fixed
        warm = _flow(problem, solver, dt=settings[0] if fixed else None, t1=problem.t1 / 100, n_save=grid.n_save)[1]
        warm = compiled.get(solver, warm)

        def flow(setting, solver=solver, fixed=fixed):
            return (*_flow(problem, solver, tol=1e-3 if fixed else setting, dt=setting if fixed else None,
                           n_save=grid.n_save), None)

        series(solver, settings, flow, warm)
    return rows, skipped


def headline(rows: list[dict], problem: str) -> list[dict]:
    """Per target error: GD's gradient evaluations (interpolated, or extrapolated at first
    order past its most accurate run) over the best explicit adaptive solver's; and the
    same in wall time."""
    out = []
    mine = [r for r in rows if r["problem"] == problem]
    for target in TARGETS:
        gd = [r for r in mine if r["method"] == "gd"]
        gd_evals = cost_at([r["grad_evals"] for r in gd], [r["error"] for r in gd], target, extrapolate=True)
        gd_wall = cost_at([r["wall"] for r in gd], [r["error"] for r in gd], target, extrapolate=True)
        best, best_wall = None, None
        for solver in EXPLICIT_ADAPTIVE:
            rs = [r for r in mine if r["method"] == solver]
            if not rs:
                continue
            c = cost_at([r["grad_evals"] for r in rs], [r["error"] for r in rs], target)
            w = cost_at([r["wall"] for r in rs], [r["error"] for r in rs], target)
            if best is None or c.cost < best[1].cost:
                best = (solver, c)
            if best_wall is None or w.cost < best_wall[1].cost:
                best_wall = (solver, w)
        if best is None:
            continue
        out.append(dict(problem=problem, target=target, gd_evals=gd_evals, solver=best[0], solver_evals=best[1],
                        ratio=_quotient(gd_evals, best[1]), gd_wall=gd_wall, wall_solver=best_wall[0],
                        solver_wall=best_wall[1], wall_ratio=_quotient(gd_wall, best_wall[1])))
    return out


def plot(rows: list[dict], problems, path: str) -> list[str]:
    """Log-log: error vs gradient evaluations (left) and drift vs evaluations (right), one row per problem."""
    from ..figures.style import COLUMN_WIDTH, PALETTE, figure, save

    fig, axes = figure(ncols=2, nrows=len(problems), width=2 * COLUMN_WIDTH, aspect=0.7, squeeze=False)
    methods = ["gd", "euler", "heun", *ADAPTIVE]
    for i, problem in enumerate(problems):
        for j, key in enumerate(("error", "drift")):
            ax = axes[i][j]
            for m, method in enumerate(methods):
                rs = sorted((r for r in rows if r["problem"] == problem and r["method"] == method
                             and np.isfinite(r[key]) and r[key] > 0), key=lambda r: r["grad_evals"])
                if rs:
                    ax.loglog([r["grad_evals"] for r in rs], [r[key] for r in rs], "o-" if method == "gd" else ".-",
                              color=PALETTE[m % len(PALETTE)], label=method, ms=3)
            if key == "error":
                for target in TARGETS:
                    ax.axhline(target, color="0.6", lw=0.6, ls="--")
            ax.set_xlabel("gradient evaluations")
            ax.set_ylabel("relative parameter error at t1" if key == "error" else "relative drift of δ")
            ax.set_title(f"{problem}: {key}")
    axes[0][0].legend(ncol=2, frameon=False)
    return save(fig, path)


def run(size: str = "full", out_dir: str = "results/benchmarks", log=print) -> dict:
    """Run the grid ``GRIDS[size]``; write ``work_precision.md``/``.csv``/``.png``; return
    ``dict(rows, headline, references, report)`` (the rows and references feed :mod:`peers`)."""
    grid = GRIDS[size]
    rows, skipped, refs, heads = [], [], {}, []
    for name in grid.problems:
        problem = make_problem(name, grid.toy_n)
        log(f"work-precision: {name}, reference {grid.reference[0]} at {grid.reference[1]:g}")
        ref, info = reference(problem, grid)
        refs[name] = dict(info, flat=ref, problem=problem)
        r, s = run_problem(problem, grid, ref, log, {info["solver"]: info["first_call"]})
        rows += r
        skipped += s
        heads += headline(rows, name)
    write_csv(os.path.join(out_dir, "work_precision.csv"), rows)
    figure = plot(rows, grid.problems, os.path.join(out_dir, "work_precision"))
    path = write_report("work_precision", "Work–precision: exact flow vs gradient descent",
                        _sections(size, grid, rows, skipped, refs, heads), out_dir)
    return dict(rows=rows, headline=heads, references=refs, report=path, figure=figure)


def _sections(size, grid, rows, skipped, refs, heads):
    problems = "; ".join(f"`{n}`: (n, d, l) = {v['problem'].shape}, loss {v['problem'].loss}"
                         for n, v in refs.items())
    run_text = (f"Size `{size}`. Problems: {problems}; t1 = 10, float64. Reference: "
                + "; ".join(f"{n}: {v['solver']} at rtol = atol = {v['tol']:g} ({v['steps']} steps, "
                            f"{v['grad_evals']} gradient evaluations, {v['wall']:.1f} s, "
                            f"{v['pattern_changes']} activation-pattern changes between saved times)"
                            for n, v in refs.items()) + ".")
    head = table(["problem", "target error", "GD grad evals", "best adaptive", "its grad evals", "GD / adaptive",
                  "GD wall s", "fastest adaptive", "its wall s", "GD / adaptive (time)"],
                 [[h["problem"], f"{h['target']:g}", str(h["gd_evals"]), h["solver"], str(h["solver_evals"]),
                   _ratio(h["gd_evals"], h["solver_evals"]), str(h["gd_wall"]), h["wall_solver"],
                   str(h["solver_wall"]), _ratio(h["gd_wall"], h["solver_wall"])] for h in heads])
    orders = table(["problem", "method", "observed order (error ~ evals^-p, 3 most accurate runs)"],
                   [[p, m, order([r["grad_evals"] for r in rows if r["problem"] == p and r["method"] == m],
                                 [r["error"] for r in rows if r["problem"] == p and r["method"] == m])]
                    for p in grid.problems for m in ["gd", *grid.fixed, *grid.tols]
                    if any(r["problem"] == p and r["method"] == m for r in rows)])
    body = table(["problem", "method", "lr / dt / tol", "grad evals", "steps", "rejected", "error", "drift",
                  "wall s (warm)", "solve s", "status"],
                 [[r["problem"], r["method"], f"{r['setting']:g}", r["grad_evals"], r["steps"], r["rejected"],
                   r["error"], r["drift"], r["wall"], r["solve_wall"], r["status"]] for r in rows])
    compile_rows = [[r["problem"], r["method"], f"{r['setting']:g}", r["first_call"], r["wall"]]
                    for r in rows if np.isfinite(r["first_call"])]
    compiles = table(["problem", "method", "lr / dt / tol", "first call s (compile + short run)", "warm call s"],
                     compile_rows)
    method = (
        "Error: `||θ(t1) − θ_ref(t1)|| / ||θ_ref(t1)||` over all parameters. Gradient evaluations: "
        "`Trajectory.stats['grad_evals']` (explicit Runge–Kutta: stages per attempted step, first-same-as-last "
        "counted once; Kvaerno5: stage evaluations only, not the Newton iterations and Jacobians inside them, so "
        "its count is a lower bound and it is left out of the headline); GD: one per step, lr = t1 / steps. "
        "Drift: `Trajectory.drift` relative, max over the saved times. Wall: the whole warm call "
        "(`gradient_flow`/`train`, validation and kink set-up included), after a call on the same compiled "
        "shapes; 'solve s' is the compiled solve alone. The flow runs with `gradient_flow`'s defaults "
        "(`kinks=\"auto\"`: Filippov sliding field + pinning for adaptive steps — about 2× the cost of a plain "
        "gradient per evaluation — and the plain field for fixed steps, whose chatter the tolerance bands do not "
        "bound, README 'ReLU kinks'); GD uses the plain gradient.\n\n"
        "Headline: the cost at a target error is read off each method's curve by linear interpolation in "
        "(log error, log cost) between the two runs that bracket the target (the cheapest crossing); '≤' marks "
        "a method whose cheapest run already beats the target (the ratio is then a lower bound); for GD past "
        "its most accurate run, '≈ … (extrapolated)' carries the least-squares log-log slope of its 3 most "
        "accurate runs (observed order ≈ 1, as for Euler) to the target. Best adaptive: the cheapest of "
        "Tsit5/Dopri5/Dopri8 at that error.\n\n"
        "ReLU kinks: the gradient jumps where a pre-activation crosses zero, so every method's local error at a "
        "crossing is at best first order in the step that straddles it. Adaptive solvers shrink the step at "
        "each crossing (the rejected steps), so the cost of high accuracy grows with the number of crossings; "
        "fixed-step methods (GD, Euler, Heun) stay first order. The machine was shared with other jobs "
        "(2 cores): compare times within this run, not across runs.")
    sections = [("Run", run_text), ("Headline", head), ("Observed orders", orders), ("All runs", body),
                ("Compile (first call of each compiled configuration)", compiles), ("Method", method),
                ("Figure", "![work-precision](work_precision.png)")]
    if skipped:
        sections.insert(4, ("Skipped (time box of %g s per method)" % grid.budget_s, ", ".join(skipped)))
    return sections


def _quotient(a, b) -> float:
    """``a.cost / b.cost``, or NaN unless both were reached."""
    return a.cost / b.cost if np.isfinite(a.cost) and np.isfinite(b.cost) else float("nan")


def _ratio(a, b) -> str:
    if not np.isfinite(a.cost):
        return "GD did not reach it"
    if not np.isfinite(b.cost):
        return "adaptive did not reach it"
    r = a.cost / b.cost
    bound = "≥ " if b.how == "at most" else ""
    return f"{bound}{r:.3g}{' (extrapolated)' if a.how == 'extrapolated' else ''}"
