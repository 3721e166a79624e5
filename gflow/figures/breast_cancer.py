"""Breast cancer (NeurIPS paper Fig. 4): test loss against the number of non-pathological neurons.

Data: Wisconsin diagnostic breast cancer (:func:`gflow.breast_cancer`, 398 train / 171 test,
standardized), one hidden ReLU layer of width ``l`` without biases, BCE on logits. For every
width ``l`` and every ``k = 0..l``, 100 Kaiming initializations are relocated (Prop. 4) to
``delta = (+c, ..., +c, -c, ..., -c)``: ``k`` non-pathological neurons (``delta_k > 0``:
``v_k`` may change sign) and ``l - k`` pathological ones (``delta_k < 0``: ``sign v_k`` fixed
for ever, docs/theory.md Prop. 3), and every output weight is made positive (``signs = +1``). So
the pathological neurons can only ever push the logit up; a negative logit (class 0,
malignant) needs one of the ``k`` free neurons to turn its output weight negative, and with
``k = 0`` the logit is ``>= 0`` at all times. Each initialization is trained with the exact
gradient flow (:func:`gflow.sweep.run_sweep`, Tsit5, PID, kink-aware field) to ``t1``; the
cell value is the mean final test loss.

The initializations of a width are the same draws for every ``k`` (init ``i`` comes from
``fold_in(PRNGKey(seed), i)``), so differences along ``k`` come from the relocation alone.

The paper's claim: the test loss falls with the *number* ``k`` of non-pathological neurons,
not with their fraction ``k / l``. :func:`collapse` measures it: the cell means are explained
by group means over ``k`` or over ``k / l`` (R^2 of each grouping).
"""

from __future__ import annotations

import os

import matplotlib
import numpy as np

from ..flow.solve import gradient_flow
from ..sweep.config import SweepConfig
from ..sweep.problems import dataset, make_init
from . import _common
from .style import figure

DESCRIPTION = "Fig. 4: breast cancer, mean test loss of exact flows per width l and number of non-pathological neurons"
NAME = "breast_cancer"


def _params(quick: bool) -> dict:
    return dict(
        widths=[1, 2] if quick else list(range(1, 9)),
        c=1.0,
        n_inits=4 if quick else 100,
        t1=30.0,
        rtol=1e-4,
        atol=1e-4,
        slots=4 if quick else 32,
        check_tol=1e-6,
        check=[] if quick else [[1, 0], [2, 1], [4, 2], [8, 0], [8, 4], [8, 8]],
        check_inits=2,
    )


def cell_config(p: dict, width: int, k: int):
    """The sweep of cell ``(l, k)``: ``k`` neurons at ``delta = +c``, ``l - k`` at ``-c``, all
    output weights positive."""
    delta = tuple([p["c"]] * k + [-p["c"]] * (width - k))
    return SweepConfig(
        name=f"{NAME}-l{width}-k{k}",
        data="breast_cancer",
        width=width,
        delta=delta,
        signs=(1.0,) * width,
        t1=p["t1"],
        rtol=p["rtol"],
        atol=p["atol"],
        n_inits=p["n_inits"],
        slots=p["slots"],
        chunk_size=p["n_inits"],
        n_save=11,
    )


def _cell_dir(out_dir: str, width: int, k: int) -> str:
    return os.path.join(out_dir, "sweeps", f"l{width}-k{k}")


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Run (or reuse) one sweep per cell into ``out_dir/sweeps/l<l>-k<k>`` and the tolerance
    check, store the cell table and its summaries as ``out_dir/breast_cancer.{npz,json}``, draw."""
    _common.setup()
    p = _params(quick)
    for width in p["widths"]:
        for k in range(width + 1):
            _common.sweep(cell_config(p, width, k), _cell_dir(out_dir, width, k))
    keys = ("check", "check_inits", "check_tol", "t1", "rtol", "c")
    _, check = _common.cached(
        out_dir, "tolerance_check", {key: p[key] for key in keys}, lambda: _tolerance_check(out_dir, p)
    )
    table = cells(out_dir, p)
    _common.save_result(
        out_dir,
        NAME,
        table,
        p,
        dict(
            collapse(table),
            by_k=means_by(table, "k"),
            k0_by_width=means_by(table, "width", table["k"] == 0),
            tolerance_check=check["scalars"],
        ),
    )
    return draw(out_dir)


def _tolerance_check(out_dir: str, p: dict):
    """Re-integrate the first ``check_inits`` initializations of the cells in ``check`` with
    :func:`gflow.gradient_flow` at ``check_tol`` and compare their final test loss with the
    sweep's rows (integrated at ``rtol``/``atol``)."""
    out = dict(width=[], k=[], index=[], sweep=[], tight=[], steps=[])
    for width, k in p["check"]:
        cfg = cell_config(p, width, k)
        data, _ = dataset(cfg)
        rows = _common.read_rows(_cell_dir(out_dir, width, k))
        for i in range(p["check_inits"]):
            traj = gradient_flow(
                make_init(cfg, data, i), data, "bce", p["t1"], rtol=p["check_tol"], atol=p["check_tol"], n_save=2
            )
            s = traj.summary()
            for key, value in zip(
                out,
                (width, k, i, rows["final_test_loss"][rows["index"] == i][0], s["final_test_loss"], s["steps"]),
                strict=True,
            ):
                out[key].append(value)
    arrays = {key: np.asarray(v) for key, v in out.items()}
    diff = np.abs(arrays["sweep"] - arrays["tight"])
    return arrays, dict(max_abs_diff=float(diff.max(initial=0.0)), n=len(diff))


def cells(out_dir: str, p: dict) -> dict:
    """Per cell (from its sweep's rows): width, k, mean / standard error of the final test
    loss, mean final training loss, runs, failures."""
    out = dict(width=[], k=[], mean=[], sem=[], train=[], n=[], failures=[])
    for width in p["widths"]:
        for k in range(width + 1):
            rows = _common.read_rows(_cell_dir(out_dir, width, k))
            test = rows["final_test_loss"]
            out["width"].append(width)
            out["k"].append(k)
            out["mean"].append(float(np.mean(test)))
            out["sem"].append(float(np.std(test, ddof=1) / np.sqrt(len(test))) if len(test) > 1 else np.nan)
            out["train"].append(float(np.mean(rows["final_loss"])))
            out["n"].append(len(test))
            out["failures"].append(int(np.sum(rows["status"] != "successful")))
    return {key: np.asarray(v) for key, v in out.items()}


def means_by(c: dict, key: str, where: np.ndarray | None = None) -> dict:
    """Mean over cells of the cell means, grouped by ``c[key]`` (cells where ``where`` holds)."""
    sel = np.ones(len(c["k"]), bool) if where is None else where
    return {int(v): float(c["mean"][sel & (c[key] == v)].mean()) for v in np.unique(c[key][sel])}


def collapse(c: dict) -> dict:
    """R^2 of the cell means explained by their group mean over equal ``k`` and over equal
    ``k / l`` (each cell weighted once): the better grouping is what the loss depends on.
    The fraction grouping has more groups, so it is favoured when the two are close."""
    y = c["mean"]
    total = np.sum((y - y.mean()) ** 2)

    def r2(keys):
        fitted = np.array([y[keys == key].mean() for key in keys])
        return float(1 - np.sum((y - fitted) ** 2) / total)

    frac = np.round(c["k"] / c["width"], 12)
    return dict(
        r2_number=r2(c["k"]),
        r2_fraction=r2(frac),
        groups_number=len(np.unique(c["k"])),
        groups_fraction=len(np.unique(frac)),
    )


def draw(out_dir: str) -> list[str]:
    """(a) heatmap of the mean test loss over (l, k); (b) against k / l; (c) against k."""
    c, doc = _common.load_result(out_dir, NAME)
    p, widths = doc["params"], np.unique(c["width"])
    fig, (ax_a, ax_b, ax_c) = figure(nrows=3, aspect=0.62)
    grid = np.full((widths.max() + 1, len(widths)), np.nan)
    for w, k, m in zip(c["width"], c["k"], c["mean"], strict=True):
        grid[k, np.searchsorted(widths, w)] = m
    mesh = ax_a.imshow(
        grid,
        origin="lower",
        cmap="cividis",
        aspect="auto",
        extent=(widths[0] - 0.5, widths[-1] + 0.5, -0.5, widths.max() + 0.5),
    )
    for w, k, m in zip(c["width"], c["k"], c["mean"], strict=True):
        light = m > np.nanmean(grid)
        ax_a.text(w, k, f"{m:.2f}", ha="center", va="center", fontsize=5, color="black" if light else "white")
    fig.colorbar(mesh, ax=ax_a, label="mean test BCE")
    check = doc["scalars"]["tolerance_check"]
    checked = (
        f"; vs rtol = {p['check_tol']:.0e}: max $|\\Delta|$ = {check['max_abs_diff']:.1e} ({check['n']} runs)"
        if check["n"]
        else ""
    )
    ax_a.set(
        xlabel="width $l$",
        ylabel="non-pathological $k$",
        xticks=widths,
        title=f"(a) mean test loss of {int(c['n'].min())} exact flows per cell, all $v_k > 0$ at $t = 0$\n"
        f"($t_1 = {p['t1']:g}$, Tsit5 rtol = atol = {p['rtol']:.0e}{checked})",
    )
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(widths)))
    for w, color in zip(widths, colors, strict=True):
        sel = c["width"] == w
        for ax, x in ((ax_b, c["k"][sel] / w), (ax_c, c["k"][sel])):
            ax.errorbar(
                x,
                c["mean"][sel],
                yerr=c["sem"][sel],
                color=color,
                marker="o",
                ms=2.5,
                lw=1.0,
                capsize=1.5,
                label=f"$l = {w}$",
            )
    fit = doc["scalars"]
    ax_b.set(
        xlabel="fraction $k / l$ of non-pathological neurons",
        ylabel="mean test BCE",
        title=f"(b) against the fraction: $R^2$ of group means = {fit['r2_fraction']:.2f} "
        f"({fit['groups_fraction']} groups)",
    )
    ax_c.set(
        xlabel="number $k$ of non-pathological neurons",
        ylabel="mean test BCE",
        title=f"(c) against the number: $R^2$ = {fit['r2_number']:.2f} ({fit['groups_number']} groups); "
        f"$|\\delta_k| = {p['c']:g}$",
    )
    ax_c.legend(ncol=2, fontsize=6, loc="upper right")
    return _common.save_figure(fig, out_dir, NAME)
