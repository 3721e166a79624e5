"""Where flows end: ``t1 = inf`` flows on Gaussian populations, their end points classified, by effective component.

Two problems (no bias, MSE, ``x ~ N(0, I_2)``, closed-form population loss,
:mod:`gflow.population`): the toy population (teacher ``relu(x1) - relu(x2)``, student width
2) and a teacher–student population (a Kaiming teacher of width 3, the first from
``teacher_seed`` with every ``|a_j| ||u_j|| >= 0.5`` and kink lines at least 30 degrees apart:
a weak or nearly parallel teacher neuron makes plateaus that last ``t ~ 10^4`` and minima
that are hard to tell apart; student width 3). Every Kaiming initialization is relocated (Prop. 4) to ``|delta_k| = 1``
with a random sign per neuron (``delta_signs = "random"``) and random output signs, so every
number ``n_-`` of pathological neurons and every effective component occurs.

Each flow runs to convergence (``t1 = inf``: ``||grad L|| <= gtol`` or ``t_max``), then its end
point is Newton-polished and classified from the Hessian (:func:`gflow.classify_endpoint`):
global minimum, spurious local minimum, strict saddle (or not critical). The component of a
run is ``(n_-, m)``: ``n_-`` pathological neurons, ``m`` of them with a negative output
weight (docs/theory.md §1: the effective component; the exact flow never leaves it). The
theory's reachability predicate (``reachable`` column) says whether the component holds the
teacher's function at all; no run of an unreachable component can end at a global minimum.

A run whose pathological neuron collapses (``w_k -> 0`` in finite time, where the population
loss is not differentiable) cannot be continued past the collapse: gflow pins collapsed
neurons on finite data sets only (:mod:`gflow.flow.pinning`), so the flow chatters at
``w_k = 0`` until ``max_steps`` and the run is reported ``not_critical`` with
``n_collapsed > 0`` (the census counts them).

The figure: per problem, (a) the fractions of end-point classes per component, (b) the
polished loss of every run per component, coloured by class.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.patches import Patch

from ..sweep.config import SweepConfig
from . import _common
from .style import PALETTE, figure

DESCRIPTION = "Where flows end: t1 = inf on toy and teacher-student populations, end points classified by component"
NAME = "endpoints"
PROBLEMS = ("toy_population", "teacher_student_population")
KIND_ORDER = ("global_min", "local_min", "saddle", "not_critical")
KIND_LABEL = {
    "global_min": "global minimum",
    "local_min": "spurious minimum",
    "saddle": "saddle",
    "not_critical": "not critical",
}
KIND_COLOR = {"global_min": PALETTE[2], "local_min": PALETTE[1], "saddle": PALETTE[0], "not_critical": PALETTE[7]}
LOSS_FLOOR = 1e-16  # polished global minima sit at |L| ~ 1e-16 (rounding); drawn at this floor


def config(problem: str, quick: bool = False, n_inits: int | None = None) -> SweepConfig:
    """The sweep of ``problem`` (one of :data:`PROBLEMS`): 10^3 inits (quick: 16), ``t1 = inf``,
    Tsit5 at rtol = atol = 1e-8 (``gtol`` 1e-6), then Newton polish and classification.

    ``max_steps = 20000``: converging runs take at most a few thousand steps; a run whose
    pathological neuron collapses (``w_k -> 0``, where the population loss is not
    differentiable) chatters there, since population flows have no pinning of collapsed
    neurons yet, and is cut off: it ends ``not_critical`` with ``n_collapsed > 0``."""
    n = n_inits if n_inits is not None else (16 if quick else 1000)
    width = 2 if problem == "toy_population" else 3
    return SweepConfig(
        name=f"{NAME}-{problem}",
        data=problem,
        width=width,
        teacher_width=3,
        teacher_min_strength=0.5,
        teacher_min_angle=30.0,
        delta=1.0,
        delta_signs="random",
        signs="random",
        t1=float("inf"),
        rtol=1e-8,
        atol=1e-8,
        max_steps=20_000,
        n_inits=n,
        slots=16,
        chunk_size=min(n, 250),
        n_save=11,
    )


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Run (or reuse) both sweeps into ``out_dir/<problem>``, store the census of each in
    ``out_dir/endpoints.json`` (:func:`census`, plus run counts and statuses), then draw."""
    _common.setup()
    scalars, params = {}, {}
    for problem in PROBLEMS:
        cfg = config(problem, quick)
        rows = _common.sweep(cfg, os.path.join(out_dir, problem))
        names, counts = np.unique(rows["status"], return_counts=True)
        unreachable = ~rows["reachable"].astype(bool)
        scalars[problem] = dict(
            n_runs=len(rows["index"]),
            kinds={k: int(np.sum(rows["endpoint"] == k)) for k in KIND_ORDER},
            unreachable=int(unreachable.sum()),
            unreachable_global=int(np.sum(unreachable & (rows["endpoint"] == "global_min"))),
            label_changes=int(np.sum(rows["effective_label_start"] != rows["effective_label_end"])),
            not_critical_collapsed=int(np.sum((rows["endpoint"] == "not_critical") & (rows["n_collapsed"] > 0))),
            statuses=dict(zip(names.tolist(), counts.tolist(), strict=True)),
            components=census(rows),
        )
        params[problem] = cfg.to_dict()
    _common.save_result(out_dir, NAME, {}, params, scalars)
    return draw(out_dir)


def components(rows: dict) -> list[tuple[int, int]]:
    """The components ``(n_-, m)`` present in ``rows``, sorted."""
    pairs = zip(rows["n_pathological"].tolist(), rows["effective_label_start"].tolist(), strict=True)
    return sorted({(int(a), int(b)) for a, b in pairs})


def census(rows: dict, digits: int = 4) -> list[dict]:
    """Per component ``(n_-, m)``: runs, the predicted reachability, the count of each end-point
    class, the distinct polished losses of each class (rounded to ``digits`` significant
    digits; global minima as ``0``) with their counts, whether every run kept its component
    (``effective_label_end == effective_label_start``), how many not-critical runs have a
    collapsed neuron (``not_critical_collapsed``), and how many minima obey the flat-direction
    rule ``n_zero = n_units + n_duplicate`` (docs/theory.md, end points)."""
    out = []
    for n_path, m in components(rows):
        sel = (rows["n_pathological"] == n_path) & (rows["effective_label_start"] == m)
        kinds = rows["endpoint"][sel]
        loss = rows["endpoint_loss"][sel]
        reach = set(rows["reachable"][sel].tolist()) if "reachable" in rows else set()
        entry = dict(
            n_pathological=n_path,
            m=m,
            runs=int(sel.sum()),
            reachable=reach.pop() if len(reach) == 1 else None,
            kept_component=bool(np.all(rows["effective_label_end"][sel] == m)),
        )
        for kind in KIND_ORDER:
            k = kinds == kind
            entry[kind] = int(k.sum())
            values = np.where(kind == "global_min", 0.0, loss[k])
            uniq, counts = np.unique([float(f"{v:.{digits}g}") for v in values], return_counts=True)
            entry[f"{kind}_losses"] = {float(u): int(c) for u, c in zip(uniq, counts, strict=True)}
        minima = sel & np.isin(rows["endpoint"], ["global_min", "local_min"])
        rule = rows["n_zero"][minima] == rows["n_units"][minima] + rows["n_duplicate"][minima]
        stalled = sel & (rows["endpoint"] == "not_critical") & (rows["n_collapsed"] > 0)
        entry["not_critical_collapsed"] = int(stalled.sum())
        entry["minima_checked"] = int(minima.sum())
        entry["flat_rule_holds"] = int(rule.sum())
        out.append(entry)
    return out


def losses_text(losses: dict) -> str:
    """``{loss: count}`` as ``"0.1821 (19), 0.1889 (18)"``; ``"-"`` when empty."""
    return ", ".join(f"{v:.4g} ({c})" for v, c in losses.items()) or "-"


def _label(n_path: int, m: int, reach) -> str:
    tag = "" if reach is None else ("\nR" if reach else "\nU")
    return f"({n_path},{m}){tag}"


def draw(out_dir: str) -> list[str]:
    """(a) stacked fractions of end-point classes per component, (b) the polished loss of every
    run per component (log scale, global minima at the floor), for each problem."""
    fig, axes = figure(ncols=2, nrows=2, width=7.0, aspect=0.62)
    for col, problem in enumerate(PROBLEMS):
        rows = _common.read_rows(os.path.join(out_dir, problem))
        table = census(rows)
        ax_f, ax_l = axes[0, col], axes[1, col]
        x = np.arange(len(table))
        bottom = np.zeros(len(table))
        for kind in KIND_ORDER:
            frac = np.array([t[kind] / t["runs"] for t in table])
            if frac.any():
                ax_f.bar(x, frac, bottom=bottom, color=KIND_COLOR[kind], label=KIND_LABEL[kind], width=0.7)
            bottom += frac
        labels = [_label(t["n_pathological"], t["m"], t["reachable"]) for t in table]
        for i, t in enumerate(table):
            ax_f.text(i, 1.02, str(t["runs"]), ha="center", va="bottom", fontsize=6)
        title = "toy population" if problem == "toy_population" else "teacher-student population (width 3)"
        ax_f.set(
            xticks=x,
            xticklabels=labels,
            ylim=(0, 1.12),
            ylabel="fraction of runs",
            title=f"({'ab'[col]}) {title}: {len(rows['index'])} flows",
        )
        ax_f.tick_params(axis="x", labelsize=6)
        rng = np.random.default_rng(0)
        for i, t in enumerate(table):
            sel = (rows["n_pathological"] == t["n_pathological"]) & (rows["effective_label_start"] == t["m"])
            for kind in KIND_ORDER:
                k = sel & (rows["endpoint"] == kind)
                if k.any():
                    y = np.maximum(rows["endpoint_loss"][k], LOSS_FLOOR)
                    ax_l.scatter(
                        i + 0.25 * rng.uniform(-1, 1, k.sum()), y, s=4, color=KIND_COLOR[kind], alpha=0.6, lw=0
                    )
        ax_l.set(
            xticks=x,
            xticklabels=labels,
            yscale="log",
            ylabel=f"polished loss (floor {LOSS_FLOOR:g})",
            xlabel="component $(n_-, m)$; R/U: teacher reachable/unreachable",
            title=f"({'cd'[col]}) loss at the end point",
        )
        ax_l.tick_params(axis="x", labelsize=6)
    handles = [Patch(color=KIND_COLOR[k], label=KIND_LABEL[k]) for k in KIND_ORDER]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False, fontsize=7)
    return _common.save_figure(fig, out_dir, NAME)
