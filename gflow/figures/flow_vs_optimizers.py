"""Conserved quantities under the exact flow and under discrete optimizers (docs/theory.md §1, §4).

The exact flow keeps every ``delta_k = ||w_k||^2 - ||v_k||^2`` constant. One GD step
``theta' = theta - eta g`` changes it by exactly

    delta_k' - delta_k = eta^2 (||g_{w_k}||^2 - ||g_{v_k}||^2),

(expand the squares; ``<w_k, g_{w_k}> = <v_k, g_{v_k}>`` cancels the first-order terms), so
after ``n`` steps the drift is the sum of these terms: second order per step, ``O(eta)`` over
a fixed time ``t = eta n``. Momentum and Adam have no such identity; their drift is first order.

Panel (a): ``max_k |delta_k(t) - delta_k(0)|`` along the exact flow, GD at several learning
rates (the summed ``eta^2`` prediction, evaluated along the same GD iterates, as circles), SGD,
momentum and Adam, from one initialization of the toy problem (docs/theory.md §5) with every
neuron relocated to ``delta_k = -c`` (pathological). Panel (b): over a sweep of such
initializations with random output signs, the fraction of runs whose component label (the
signs of ``v_k`` of the pathological neurons, Prop. 3) changes at one of the saved times, against
the learning rate, at the same time horizon ``T`` (``T / eta`` steps); runs that diverge are
counted apart (dashed).
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from .._jit import jit
from ..discrete import train
from ..flow.solve import gradient_flow
from ..invariants import conserved
from ..losses import full_batch_loss, mse
from ..sweep.config import SweepConfig
from ..sweep.problems import dataset, make_init
from . import _common
from .style import PALETTE, figure

DESCRIPTION = "Drift of delta under flow vs GD (eta^2 identity), SGD, momentum, Adam; label changes vs learning rate"
NAME = "flow_vs_optimizers"


def _colors() -> dict:
    """One colour per method (both panels); GD learning rates in panel (a) as shades of blue."""
    return dict(flow="black", gd=PALETTE[0], sgd=PALETTE[4], momentum=PALETTE[3], adam=PALETTE[1])


def _params(quick: bool) -> dict:
    return dict(
        n_data=1000,
        width=4,
        c=0.1,
        t1=10.0,
        seed=0,
        flow_tol=1e-8,
        n_save=101 if quick else 201,
        gd_lrs=[0.3] if quick else [0.01, 0.03, 0.1, 0.3],
        other_lr=0.01,
        others=["adam"] if quick else ["sgd", "momentum", "adam"],
        sweep_methods=["gd"] if quick else ["gd", "sgd", "momentum", "adam"],
        sweep_lrs=[0.03, 1.0] if quick else [0.01, 0.03, 0.1, 0.3, 1.0],
        n_inits=16 if quick else 128,
        sweep_n_save=51,
    )


def _config(p: dict, method: str = "flow", lr: float = 0.01):
    return SweepConfig(
        name=NAME,
        data="toy",
        n_data=p["n_data"],
        width=p["width"],
        delta=-p["c"],
        signs="random",
        t1=p["t1"],
        n_inits=p["n_inits"],
        method=method,
        lr=lr,
        seed=p["seed"],
        slots=min(p["n_inits"], 128),
        n_save=p["sweep_n_save"],
    )


def predicted_drift(model, data, lrs, n_steps, steps_max: int):
    """``sum_{s < n} eta^2 (||g_w(s)||^2 - ||g_v(s)||^2)`` per neuron along GD from ``model``.

    One compiled scan of ``steps_max`` steps, vmapped over the learning rates ``lrs`` (steps
    beyond ``n_steps`` are masked). **Returns:** ``(len(lrs), steps_max + 1, hidden)``: the
    predicted ``delta(step) - delta(0)`` at every step (MSE loss, full batch).
    """
    return _predicted(model, data, jnp.asarray(lrs), jnp.asarray(n_steps), steps_max)


@jit
def _predicted(model, data, lrs, n_steps, steps_max):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    grad = jax.grad(lambda q: full_batch_loss(eqx.combine(q, static), data.x_train, data.y_train, mse))
    zero = jnp.zeros_like(conserved(model))

    def one(lr, n):
        def body(carry, step):
            p, pred = carry
            g = grad(p)
            on = step < n
            # conserved() of the gradient seen as a network: ||g_w||^2 - ||g_v||^2 per neuron
            pred = pred + jnp.where(on, lr**2 * conserved(eqx.combine(g, static)), 0.0)
            p = jax.tree_util.tree_map(lambda x, gx: jnp.where(on, x - lr * gx, x), p, g)
            return (p, pred), pred

        _, preds = jax.lax.scan(body, (params, zero), jnp.arange(steps_max))
        return jnp.concatenate([zero[None], preds])

    return jax.vmap(one)(lrs, n_steps)


def _drift_curves(p: dict):
    """Panel (a): drift along the flow, GD (measured and predicted) and the other optimizers."""
    cfg = _config(p)
    data, _ = dataset(cfg)
    model = make_init(cfg, data, 0)
    arrays, scalars = {}, {}

    def record(key, traj):
        c = np.asarray(traj.conserved)
        arrays[f"{key}_t"] = np.asarray(traj.ts)
        arrays[f"{key}_drift"] = np.max(np.abs(c - c[0]), axis=1)
        scalars[key] = dict(
            max_drift=float(arrays[f"{key}_drift"].max()), final_loss=float(traj.loss[-1]), status=traj.status_name
        )
        return c

    record(
        "flow", gradient_flow(model, data, "mse", p["t1"], rtol=p["flow_tol"], atol=p["flow_tol"], n_save=p["n_save"])
    )
    n_steps = [round(p["t1"] / lr) for lr in p["gd_lrs"]]
    pred = np.asarray(predicted_drift(model, data, p["gd_lrs"], n_steps, max(n_steps)))
    for i, (lr, n) in enumerate(zip(p["gd_lrs"], n_steps, strict=True)):
        key = f"gd_{lr:g}"
        c = record(key, train(model, data, "mse", "gd", lr=lr, steps=n, n_save=min(p["n_save"], n + 1)))
        steps = np.round(arrays[f"{key}_t"] / lr).astype(int)
        predicted = pred[i, steps]
        arrays[f"{key}_pred"] = np.max(np.abs(predicted), axis=1)
        scalars[key]["max_abs_error_of_prediction"] = float(np.max(np.abs((c - c[0]) - predicted)))
    for opt in p["others"]:
        record(
            opt,
            train(model, data, "mse", opt, lr=p["other_lr"], steps=round(p["t1"] / p["other_lr"]), n_save=p["n_save"]),
        )
    return arrays, scalars


def _label_sweeps(p: dict, out_dir: str) -> dict:
    """Panel (b): per method and lr, the fraction of runs with a label change and of diverged runs."""
    table = {}
    for method in p["sweep_methods"]:
        for lr in p["sweep_lrs"]:
            rows = _common.sweep(_config(p, method, lr), os.path.join(out_dir, "sweeps", f"{method}-lr{lr:g}"))
            finite = np.isfinite(rows["final_loss"])
            n_ok = max(int(finite.sum()), 1)
            table[f"{method}_{lr:g}"] = dict(
                n=int(len(finite)),
                n_pathological=int(rows["n_pathological"].sum()),
                diverged=float(1 - finite.mean()),
                label_changed=float(np.sum((rows["label_changes"] > 0) & finite) / n_ok),
                start_ne_end=float(np.sum((rows["label_start"] != rows["label_end"]) & finite) / n_ok),
                median_drift=float(np.median(rows["drift"][finite])) if finite.any() else float("nan"),
            )
    return table


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Compute (or reuse) the drift curves and the label-change sweeps in ``out_dir``, then draw."""
    _common.setup()
    p = _params(quick)

    def compute():
        arrays, scalars = _drift_curves(p)
        scalars["labels"] = _label_sweeps(p, out_dir)
        return arrays, scalars

    _common.cached(out_dir, NAME, p, compute)
    return draw(out_dir)


def draw(out_dir: str) -> list[str]:
    """(a) drift against time; (b) fraction of label changes against the learning rate."""
    a, doc = _common.load_result(out_dir, NAME)
    p, s = doc["params"], doc["scalars"]
    fig, (ax, bx) = figure(ncols=2, width=2 * 3.4, aspect=0.85)
    colors = _colors()
    blues = matplotlib.colormaps["Blues"](np.linspace(0.45, 1.0, len(p["gd_lrs"])))
    floor = 1e-16
    ax.semilogy(a["flow_t"][1:], np.maximum(a["flow_drift"][1:], floor), color="black", label="exact flow")
    for i, lr in enumerate(p["gd_lrs"]):
        key, color = f"gd_{lr:g}", blues[i]
        ax.semilogy(
            a[f"{key}_t"][1:], np.maximum(a[f"{key}_drift"][1:], floor), color=color, label=f"GD $\\eta$ = {lr:g}"
        )
        every = max(1, len(a[f"{key}_t"]) // 12)
        ax.semilogy(
            a[f"{key}_t"][1::every], np.maximum(a[f"{key}_pred"][1::every], floor), "o", mfc="none", color=color, ms=4
        )
    for opt in p["others"]:
        ax.semilogy(
            a[f"{opt}_t"][1:],
            np.maximum(a[f"{opt}_drift"][1:], floor),
            "--",
            color=colors[opt],
            label=f"{_pretty(opt)} $\\eta$ = {p['other_lr']:g}",
        )
    ax.plot([], [], "o", mfc="none", color="0.3", ms=4, label="GD: $\\sum \\eta^2(\\|g_w\\|^2-\\|g_v\\|^2)$")
    ax.set(
        xlabel="time $t$ (optimizers: $t = \\eta\\cdot$step)",
        ylabel="$\\max_k |\\delta_k(t) - \\delta_k(0)|$",
        title=f"(a) drift of the conserved quantities ($\\delta_k(0) = -{p['c']:g}$)",
    )
    ax.legend(frameon=False, fontsize=6, loc="center", ncol=2)
    for method in p["sweep_methods"]:
        color = colors[method]
        lrs = p["sweep_lrs"]
        frac = [s["labels"][f"{method}_{lr:g}"]["label_changed"] for lr in lrs]
        div = [s["labels"][f"{method}_{lr:g}"]["diverged"] for lr in lrs]
        bx.semilogx(lrs, frac, "o-", color=color, label=_pretty(method))
        hit = [(lr, x) for lr, x in zip(lrs, div, strict=True) if x > 0]
        if hit:
            bx.semilogx(*zip(*hit, strict=True), "x", color=color, ms=6, mew=1.5)
    bx.plot([], [], "x", color="0.3", ms=6, mew=1.5, label="diverged (fraction)")
    bx.set(
        xlabel="learning rate $\\eta$",
        ylabel="fraction of runs",
        ylim=(-0.03, 1.03),
        title=f"(b) component label changes by $t = {p['t1']:g}$ ({p['n_inits']} inits each)",
    )
    bx.legend(frameon=False, fontsize=6)
    return _common.save_figure(fig, out_dir, NAME)


def _pretty(name: str) -> str:
    return {"gd": "GD", "sgd": "SGD", "momentum": "momentum", "adam": "Adam"}[name]
