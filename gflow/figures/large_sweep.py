"""Large sweep: the final loss of 10^4 exact flows, split by effective component (docs/theory.md §1, §5).

The toy problem (``d = 2``, width ``l = 2``, ``e = 1``, no bias, MSE, target
``y = relu(x1) - relu(x2)``). Every Kaiming initialization is relocated (Prop. 4) to
``delta_k = -1`` for both neurons — both *pathological*, so neither output weight ``v_k`` can
ever change sign — and given random output signs. Cor. 3: the invariant set has
``n_- + 1 = 3`` effective components, labelled by the number ``m`` of negative ``v_k``.
The target needs one convex and one concave kink, so by docs/theory.md's reachability predicate
``max(0, a_+ - P) + max(0, a_- - M) <= F`` (``a_+ = a_- = 1``, ``P = 2 - m``, ``M = m``,
``F = 0``) only ``m = 1`` holds a representative of it; in ``m = 0`` and ``m = 2`` the loss
is bounded away from 0 whatever the flow does.

Each initialization is integrated with the kink-aware exact flow (``kinks = "auto"``:
collapsed neurons pinned, Filippov sliding on attractive kinks; :mod:`gflow.kinks`) by
:func:`gflow.sweep.run_sweep`; the rows carry ``effective_label_start/end`` (equal for the
exact flow) and the final loss. The figure shows the histogram and the ECDF of the final
loss per component.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..invariants import relocate
from ..nets.shallow import ShallowReLU
from ..sweep.config import SweepConfig
from ..sweep.store import MANIFEST
from ..topology.symmetry import reachable
from . import _common
from .style import PALETTE, figure

DESCRIPTION = "Large sweep: final loss of >= 10^4 exact flows on the toy problem, split by effective component"
NAME = "large_sweep"
SOLVED = 1e-3  # a run "fits" when its final loss is below this


def config(quick: bool = False):
    """The sweep: 10^4 inits (quick: 8), 256 training points, t1 = 20, Tsit5 at 1e-6.

    16 slots measured fastest on the 2-core CPU here (32 ms CPU per trajectory at 256 points,
    against 2x that with 32 or 64 slots)."""
    return SweepConfig(
        name=NAME,
        data="toy",
        n_data=256,
        width=2,
        delta=-1.0,
        signs="random",
        t1=20.0,
        rtol=1e-6,
        atol=1e-6,
        n_inits=8 if quick else 10_000,
        slots=8 if quick else 16,
        chunk_size=8 if quick else 1000,
        n_save=11,
        kinks="auto",
    )


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Run (or reuse) the sweep into ``out_dir/sweep``, store the per-component summary in
    ``out_dir/large_sweep.json``, then draw."""
    _common.setup()
    cfg = config(quick)
    rows = _common.sweep(cfg, os.path.join(out_dir, "sweep"))
    names, counts = np.unique(rows["status"], return_counts=True)
    scalars = dict(
        components=summary(rows),
        reachable=reachable_by_label(),
        n_runs=len(rows["index"]),
        label_changes=int(np.sum(rows["label_changes"])),
        statuses=dict(zip(names.tolist(), counts.tolist(), strict=True)),
    )
    _common.save_result(out_dir, NAME, {}, cfg.to_dict(), scalars)
    return draw(out_dir)


def reachable_by_label(n_path: int = 2) -> dict[int, bool]:
    """docs/theory.md's predicate for the toy target, per effective label ``m`` (number of negative
    output weights among ``n_path`` pathological neurons), via :func:`gflow.reachable`."""
    teacher = ShallowReLU(2, 2, key=jr.PRNGKey(0))
    teacher = relocate(teacher, 0.0, jnp.array([[1.0, -1.0]]))  # any u_j, one convex and one concave kink
    out = {}
    for m in range(n_path + 1):
        student = relocate(
            ShallowReLU(2, n_path, key=jr.PRNGKey(1)), -1.0, jnp.array([[-1.0] * m + [1.0] * (n_path - m)])
        )
        out[m] = bool(reachable(teacher, student))
    return out


def manifest_config(sweep_dir: str) -> dict:
    """The config stored in a sweep folder's manifest."""
    with open(os.path.join(sweep_dir, MANIFEST)) as f:
        return json.load(f)["config"]


def summary(rows: dict) -> dict:
    """Per effective label: count, median / min / max final loss, fraction below ``SOLVED`` and
    the median of the others (``nan`` if none)."""
    out = {}
    for m in np.unique(rows["effective_label_end"]):
        loss = rows["final_loss"][rows["effective_label_end"] == m]
        rest = loss[loss >= SOLVED]
        out[int(m)] = dict(
            n=int(len(loss)),
            median=float(np.median(loss)),
            min=float(loss.min()),
            max=float(loss.max()),
            solved=float(np.mean(loss < SOLVED)),
            unsolved_median=float(np.median(rest)) if len(rest) else float("nan"),
        )
    return out


def draw(out_dir: str) -> list[str]:
    """(a) histogram of ``log10`` final loss per effective component; (b) its ECDF (linear loss axis,
    where the unreachable components' plateaus separate)."""
    rows = _common.read_rows(os.path.join(out_dir, "sweep"))
    cfg = manifest_config(os.path.join(out_dir, "sweep"))
    stats, reach = summary(rows), reachable_by_label()
    loss = np.maximum(rows["final_loss"], 1e-16)
    bins = np.arange(np.floor(np.log10(loss.min())), np.ceil(np.log10(loss.max())) + 0.05, 0.1)
    fig, (ax_h, ax_e) = figure(nrows=2, aspect=0.6)
    for m, s in stats.items():
        x = np.sort(loss[rows["effective_label_end"] == m])
        tag = "reachable" if reach[m] else "unreachable"
        label = (
            f"$m = {m}$ ({tag}): {s['n']} runs, {100 * s['solved']:.1f}% $< 10^{{{int(np.log10(SOLVED))}}}$, "
            f"min {s['min']:.3g}"
        )
        ax_h.hist(np.log10(x), bins=bins, histtype="stepfilled", alpha=0.3, color=PALETTE[m])
        ax_h.hist(np.log10(x), bins=bins, histtype="step", lw=1.2, color=PALETTE[m], label=label)
        ecdf = np.concatenate([[0.0], np.arange(1, len(x) + 1) / len(x)])
        ax_e.step(np.concatenate([[0.0], x]), ecdf, where="post", color=PALETTE[m], label=f"$m = {m}$")
    ax_h.axvline(np.log10(SOLVED), color="0.5", ls=":", lw=1.0)
    changes = int(np.sum(rows["effective_label_start"] != rows["effective_label_end"]))
    ax_h.set(
        yscale="log",
        xlabel="$\\log_{10}$ final training loss",
        ylabel="runs",
        title=f"(a) {len(loss)} exact flows, toy problem ($n = {cfg['n_data']}$, $\\delta_k = {cfg['delta']:g}$, "
        f"random output signs)",
    )
    ax_h.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    ax_e.set(
        xlabel="final training loss (linear scale)",
        ylabel="fraction of runs",
        xlim=(-0.005, loss.max() * 1.05),
        title=f"(b) ECDF; $t_1 = {cfg['t1']:g}$, Tsit5 rtol = atol = {cfg['rtol']:g}, kinks = {cfg['kinks']}; "
        f"label changes: {changes}",
    )
    ax_e.legend(title="effective component\n($m$ = # negative $v_k$)", loc="lower right", fontsize=6, title_fontsize=6)
    return _common.save_figure(fig, out_dir, NAME)
