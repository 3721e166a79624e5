"""Probability that a random initialization is obstructed (NeurIPS paper, Fig. 5; docs/theory.md §1, App. F).

A shallow net ``f(x) = sum_k v_k relu(w_k . x)`` with ``w_k ~ N(0, sigma_w^2 I_d)`` and
``v_k ~ N(0, sigma_v^2)`` has a pathological neuron ``k`` (``delta_k = ||w_k||^2 - v_k^2 < 0``)
with probability ``p = 1 - F_{1,d}(d sigma_w^2 / sigma_v^2)``, and its invariant set is
disconnected with probability ``P = 1 - (1 - p)^l`` (:func:`gflow.obstruction_probability`).
Xavier: ``sigma_w^2 = 2/(d+l)``, ``sigma_v^2 = 2/(l+1)``; Kaiming (fan-in):
``sigma_w^2 = 2/d``, ``sigma_v^2 = 2/l``.

The figure shows ``P`` exactly on a grid of ``(d, l)`` (powers of two) for both schemes, and
on a subgrid the Monte Carlo estimate of :func:`gflow.obstruction_probability_mc` (networks'
weights drawn as :class:`gflow.ShallowReLU` draws them), as circles coloured by the estimate
on the same scale: a circle that disappears into its cell agrees. Cells where the estimate
is more than 4 standard errors (floor ``1/n``) from ``P`` get a cross.
"""

from __future__ import annotations

import jax.random as jr
import numpy as np
from matplotlib.colors import Normalize

from ..topology.shallow import obstruction_probability, obstruction_probability_mc
from . import _common
from .style import figure

DESCRIPTION = "Fig. 5: exact P(obstructed init) over (d, l) for Xavier and Kaiming, Monte Carlo on a subgrid"
NAME = "obstruction_probability"
SCHEMES = ("xavier", "kaiming")


def _params(quick: bool) -> dict:
    """Grid (powers of two), Monte Carlo subgrid and the budget of Gaussian draws per cell."""
    if quick:
        return dict(
            d=[2**i for i in range(1, 8)],
            l=[2**i for i in range(0, 8)],
            mc_d=[2, 32],
            mc_l=[2, 32],
            budget=2_000_000,
            max_samples=20_000,
            seed=0,
        )
    return dict(
        d=[2**i for i in range(1, 10)],
        l=[2**i for i in range(0, 10)],
        mc_d=[2, 8, 32, 128],
        mc_l=[2, 8, 32, 128],
        budget=40_000_000,
        max_samples=100_000,
        seed=0,
    )


def _samples(p: dict, d: int, width: int) -> int:
    """Monte Carlo sample size of cell ``(d, l)``: ``budget / (l (d + 1))`` draws, at most ``max_samples``."""
    return int(min(p["max_samples"], max(1000, p["budget"] // (width * (d + 1)))))


def _compute(p: dict):
    arrays = {}
    for scheme in SCHEMES:
        arrays[f"exact_{scheme}"] = np.array([[obstruction_probability(d, w, scheme) for w in p["l"]] for d in p["d"]])
        est, se, n, ex = (np.zeros((len(p["mc_d"]), len(p["mc_l"]))) for _ in range(4))
        for i, d in enumerate(p["mc_d"]):
            for j, width in enumerate(p["mc_l"]):
                n[i, j] = _samples(p, d, width)
                key = jr.fold_in(jr.PRNGKey(p["seed"]), 1000 * d + width)
                est[i, j], se[i, j] = obstruction_probability_mc(d, width, scheme, int(n[i, j]), key)
                ex[i, j] = obstruction_probability(d, width, scheme)
        arrays.update({f"mc_{scheme}": est, f"mc_se_{scheme}": se, f"mc_n_{scheme}": n, f"mc_exact_{scheme}": ex})
    scalars = {}
    for scheme in SCHEMES:
        err = np.abs(arrays[f"mc_{scheme}"] - arrays[f"mc_exact_{scheme}"])
        se = np.maximum(arrays[f"mc_se_{scheme}"], 1.0 / arrays[f"mc_n_{scheme}"])
        scalars[scheme] = dict(
            max_abs_error=float(err.max()),
            cells=int(err.size),
            agree_4se=int(np.sum(err <= 4 * se)),
            max_error_in_se=float(np.max(err / se)),
        )
    return arrays, scalars


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Compute (or reuse) the exact grid and the Monte Carlo subgrid in ``out_dir``, then draw."""
    return _common.run_cached(out_dir, NAME, _params(quick), _compute, draw)


def draw(out_dir: str) -> list[str]:
    """Two heatmaps (Xavier, Kaiming) of the exact ``P`` with Monte Carlo circles."""
    arrays, doc = _common.load_result(out_dir, NAME)
    p = doc["params"]
    fig, axes = figure(ncols=2, width=2 * 3.4, aspect=1.0)
    norm = Normalize(0.0, 1.0)
    d_idx = {d: i for i, d in enumerate(p["d"])}
    l_idx = {w: j for j, w in enumerate(p["l"])}
    for ax, scheme in zip(axes, SCHEMES, strict=True):
        im = ax.imshow(arrays[f"exact_{scheme}"], origin="lower", cmap="viridis", norm=norm, aspect="auto")
        ys = [d_idx[d] for d in p["mc_d"]]
        xs = [l_idx[w] for w in p["mc_l"]]
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        ax.scatter(
            xx,
            yy,
            c=arrays[f"mc_{scheme}"],
            cmap="viridis",
            norm=norm,
            s=70,
            edgecolors="white",
            linewidths=0.8,
            label="Monte Carlo",
        )
        err = np.abs(arrays[f"mc_{scheme}"] - arrays[f"mc_exact_{scheme}"])
        bad = err > 4 * np.maximum(arrays[f"mc_se_{scheme}"], 1.0 / arrays[f"mc_n_{scheme}"])
        if bad.any():
            ax.scatter(xx[bad], yy[bad], marker="x", color="#D55E00", s=40, label="MC off by > 4 s.e.")
        s = doc["scalars"][scheme]
        ax.set_title(
            f"{scheme.capitalize()}: exact $P$; circles: Monte Carlo\n"
            f"max |MC − exact| = {s['max_abs_error']:.3f}, {s['agree_4se']}/{s['cells']} within 4 s.e."
        )
        ax.set_xticks(range(len(p["l"])), [str(w) for w in p["l"]])
        ax.set_yticks(range(len(p["d"])), [str(d) for d in p["d"]])
        ax.set_xlabel("hidden width $l$")
        ax.set_ylabel("input dimension $d$")
    fig.colorbar(im, ax=list(axes), label="$P$(invariant set disconnected)", shrink=0.9)
    return _common.save_figure(fig, out_dir, NAME)
