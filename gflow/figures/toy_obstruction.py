"""The topological obstruction on the toy problem (NeurIPS paper, Fig. 3; docs/theory.md §1, §5).

Data: ``x ~ N(0, I_2)``, ``y = relu(x_1) - relu(x_2)``; a width-2 net ``f(x) = v_1 relu(w_1 . x)
+ v_2 relu(w_2 . x)``, MSE. Every initialization is relocated (Prop. 4) to ``delta_k = -c`` for
both neurons, with random output signs: both neurons are pathological, so along the flow
``|v_k| >= sqrt(c)`` and ``sign(v_k)`` never changes (Prop. 3). The target needs one positive
and one negative output weight: the component with signs ``(+, -)`` or ``(-, +)`` (effective
label 1) contains it — *reachable*; ``(+, +)`` and ``(-, -)`` (labels 0, 2) do not —
*unreachable*, whatever the flow does.

Panels: (a) the learned functions on the unit circle (no biases, so ``f(r x) = r f(x)`` and
the circle determines ``f``), (b) loss curves and (c) the drift ``max_k |delta_k(t) -
delta_k(0)|`` of one representative initialization per component (the member with the median
final flow loss in its group), exact flow (solid) and GD at a small learning rate (dashed, time
``t = eta * step``; its drift per step is ``eta^2 (||g_w||^2 - ||g_v||^2)``); (d) the final
loss of every initialization of the sweep, by component, for both methods.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..discrete import train
from ..flow.solve import gradient_flow
from ..nets.shallow import require_shallow
from ..sweep.config import SweepConfig
from ..sweep.problems import dataset, make_init
from . import _common
from .style import PALETTE, figure

DESCRIPTION = "Fig. 3: toy problem, reachable vs unreachable component; exact flow and small-lr GD, with delta drift"
NAME = "toy_obstruction"
GROUPS = ("reachable", "unreachable")


def _params(quick: bool) -> dict:
    return dict(
        n_data=500 if quick else 8000,
        n_inits=8 if quick else 64,
        c=1.0,
        t1=20.0,
        lr=1e-2,
        tol=1e-6,
        n_save=101,
        n_angles=361,
        seed=0,
    )


def config(p: dict):
    """The sweep config whose initializations (``make_init(config, data, i)``) the figure uses:
    ``gflow sweep`` with it reproduces the final losses of the flow (up to kink handling)."""
    return SweepConfig(
        name=NAME,
        data="toy",
        n_data=p["n_data"],
        width=2,
        delta=-p["c"],
        signs="random",
        t1=p["t1"],
        n_inits=p["n_inits"],
        rtol=p["tol"],
        atol=p["tol"],
        lr=p["lr"],
        seed=p["seed"],
    )


def reachable(signs: np.ndarray) -> np.ndarray:
    """Initializations whose component contains the target: output signs of opposite sign
    (both neurons are pathological, so these signs are the component label)."""
    return signs[..., 0] * signs[..., 1] < 0


def _compute(p: dict):
    """Exact flow and GD from every initialization: curves, learned functions, summaries.

    A loop of :func:`gflow.gradient_flow` / :func:`gflow.train` calls (each compiled once for
    all initializations) rather than :func:`gflow.sweep.run_sweep`: the figure needs every
    run's loss curve and final function, which sweep rows do not keep, and on a 2-core CPU
    the continuous-batching engine's compilation alone takes longer than these 2 x 64 runs.
    """
    cfg = config(p)
    data, _ = dataset(cfg)
    phi = np.linspace(0, 2 * np.pi, p["n_angles"])
    circle = jnp.stack([jnp.cos(phi), jnp.sin(phi)], axis=1)
    out: dict[str, Any] = {
        k: []
        for k in (
            "signs",
            "flow_loss",
            "gd_loss",
            "flow_drift",
            "gd_drift",
            "flow_f",
            "gd_f",
            "flow_steps",
            "flow_status",
        )
    }
    for i in range(p["n_inits"]):
        model = require_shallow(make_init(cfg, data, i), "the toy-obstruction figure")
        out["signs"].append(np.sign(np.asarray(model.V[0])))
        runs = dict(
            flow=gradient_flow(model, data, "mse", p["t1"], rtol=p["tol"], atol=p["tol"], n_save=p["n_save"]),
            gd=train(model, data, "mse", "gd", lr=p["lr"], steps=round(p["t1"] / p["lr"]), n_save=p["n_save"]),
        )
        for method, traj in runs.items():
            c = np.asarray(traj.conserved)
            out[f"{method}_loss"].append(np.asarray(traj.loss))
            out[f"{method}_drift"].append(np.max(np.abs(c - c[0]), axis=1))
            out[f"{method}_f"].append(np.asarray(jax.vmap(traj.final)(circle)[:, 0]))
            out[f"{method}_t"] = np.asarray(traj.ts)
        out["flow_steps"].append(int(runs["flow"].stats["steps"]))
        out["flow_status"].append(runs["flow"].status_name)
    status = out.pop("flow_status")
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays.update(phi=phi, target=np.maximum(np.cos(phi), 0) - np.maximum(np.sin(phi), 0))
    scalars = dict(
        statuses=sorted(set(status)),
        representatives=_representatives(arrays),
        **{m: _summary(arrays, m, p["c"]) for m in ("flow", "gd")},
    )
    return arrays, scalars


def _representatives(a: dict) -> dict:
    """Per group, the initialization with the median final flow loss (the lower median)."""
    out = {}
    for name, mask in zip(GROUPS, (reachable(a["signs"]), ~reachable(a["signs"])), strict=True):
        idx = np.nonzero(mask)[0]
        if len(idx) == 0:
            raise ValueError(f"no {name} initialization among {len(mask)}; raise n_inits.")
        order = idx[np.argsort(a["flow_loss"][idx, -1])]
        out[name] = int(order[(len(order) - 1) // 2])
    return out


def _summary(a: dict, method: str, c: float) -> dict:
    """Per group: count, final-loss quantiles, fraction below 1e-2, max drift (absolute, / c)."""
    out = {}
    for name, mask in zip(GROUPS, (reachable(a["signs"]), ~reachable(a["signs"])), strict=True):
        loss = a[f"{method}_loss"][mask, -1]
        drift = a[f"{method}_drift"][mask].max()
        out[name] = dict(
            n=int(mask.sum()),
            median_final_loss=float(np.median(loss)),
            min_final_loss=float(loss.min()),
            max_final_loss=float(loss.max()),
            fraction_below_1e_2=float(np.mean(loss < 1e-2)),
            max_drift=float(drift),
            max_relative_drift=float(drift / c),
        )
    return out


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Run (or reuse) the flow and GD trainings from every initialization, then draw."""
    return _common.run_cached(out_dir, NAME, _params(quick), _compute, draw)


def draw(out_dir: str) -> list[str]:
    """Four panels: learned functions, loss curves, drift, final losses of all initializations."""
    a, doc = _common.load_result(out_dir, NAME)
    p, s = doc["params"], doc["scalars"]
    fig, axes = figure(ncols=2, nrows=2, width=2 * 3.4, aspect=0.72)
    (ax_f, ax_loss), (ax_drift, ax_all) = axes
    colors = dict(reachable=PALETTE[0], unreachable=PALETTE[1])
    styles = dict(flow=("-", "exact flow"), gd=("--", f"GD $\\eta$ = {p['lr']:g}"))
    deg = np.degrees(a["phi"])
    ax_f.plot(deg, a["target"], color="black", lw=2.2, alpha=0.35, label="target")
    for name in GROUPS:
        i = s["representatives"][name]
        signs = "(" + ", ".join("+" if x > 0 else "−" for x in a["signs"][i]) + ")"
        mask = reachable(a["signs"]) if name == "reachable" else ~reachable(a["signs"])
        ax_loss.semilogy(a["flow_t"], a["flow_loss"][mask].T, color=colors[name], alpha=0.12, lw=0.6)
        for method, (ls, label) in styles.items():
            lab = f"{name} {signs}, {label}"
            ax_f.plot(deg, a[f"{method}_f"][i], ls, color=colors[name], label=lab)
            ax_loss.semilogy(a[f"{method}_t"], a[f"{method}_loss"][i], ls, color=colors[name])
            dr = a[f"{method}_drift"][i]
            ax_drift.semilogy(
                a[f"{method}_t"][1:],
                np.maximum(dr[1:], 1e-17),
                ls,
                color=colors[name],
                label=f"{name}, {label}: max {dr.max():.1e} ({100 * dr.max() / p['c']:.2g}% of c)",
            )
    ax_f.set(
        xlabel="input angle $\\varphi$ (deg), $x = (\\cos\\varphi, \\sin\\varphi)$",
        ylabel="$f(x)$ at $t_1$",
        title="(a) learned functions on the unit circle",
        xticks=[0, 90, 180, 270, 360],
    )
    fig.legend(*ax_f.get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
    ax_loss.set(
        xlabel="time $t$ (GD: $t = \\eta\\cdot$step)",
        ylabel="training loss",
        title=f"(b) loss, $\\delta_k(0) = -{p['c']:g}$ (thin: all {p['n_inits']} flows)",
    )
    ax_drift.set(
        xlabel="time $t$",
        ylabel="$\\max_k |\\delta_k(t) - \\delta_k(0)|$",
        title="(c) drift of the conserved quantities",
    )
    low = min(np.min(a[f"{m}_drift"][list(s["representatives"].values())][:, 1:]) for m in styles)
    ax_drift.set_ylim(bottom=10.0 ** (np.floor(np.log10(max(low, 1e-17))) - 4))  # room for the legend
    ax_drift.legend(frameon=False, fontsize=6, loc="lower right")
    _draw_all(ax_all, a, colors)
    return _common.save_figure(fig, out_dir, NAME)


def _draw_all(ax, a: dict, colors: dict) -> None:
    """Final loss of every initialization by component and method (jittered strip plot)."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(GROUPS):
        mask = reachable(a["signs"]) if name == "reachable" else ~reachable(a["signs"])
        for j, method in enumerate(("flow", "gd")):
            loss = a[f"{method}_loss"][mask, -1]
            x = 2 * i + j
            ax.scatter(
                x + rng.uniform(-0.18, 0.18, len(loss)),
                loss,
                s=7,
                color=colors[name],
                marker="o" if method == "flow" else "^",
                alpha=0.7,
                linewidths=0,
            )
            ax.hlines(np.median(loss), x - 0.3, x + 0.3, color="black", lw=1)
    labels = [
        f"{g}\n{m} (n={int(np.sum(reachable(a['signs']) == (g == 'reachable')))})"
        for g in GROUPS
        for m in ("flow", "GD")
    ]
    ax.set_yscale("log")
    ax.set_xticks(range(4), labels)
    ax.set(ylabel="final training loss", title="(d) all initializations (bar: median)")
