"""Work–precision of the exact flow vs gradient descent (issue 8, item 1).

For each problem of :mod:`gflow.bench.problems` (float64, ``t1 = 10``) and each method:

- GD (``gflow.train``) at learning rates ``lr``: ``t1 / lr`` steps, one gradient each;
- Euler and Heun at fixed steps ``dt`` (``gradient_flow(step_size=dt)``);
- Tsit5, Dopri5, Dopri8 and Kvaerno5 (adaptive, PID) at ``rtol = atol = tol``;

- with ``Grid.located``, the same adaptive solvers with located activation changes
  (method ``"<solver>+locate"``, kink mode :data:`gflow.bench.problems.LOCATED_KINKS`);

it records the relative parameter error at ``t1`` against a reference (in the full run Dopri8
at ``rtol = atol = 1e-12`` in the located mode, which ends within 5e-12 of an independent
piecewise SciPy integration on the toy, ``benchmarks/kinks_tolerance.py``), the gradient
evaluations (``stats["grad_evals"]``; for GD the steps), the relative drift of the conserved
quantities over the saved times, and the wall time of the whole warm call (compiled beforehand:
a call with the same compiled shapes on a 100× shorter horizon, whose time is reported as the
first call). The flow uses ``gradient_flow``'s defaults, ``kinks="auto"``, unless located: the
Filippov sliding field and pinning for adaptive steps, the plain field for fixed steps (Euler,
Heun) and GD.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from ..discrete import train
from ..flow.solve import gradient_flow
from ..sweep.store import environment
from .problems import LOCATED_KINKS, Problem, flat, make_problem, relative_error
from .report import runtime, write_csv, write_json
from .timing import TimeBox
from .work_precision_report import render

MAX_STEPS = 1_000_000


@dataclasses.dataclass(frozen=True)
class Grid:
    """What one run covers. ``budget_s``: a method's settings run from cheapest to most
    expensive within this time box (:class:`gflow.bench.timing.TimeBox`; the rest are
    listed as skipped). ``reference``: ``(solver, tol)`` or ``(solver, tol, kinks)``, with
    ``kinks="located"`` for the problem's located mode; ``located``: also run the adaptive
    solvers of ``tols`` located."""

    problems: tuple[str, ...]
    reference: tuple
    lrs: tuple[float, ...]
    fixed: dict
    tols: dict
    budget_s: float
    toy_n: int = 1000
    n_save: int = 21
    located: bool = False


_DECADES = tuple(10.0**-k for k in range(3, 13))
GRIDS = {
    "smoke": Grid(
        problems=("toy",),
        reference=("tsit5", 1e-9),
        lrs=(1e-1, 1e-2),
        fixed={"heun": (1e-1,)},
        tols={"tsit5": (1e-3, 1e-5)},
        budget_s=30.0,
        toy_n=200,
        n_save=5,
    ),
    "quick": Grid(
        problems=("breast_cancer",),
        reference=("tsit5", 1e-10),
        lrs=(1e-1, 1e-2, 1e-3),
        fixed={"heun": (1e-1, 1e-2)},
        tols={"tsit5": (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)},
        budget_s=30.0,
        n_save=11,
    ),
    "full": Grid(
        problems=("breast_cancer", "toy"),
        reference=("dopri8", 1e-12, "located"),
        lrs=(1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5),
        fixed={"euler": (1e-1, 1e-2, 1e-3), "heun": (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)},
        tols={"tsit5": _DECADES[:-1], "dopri5": _DECADES[:-1], "dopri8": _DECADES[:-1], "kvaerno5": (1e-3, 1e-4)},
        budget_s=120.0,
        located=True,
    ),
}


def _kinks(problem: Problem, kinks: str) -> str:
    return LOCATED_KINKS[problem.name] if kinks == "located" else kinks


def _flow(problem: Problem, solver, *, tol=1e-3, dt=None, t1=None, n_save=21, kinks="auto"):
    start = time.perf_counter()
    traj = gradient_flow(
        problem.model,
        problem.data,
        problem.loss,
        t1 or problem.t1,
        solver=solver,
        rtol=tol,
        atol=tol,
        step_size=dt,
        n_save=n_save,
        max_steps=MAX_STEPS,
        kinks=_kinks(problem, kinks),
    )
    return traj, time.perf_counter() - start


def _gd(problem: Problem, lr, n_save):
    steps = max(1, round(problem.t1 / lr))
    start = time.perf_counter()
    traj = train(problem.model, problem.data, problem.loss, "gd", lr=problem.t1 / steps, steps=steps, n_save=n_save)
    return traj, time.perf_counter() - start


def _row(problem, method, setting, traj, wall, ref, first_call=None) -> dict:
    s = traj.summary()
    return dict(
        problem=problem.name,
        method=method,
        setting=float(setting),
        grad_evals=int(s["grad_evals"]),
        steps=int(s["steps"]),
        rejected=int(s["rejected"]),
        error=relative_error(flat(traj.final), ref),
        drift=float(s["relative_drift"]),
        wall=float(wall),
        solve_wall=float(s["wall_time"]),
        status=s["status"],
        first_call=float("nan") if first_call is None else float(first_call),
    )


def reference(problem: Problem, grid: Grid):
    """The reference solve (compiled first by a short-horizon call, whose time is
    ``info["first_call"]``); returns ``(flat params at t1, info dict)``."""
    solver, tol = str(grid.reference[0]), float(grid.reference[1])
    kinks = str(grid.reference[2]) if len(grid.reference) > 2 else "auto"
    first = _flow(problem, solver, t1=problem.t1 / 100, n_save=grid.n_save, kinks=kinks)[1]
    traj, wall = _flow(problem, solver, tol=tol, n_save=grid.n_save, kinks=kinks)
    if traj.status_name != "successful":
        raise RuntimeError(f"the reference solve ({solver}, tol {tol:g}) ended with {traj.status_name}.")
    info = dict(
        solver=solver,
        tol=tol,
        kinks=_kinks(problem, kinks),
        first_call=first,
        steps=int(traj.stats["steps"]),
        grad_evals=int(traj.stats["grad_evals"]),
        wall=wall,
        pattern_changes=int(traj.stats["pattern_changes"]),
    )
    return flat(traj.final), info


def run_problem(
    problem: Problem, grid: Grid, ref: np.ndarray, log=print, compiled=None
) -> tuple[list[dict], list[str]]:
    """All methods on one problem: (rows, skipped settings). ``compiled``: ``{solver: first
    call s}`` of solvers already compiled (by the reference solve), reported as their first call."""
    compiled = compiled or {}
    rows, skipped = [], []

    def series(method, settings, call, warm=None):
        box = TimeBox(grid.budget_s)
        for k, setting in enumerate(settings):
            if not box.allows():
                skipped.append(f"{problem.name} {method} {setting:g}")
                continue
            traj, wall, first = call(setting)
            box.add(wall)
            rows.append(_row(problem, method, setting, traj, wall, ref, first if k or warm is None else warm))
            log(
                f"  {problem.name:>13} {method:>8} {setting:<7g} evals {rows[-1]['grad_evals']:>8} "
                f"error {rows[-1]['error']:.2e} wall {wall:.2f}s {rows[-1]['status']}"
            )

    def gd(lr):  # GD compiles once per number of steps: the first call is the warm-up
        first = _gd(problem, lr, grid.n_save)[1]
        return (*_gd(problem, lr, grid.n_save), first)

    series("gd", grid.lrs, gd)
    located = [(s, t, "located") for s, t in grid.tols.items() if grid.located and s != "kvaerno5"]
    for solver, settings, kinks in [*((s, t, "auto") for s, t in [*grid.fixed.items(), *grid.tols.items()]), *located]:
        fixed = solver in grid.fixed
        dt0 = settings[0] if fixed else None
        warm = _flow(problem, solver, dt=dt0, t1=problem.t1 / 100, n_save=grid.n_save, kinks=kinks)[1]
        method = solver if kinks == "auto" else f"{solver}+locate"
        warm = compiled.get(method, warm)

        def flow(setting, solver=solver, fixed=fixed, kinks=kinks):
            tol, dt = (1e-3, setting) if fixed else (setting, None)
            return (*_flow(problem, solver, tol=tol, dt=dt, n_save=grid.n_save, kinks=kinks), None)

        series(method, settings, flow, warm)
    return rows, skipped


def run(size: str = "full", out_dir: str = "results/benchmarks", log=print) -> dict:
    """Run the grid ``GRIDS[size]``; write the rows (``work_precision.csv``) and the run's
    metadata (``work_precision.json``: references, environment), then the report and figure
    from those files (:func:`gflow.bench.work_precision_report.render`). Returns
    ``dict(rows, headline, references, report, figure)`` (rows and references feed :mod:`peers`)."""
    grid = GRIDS[size]
    rows, skipped, refs = [], [], {}
    for name in grid.problems:
        problem = make_problem(name, grid.toy_n)
        log(f"work-precision: {name}, reference {grid.reference[0]} at {grid.reference[1]:g}")
        ref, info = reference(problem, grid)
        refs[name] = dict(info, flat=ref, problem=problem)
        method = f"{info['solver']}{'+locate' if info['kinks'] != 'auto' else ''}"
        r, s = run_problem(problem, grid, ref, log, {method: info["first_call"]})
        rows += r
        skipped += s
    write_csv(os.path.join(out_dir, "work_precision.csv"), rows)
    meta = dict(
        size=size,
        budget_s=grid.budget_s,
        skipped=skipped,
        environment=dict(environment(), **runtime()),
        references={
            n: {k: v for k, v in info.items() if k not in ("flat", "problem")}
            | dict(shape=list(info["problem"].shape), loss=info["problem"].loss)
            for n, info in refs.items()
        },
    )
    write_json(os.path.join(out_dir, "work_precision.json"), meta)
    path, figure, heads = render(out_dir)
    return dict(rows=rows, headline=heads, references=refs, report=path, figure=figure)
