"""Reachability phase diagram: predicted vs observed recovery of a teacher (docs/theory.md §1, §3).

Teacher–student, ``d = 2``, ``e = 1``, no biases, MSE. The teacher
``sum_j a_j relu(u_j . x)`` has ``a_+ = 2`` positive and ``a_- = 1`` negative output weights
(the first Kaiming teacher seed with that sign pattern, kinks at least 30 degrees apart and
every ``|a_j| ||u_j|| >= 0.3``: :func:`teacher_seed`). A student of width ``P + M + F`` is
relocated (Prop. 4) so that ``P`` neurons are pathological with ``v > 0``, ``M`` pathological
with ``v < 0`` (``delta_k = -1``: those signs never change) and ``F`` non-pathological
(``delta_k = +1``, initial signs alternating ``+, -, ...``).

**Predicted** (docs/theory.md §1, :func:`gflow.reachable`): the student's component holds the
teacher's function iff ``max(0, a_+ - P) + max(0, a_- - M) <= F``.
**Observed**: the fraction of exact flows (kink-aware, :func:`gflow.sweep.run_sweep`) whose
final network realizes the teacher's function, by canonical forms (:func:`gflow.recovered`;
docs/theory.md §3) within a tolerance ``tol``.

*Which tolerance.* Two no-bias nets in ``d = 2`` that agree on every training input can still
differ where there are no inputs: a kink line can sit anywhere inside a gap between
consecutive input directions (taken modulo pi, a kink being a line), and an over-parametrized
student typically splits one teacher kink into two neurons a little apart inside such a gap —
zero training loss, canonical form not the teacher's. The flow has no force to merge them. So
the primary reading compares canonical forms at the data's angular resolution,
``tol = ``:func:`data_resolution` (the largest gap, in radians); the strict reading at
``tol = 1e-3`` is run too and reported. Unreachable students miss a teacher kink whose
coefficient is ``>= 0.3``, so neither tolerance can call them recovered.

The prediction is an existence statement, so the observed boundary is "some run recovers the
teacher" (fraction > 0); a cell agrees when the two coincide. Unreachable cells must show
0 exactly (a flow cannot leave its component); reachable ones may show less than 1 (the flow
can stall elsewhere in the component). :func:`agreement` also reports the stricter majority
reading (fraction >= 1/2).
"""

from __future__ import annotations

import itertools
import os
import textwrap

import jax.random as jr
import matplotlib.colors as mcolors
import numpy as np
from matplotlib.patches import Rectangle

from .. import topology
from ..data import Dataset
from ..nets.shallow import ShallowReLU
from ..sweep.config import SweepConfig
from ..sweep.problems import dataset
from . import _common
from .style import figure

DESCRIPTION = "Reachability phase diagram: predicted vs observed recovery of a teacher over (P, M, F), >= 1000 flows"
NAME = "reachability"
TEACHER = (2, 1)  # (a_+, a_-)


def teacher_seed(width: int = sum(TEACHER), min_angle: float = 30.0, min_coef: float = 0.3) -> int:
    """The first ``teacher_seed`` whose Kaiming ``ShallowReLU(2, width)`` teacher (as
    :func:`gflow.sweep.dataset` draws it) has ``TEACHER`` signs, kinks at least ``min_angle``
    degrees apart and every ``|a_j| ||u_j|| >= min_coef``."""
    _common.setup()  # the teacher is drawn in float64, as the sweeps draw it
    for seed in range(1000):
        t = ShallowReLU(2, width, key=jr.PRNGKey(seed))
        U, a = np.asarray(t.W), np.asarray(t.V[0])
        N = U / np.linalg.norm(U, axis=1, keepdims=True)
        cos = np.max(np.abs(N @ N.T) - np.eye(width))
        if (
            (int(np.sum(a > 0)), int(np.sum(a < 0))) == TEACHER
            and np.degrees(np.arccos(cos)) >= min_angle
            and np.min(np.abs(a) * np.linalg.norm(U, axis=1)) >= min_coef
        ):
            return seed
    raise RuntimeError("no teacher seed below 1000 satisfies the constraints.")


def _params(quick: bool) -> dict:
    if quick:  # one student width: one set of compiled programs
        cells = [(2, 1, 0), (3, 0, 0), (0, 0, 3), (1, 1, 1)]
    else:
        cells = [c for c in itertools.product(range(4), range(3), range(4)) if sum(c) > 0]
    return dict(
        cells=[list(c) for c in cells],
        n_inits=2 if quick else 24,
        t1=100.0 if quick else 1000.0,
        rtol=1e-6,
        atol=1e-6,
        n_data=200,
        c=1.0,
        slots=2 if quick else 8,
        strict=not quick,
    )


STRICT_TOL = 1e-3


def data_resolution(p: dict, seed: int) -> float:
    """The largest gap (radians) between consecutive directions of the training inputs taken
    modulo pi: inside it a kink line can move without changing any training prediction."""
    data = dataset(cell_config(p, seed, 1, 0, 0, STRICT_TOL))[0]
    assert isinstance(data, Dataset)  # the toy sample
    return topology.data_resolution(data.x_train)


def cell_config(p: dict, seed: int, P: int, M: int, F: int, tol: float):
    """The sweep of cell ``(P, M, F)``, ``recovered`` judged at ``tol``."""
    delta = tuple([-p["c"]] * (P + M) + [p["c"]] * F)
    signs = tuple([1.0] * P + [-1.0] * M + [1.0 if i % 2 == 0 else -1.0 for i in range(F)])
    return SweepConfig(
        name=f"{NAME}-P{P}-M{M}-F{F}",
        data="teacher_student",
        teacher_width=sum(TEACHER),
        teacher_seed=seed,
        n_data=p["n_data"],
        width=P + M + F,
        delta=delta,
        signs=signs,
        t1=p["t1"],
        rtol=p["rtol"],
        atol=p["atol"],
        n_inits=p["n_inits"],
        slots=p["slots"],
        chunk_size=p["n_inits"],
        n_save=11,
        recover_tol=tol,
    )


def _cell_dir(out_dir: str, folder: str, P: int, M: int, F: int) -> str:
    return os.path.join(out_dir, folder, f"P{P}-M{M}-F{F}")


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Run (or reuse) one sweep per cell and tolerance into ``out_dir/sweeps/P<P>-M<M>-F<F>``
    (data resolution) and ``out_dir/strict/...`` (1e-3; not in quick mode), store the cell
    table and agreement in ``out_dir/reachability.{npz,json}``, then draw."""
    _common.setup()
    p = _params(quick)
    seed = teacher_seed()
    resolution = data_resolution(p, seed)
    readings = [("sweeps", resolution)] + ([("strict", STRICT_TOL)] if p["strict"] else [])
    tables = {}
    for folder, tol in readings:
        for P, M, F in p["cells"]:
            _common.sweep(cell_config(p, seed, P, M, F, tol), _cell_dir(out_dir, folder, P, M, F))
        tables[folder] = cells(out_dir, folder, p["cells"])
    arrays = dict(tables["sweeps"])
    scalars = dict(teacher_seed=seed, resolution=resolution, agreement=agreement(tables["sweeps"]))
    if "strict" in tables:
        arrays["fraction_strict"] = tables["strict"]["fraction"]
        scalars["agreement_strict"] = agreement(tables["strict"])
    _common.save_result(out_dir, NAME, arrays, p, scalars)
    return draw(out_dir)


def cells(out_dir: str, folder: str, cell_list) -> dict:
    """Per cell: P, M, F, predicted reachability (the rows' ``reachable``), observed fraction
    recovered, runs, median final loss."""
    out = dict(P=[], M=[], F=[], predicted=[], fraction=[], n=[], median_loss=[])
    for P, M, F in cell_list:
        rows = _common.read_rows(_cell_dir(out_dir, folder, P, M, F))
        if len(set(rows["reachable"].tolist())) != 1:
            raise ValueError(f"cell {(P, M, F)}: the predicate differs between runs of one cell.")
        for key, value in zip(("P", "M", "F"), (P, M, F), strict=True):
            out[key].append(value)
        out["predicted"].append(bool(rows["reachable"][0]))
        out["fraction"].append(float(np.mean(rows["recovered"])))
        out["n"].append(len(rows["recovered"]))
        out["median_loss"].append(float(np.median(rows["final_loss"])))
    return {key: np.asarray(v) for key, v in out.items()}


def agreement(c: dict) -> dict:
    """Fraction of cells where the predicted boundary matches the observed one, reading
    "observed reachable" as fraction > 0 (``match``) and as fraction >= 1/2 (``match_majority``);
    the disagreeing cells ``(P, M, F)`` of each; recoveries in predicted-unreachable cells."""
    cell = list(zip(c["P"].tolist(), c["M"].tolist(), c["F"].tolist(), strict=True))
    exist, major = c["fraction"] > 0, c["fraction"] >= 0.5
    return dict(
        match=float(np.mean(exist == c["predicted"])),
        match_majority=float(np.mean(major == c["predicted"])),
        disagree=[cell[i] for i in np.nonzero(exist != c["predicted"])[0]],
        disagree_majority=[cell[i] for i in np.nonzero(major != c["predicted"])[0]],
        recovered_unreachable=int(np.sum(c["fraction"][~c["predicted"]] * c["n"][~c["predicted"]])),
        n_cells=len(cell),
        n_runs=int(c["n"].sum()),
    )


def _boundary(ax, predicted: np.ndarray, present: np.ndarray) -> None:
    """Thick lines between neighbouring cells ``[M, P]`` (both ``present``) of opposite prediction."""
    n_m, n_p = predicted.shape

    def differ(a, b):
        return present[a] and present[b] and predicted[a] != predicted[b]

    for m in range(n_m):
        for q in range(n_p):
            if q + 1 < n_p and differ((m, q), (m, q + 1)):
                ax.plot([q + 0.5, q + 0.5], [m - 0.5, m + 0.5], color="black", lw=2.2)
            if m + 1 < n_m and differ((m, q), (m + 1, q)):
                ax.plot([q - 0.5, q + 0.5], [m + 0.5, m + 0.5], color="black", lw=2.2)


def draw(out_dir: str) -> list[str]:
    """One panel per F: observed fraction recovered over (P, M), the predicted boundary as a
    thick line, unreachable cells hatched, disagreeing cells marked."""
    c, doc = _common.load_result(out_dir, NAME)
    p, fit = doc["params"], doc["scalars"]["agreement"]
    strict = c.get("fraction_strict")
    Fs = np.unique(c["F"])
    n_p, n_m = c["P"].max() + 1, c["M"].max() + 1
    ncols = 2 if len(Fs) > 1 else 1
    nrows = -(-len(Fs) // ncols)
    fig, axes = figure(ncols=ncols, nrows=nrows, aspect=1.0, squeeze=False)
    norm = mcolors.Normalize(0.0, 1.0)
    for ax, F in zip(axes.flat, Fs, strict=False):
        frac = np.full((n_m, n_p), np.nan)
        pred = np.zeros((n_m, n_p), bool)
        sel = np.nonzero(c["F"] == F)[0]
        for i in sel:
            frac[c["M"][i], c["P"][i]] = c["fraction"][i]
            pred[c["M"][i], c["P"][i]] = c["predicted"][i]
        mesh = ax.imshow(frac, origin="lower", cmap="viridis", norm=norm, extent=(-0.5, n_p - 0.5, -0.5, n_m - 0.5))
        for i in sel:
            P, M = c["P"][i], c["M"][i]
            if not c["predicted"][i]:
                ax.add_patch(_hatch(P, M))
            wrong = (c["fraction"][i] > 0) != c["predicted"][i]
            text = f"{c['fraction'][i]:.2f}" + ("" if strict is None else f"\n({strict[i]:.2f})")
            ax.text(
                P,
                M,
                text + (" !" if wrong else ""),
                ha="center",
                va="center",
                fontsize=5,
                color="white" if c["fraction"][i] < 0.6 else "black",
            )
        _boundary(ax, pred, ~np.isnan(frac))
        ax.set(xticks=range(n_p), yticks=range(n_m), ylabel="$M$", title=f"$F = {F}$")
    for ax in axes[-1]:
        ax.set_xlabel("$P$")
    for ax in axes.flat[len(Fs) :]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=axes, label="fraction of runs recovering the teacher", shrink=0.8)
    strict_note = (
        ""
        if strict is None
        else f" In brackets: at tol = {STRICT_TOL:g} (matches in "
        f"{100 * doc['scalars']['agreement_strict']['match']:.0f}%)."
    )
    text = (
        f"Student: P / M pathological neurons with v > 0 / v < 0, F non-pathological; teacher a+ = "
        f"{TEACHER[0]}, a- = {TEACHER[1]}. {fit['n_runs']} exact flows (t1 = {p['t1']:g}, rtol = atol = "
        f"{p['rtol']:g}). Hatched: predicted unreachable; thick line: predicted boundary. Observed (fraction "
        f"recovered at the data's resolution, tol = {doc['scalars']['resolution']:.3f}, > 0) matches the "
        f"prediction in {100 * fit['match']:.0f}% of {fit['n_cells']} cells (!: disagreement).{strict_note}"
    )
    fig.suptitle(textwrap.fill(text, 80), fontsize=6)
    return _common.save_figure(fig, out_dir, NAME)


def _hatch(P: int, M: int):
    return Rectangle((P - 0.5, M - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.85", lw=0)
