"""The work–precision report, drawn from a run's files only (``work_precision.csv`` and
``work_precision.json``), never by re-running: headline ratios, tables and the figure."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from ..figures.style import COLUMN_WIDTH, PALETTE, figure, save
from .curves import cost_at, order
from .report import table, write_report

LOCATED = ("tsit5+locate", "dopri5+locate", "dopri8+locate")  # located activation changes (issue 16)
ADAPTIVE = ("tsit5", "dopri5", "dopri8", "kvaerno5", *LOCATED)
EXPLICIT_ADAPTIVE = ("tsit5", "dopri5", "dopri8", *LOCATED)  # grad_evals exact; kvaerno5 counts stages only
FLOW_SOLVERS = ("euler", "heun", *EXPLICIT_ADAPTIVE)
TARGETS = (1e-6, 1e-8, 1e-3)
_INT = ("grad_evals", "steps", "rejected")
_FLOAT = ("setting", "error", "drift", "wall", "solve_wall", "first_call")


def read_rows(path: str) -> list[dict]:
    """The rows of ``work_precision.csv`` with numbers as numbers."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update({k: int(r[k]) for k in _INT}, **{k: float(r[k]) for k in _FLOAT})
    return rows


def headline(rows: list[dict], problem: str, solvers=EXPLICIT_ADAPTIVE) -> list[dict]:
    """Per target error: GD's gradient evaluations (interpolated, or extrapolated at first
    order past its most accurate run) over those of the cheapest of ``solvers`` at that
    error; and the same in wall time."""
    out = []
    mine = [r for r in rows if r["problem"] == problem]
    for target in TARGETS:
        gd = [r for r in mine if r["method"] == "gd"]
        gd_evals = cost_at([r["grad_evals"] for r in gd], [r["error"] for r in gd], target, extrapolate=True)
        gd_wall = cost_at([r["wall"] for r in gd], [r["error"] for r in gd], target, extrapolate=True)
        best = {}
        for solver in solvers:
            rs = [r for r in mine if r["method"] == solver]
            for key in ("grad_evals", "wall") if rs else ():
                c = cost_at([r[key] for r in rs], [r["error"] for r in rs], target)
                if key not in best or c.cost < best[key][1].cost:
                    best[key] = (solver, c)
        if len(best) < 2:
            continue
        out.append(
            dict(
                problem=problem,
                target=target,
                gd_evals=gd_evals,
                solver=best["grad_evals"][0],
                solver_evals=best["grad_evals"][1],
                ratio=_quotient(gd_evals, best["grad_evals"][1]),
                gd_wall=gd_wall,
                wall_solver=best["wall"][0],
                solver_wall=best["wall"][1],
                wall_ratio=_quotient(gd_wall, best["wall"][1]),
            )
        )
    return out


def _quotient(a, b) -> float:
    """``a.cost / b.cost``, or NaN unless both were reached."""
    return a.cost / b.cost if np.isfinite(a.cost) and np.isfinite(b.cost) else float("nan")


def _ratio(a, b) -> str:
    if not np.isfinite(a.cost):
        return "GD did not reach it"
    if not np.isfinite(b.cost):
        return "not reached"
    bound = "≥ " if b.how == "at most" else ""
    return f"{bound}{a.cost / b.cost:.3g}{' (extrapolated)' if a.how == 'extrapolated' else ''}"


def _style(method: str) -> dict:
    """A located solver has its plain solver's colour, solid with squares; plain adaptive solvers dotted."""
    base = method.removesuffix("+locate")
    color = PALETTE[_METHODS.index(base) % len(PALETTE)]
    if method in LOCATED:
        return dict(fmt="s-", color=color, ms=2.5)
    return dict(fmt="o-" if method == "gd" else (".:" if method in ADAPTIVE else ".-"), color=color, ms=3)


_METHODS = ["gd", "euler", "heun", "tsit5", "dopri5", "dopri8", "kvaerno5"]


def plot(rows: list[dict], problems, path: str) -> list[str]:
    """Log-log, one row per problem: error vs gradient evaluations (left), drift vs evaluations
    (middle), and the adaptive solvers' error vs their tolerance with a slope-1 guide (right)."""
    fig, axes = figure(ncols=3, nrows=len(problems), width=3 * COLUMN_WIDTH, aspect=0.7, squeeze=False)
    methods = ["gd", "euler", "heun", *ADAPTIVE]
    for i, problem in enumerate(problems):
        ax = axes[i][2]
        for method in methods:
            rs = sorted(
                (
                    r
                    for r in rows
                    if r["problem"] == problem and r["method"] == method and method in ADAPTIVE and r["error"] > 0
                ),
                key=lambda r: r["setting"],
            )
            if rs:
                st = _style(method)
                ax.loglog([r["setting"] for r in rs], [r["error"] for r in rs], st.pop("fmt"), label=method, **st)
        tols = [r["setting"] for r in rows if r["problem"] == problem and r["method"] in ADAPTIVE]
        if tols:
            guide = np.array([min(tols), max(tols)])
            ax.loglog(guide, guide, "k--", lw=0.8, label="error = rtol (slope 1)")
            ax.loglog(guide, 10 * guide, "k:", lw=0.8, label="10 rtol")
        ax.set_xlabel("rtol = atol")
        ax.set_ylabel("relative parameter error at t1")
        ax.set_title(f"{problem}: error vs tolerance")
        if i == 0:
            ax.legend(ncol=2, frameon=False, fontsize=5)
        for j, key in enumerate(("error", "drift")):
            ax = axes[i][j]
            for method in methods:
                rs = sorted(
                    (
                        r
                        for r in rows
                        if r["problem"] == problem and r["method"] == method and np.isfinite(r[key]) and r[key] > 0
                    ),
                    key=lambda r: r["grad_evals"],
                )
                if rs:
                    st = _style(method)
                    ax.loglog([r["grad_evals"] for r in rs], [r[key] for r in rs], st.pop("fmt"), label=method, **st)
            if key == "error":
                for target in TARGETS:
                    ax.axhline(target, color="0.6", lw=0.6, ls="--")
            ax.set_xlabel("gradient evaluations")
            ax.set_ylabel("relative parameter error at t1" if key == "error" else "relative drift of δ")
            ax.set_title(f"{problem}: {key}")
    axes[0][0].legend(ncol=2, frameon=False)
    return save(fig, path)


def render(out_dir: str) -> tuple[str, list[str], list[dict]]:
    """Write ``work_precision.md`` and ``.png``/``.pdf`` from the run's CSV and JSON in
    ``out_dir``; returns ``(report path, figure paths, headline rows)``."""
    rows = read_rows(os.path.join(out_dir, "work_precision.csv"))
    with open(os.path.join(out_dir, "work_precision.json")) as f:
        meta = json.load(f)
    problems = list(meta["references"])
    heads = [h for p in problems for h in headline(rows, p)]
    figure = plot(rows, problems, os.path.join(out_dir, "work_precision"))
    path = write_report(
        "work_precision",
        "Work–precision: exact flow vs gradient descent",
        _sections(meta, rows, heads),
        out_dir,
        env=meta["environment"],
    )
    return path, figure, heads


def _headline_table(heads, label) -> str:
    return table(
        [
            "problem",
            "target error",
            "GD grad evals",
            label,
            "its grad evals",
            "GD / it",
            "GD wall s",
            "fastest",
            "its wall s",
            "GD / it (time)",
        ],
        [
            [
                h["problem"],
                f"{h['target']:g}",
                str(h["gd_evals"]),
                h["solver"],
                str(h["solver_evals"]),
                _ratio(h["gd_evals"], h["solver_evals"]),
                str(h["gd_wall"]),
                h["wall_solver"],
                str(h["solver_wall"]),
                _ratio(h["gd_wall"], h["solver_wall"]),
            ]
            for h in heads
        ],
    )


def _tolerance_table(rows, problems) -> str:
    """Adaptive solvers: error at t1 against the tolerance asked for."""
    solvers = [s for s in ADAPTIVE if any(r["method"] == s for r in rows)]
    tols = sorted({r["setting"] for r in rows if r["method"] in solvers}, reverse=True)
    by = {(r["problem"], r["method"], r["setting"]): r["error"] for r in rows}
    return table(
        ["problem", "rtol = atol", *solvers],
        [[p, f"{t:g}", *[by.get((p, s, t), "") for s in solvers]] for p in problems for t in tols],
    )


def _sections(meta, rows, heads):
    refs = meta["references"]
    problems = list(refs)
    run_text = (
        f"Size `{meta['size']}`. Problems: "
        + "; ".join(f"`{n}`: (n, d, l) = {tuple(v['shape'])}, loss {v['loss']}" for n, v in refs.items())
        + "; t1 = 10, float64. Reference: "
        + "; ".join(
            f"{n}: {v['solver']} at rtol = atol = {v['tol']:g} ({v['steps']} steps, "
            f"{v['grad_evals']} gradient evaluations, {v['wall']:.1f} s, "
            f"{v['pattern_changes']} activation-pattern changes between saved times)"
            for n, v in refs.items()
        )
        + "."
    )
    checks = [
        f"{r['problem']}: {r['method']} at {r['setting']:g} is {r['error']:.1e} from it"
        for r in rows
        if r["method"] in EXPLICIT_ADAPTIVE
        and r["setting"]
        == min(x["setting"] for x in rows if x["method"] == r["method"] and x["problem"] == r["problem"])
    ]
    if checks:
        run_text += " Reference check, the tightest run of each solver: " + "; ".join(checks) + "."
    overall = [h for p in problems for h in headline(rows, p, FLOW_SOLVERS)]
    head = (
        _headline_table(heads, "best adaptive")
        + "\n\nThe same against every flow solver with exact evaluation counts (fixed-step Euler and Heun "
        "included, Kvaerno5 excluded):\n\n" + _headline_table(overall, "best flow solver")
    )
    fixed = [m for m in ("gd", "euler", "heun") if any(r["method"] == m for r in rows)]
    orders = table(
        ["problem", "method", "observed order p (error ~ evals^-p, 3 most accurate runs)"],
        [
            [
                p,
                m,
                order(
                    [r["grad_evals"] for r in rows if r["problem"] == p and r["method"] == m],
                    [r["error"] for r in rows if r["problem"] == p and r["method"] == m],
                ),
            ]
            for p in problems
            for m in fixed
        ],
    )
    body = table(
        [
            "problem",
            "method",
            "lr / dt / tol",
            "grad evals",
            "steps",
            "rejected",
            "error",
            "drift",
            "wall s (warm)",
            "solve s",
            "status",
        ],
        [
            [
                r["problem"],
                r["method"],
                f"{r['setting']:g}",
                r["grad_evals"],
                r["steps"],
                r["rejected"],
                r["error"],
                r["drift"],
                r["wall"],
                r["solve_wall"],
                r["status"],
            ]
            for r in rows
        ],
    )
    compiles = table(
        ["problem", "method", "lr / dt / tol", "first call s", "warm call s", "≈ compile s"],
        [
            [
                r["problem"],
                r["method"],
                f"{r['setting']:g}",
                r["first_call"],
                r["wall"],
                r["first_call"] - (r["wall"] if r["method"] == "gd" else 0.0),
            ]
            for r in rows
            if np.isfinite(r["first_call"])
        ],
    )
    compiles += (
        "\n\nFirst call: GD compiles once per number of steps, and its first call runs the whole "
        "trajectory (compile ≈ first − warm); a flow solver compiles once for all tolerances and step "
        "sizes, and its first call is a 100× shorter horizon (compile ≈ first call). The reference "
        "solver's first call is the reference's."
    )
    sections = [
        ("Run", run_text),
        ("Headline", head),
        ("Fixed-step methods: observed order", orders),
        ("Adaptive solvers: error at t1 vs tolerance", _tolerance_table(rows, problems)),
        ("All runs", body),
        ("Compile (first call of each compiled configuration)", compiles),
        ("Method", _METHOD),
        ("Figure", "![work-precision](work_precision.png)"),
    ]
    if meta["skipped"]:
        sections.insert(4, (f"Skipped (time box of {meta['budget_s']:g} s per method)", ", ".join(meta["skipped"])))
    return sections


_METHOD = (
    "Error: `||θ(t1) − θ_ref(t1)|| / ||θ_ref(t1)||` over all parameters. Gradient evaluations: "
    "`Trajectory.stats['grad_evals']` (explicit Runge–Kutta: stages per attempted step, first-same-as-last counted "
    "once; Kvaerno5: stage evaluations only, not the Newton iterations and Jacobians inside them, so its count is a "
    "lower bound and it is left out of the headline); GD: one per step, lr = t1 / steps. Drift: `Trajectory.drift` "
    "relative, max over the saved times. Wall: the whole warm call (`gradient_flow`/`train`, validation and kink "
    "set-up included), after a call on the same compiled shapes; 'solve s' is the compiled solve alone. The flow "
    'runs with `gradient_flow`\'s defaults (`kinks="auto"`: Filippov sliding field + pinning for adaptive steps — '
    "about 2× the cost of a plain gradient per evaluation — and the plain field for fixed steps, whose chatter the "
    "tolerance bands do not bound, README 'ReLU kinks'); GD uses the plain gradient.\n\n"
    "Headline: the cost at a target error is read off each method's curve by linear interpolation in (log error, "
    "log cost) between the two runs that bracket the target (the cheapest crossing); '≤' marks a method whose "
    "cheapest run already beats the target (the ratio is then a lower bound); for GD past its most accurate run, "
    "'≈ … (extrapolated)' carries the least-squares log-log slope of its 3 most accurate runs (observed order ≈ 1, "
    "as for Euler) to the target. Euler with step dt is GD with lr = dt (their rows agree). Errors near the "
    "reference check's level (Run) measure agreement with the reference, not accuracy. The reference (full run) "
    "is located Dopri8 at 1e-12; benchmarks/kinks_tolerance.py checks it against an independent piecewise SciPy "
    "integration (toy: 4.5e-12 at t1; breast cancer: 3.5e-12 up to t = 2.7, where a sliding mode begins).\n\n"
    "ReLU kinks: the gradient jumps where a pre-activation crosses zero (hundreds of crossings on [0, 10] here). "
    "Without location an embedded error estimate accepts a step across a jump once its error is about the "
    "tolerance, so each crossing leaves an error of the order of the tolerance and the global error is far above "
    "the tolerance (the error-vs-tolerance table) until the tolerance is tiny; high-order solvers do not reach "
    "their order. Located solvers end their steps at the crossings whose jump the tolerance does not absorb. "
    "Fixed-step methods are first order through the jumps (GD, Euler; Heun too on breast cancer). The machine was "
    "shared with other jobs (2 cores): compare times within this run, not across runs."
)
