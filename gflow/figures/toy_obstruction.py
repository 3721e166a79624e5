"""The topological obstruction on the toy problem (NeurIPS paper, Fig. 3; THEORY.md §1, §5).

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

import os

import numpy as np

from . import _common

DESCRIPTION = "Fig. 3: toy problem, reachable vs unreachable component; exact flow and small-lr GD, with delta drift"
NAME = "toy_obstruction"
GROUPS = ("reachable", "unreachable")


def _params(quick: bool) -> dict:
    return dict(n_data=500 if quick else 8000, n_inits=8 if quick else 64, c=1.0, t1=20.0, lr=1e-2, tol=1e-6,
                n_save=101 if quick else 201, n_angles=361, seed=0)


def _configs(p: dict):
    """The two sweeps (exact flow, GD) over the same initializations."""
    from ..sweep import SweepConfig

    common = dict(name=NAME, data="toy", n_data=p["n_data"], width=2, delta=-p["c"], signs="random", t1=p["t1"],
                  n_inits=p["n_inits"], rtol=p["tol"], atol=p["tol"], lr=p["lr"], seed=p["seed"],
                  slots=min(p["n_inits"], 64), steps_per_call=512, n_save=11)
    return SweepConfig(method="flow", **common), SweepConfig(method="gd", **common)


def reachable(rows: dict) -> np.ndarray:
    """Rows whose component contains the target: exactly one negative pathological output sign."""
    return (rows["n_pathological"] == 2) & (rows["effective_label_start"] == 1)


def _representatives(p: dict, flow_rows: dict) -> dict:
    """Index of the initialization with the median final flow loss in each group."""
    out = {}
    for name, mask in zip(GROUPS, (reachable(flow_rows), ~reachable(flow_rows))):
        idx = np.nonzero(mask)[0]
        if len(idx) == 0:
            raise ValueError(f"the sweep has no {name} initialization; raise n_inits.")
        order = idx[np.argsort(flow_rows["final_loss"][idx])]
        out[name] = int(flow_rows["index"][order[(len(order) - 1) // 2]])
    return out


def _curves(p: dict, cfg, reps: dict):
    """Flow and GD trajectories of the representatives: losses, drifts, learned functions."""
    import jax
    import jax.numpy as jnp

    from ..discrete import train
    from ..flow import gradient_flow
    from ..sweep import dataset, make_init

    data, _ = dataset(cfg)
    phi = np.linspace(0, 2 * np.pi, p["n_angles"])
    circle = jnp.stack([jnp.cos(phi), jnp.sin(phi)], axis=1)
    arrays = dict(phi=phi, target=np.maximum(np.cos(phi), 0) - np.maximum(np.sin(phi), 0))
    scalars = {}
    for name, index in reps.items():
        model = make_init(cfg, data, index)
        runs = dict(flow=gradient_flow(model, data, "mse", p["t1"], rtol=p["tol"], atol=p["tol"], n_save=p["n_save"]),
                    gd=train(model, data, "mse", "gd", lr=p["lr"], steps=round(p["t1"] / p["lr"]), n_save=p["n_save"]))
        for method, traj in runs.items():
            key = f"{name}_{method}"
            c = np.asarray(traj.conserved)
            arrays[f"{key}_t"] = np.asarray(traj.ts)
            arrays[f"{key}_loss"] = np.asarray(traj.loss)
            arrays[f"{key}_drift"] = np.max(np.abs(c - c[0]), axis=1)
            arrays[f"{key}_f"] = np.asarray(jax.vmap(traj.final)(circle)[:, 0])
            s = traj.summary()
            scalars[key] = dict(index=index, signs=np.sign(np.asarray(model.V[0])).tolist(),
                                final_loss=s["final_loss"], drift=s["drift"], relative_drift=s["drift"] / p["c"],
                                steps=s["steps"], status=s["status"])
    return arrays, scalars


def _summary(rows: dict) -> dict:
    """Per group: count, median / max final loss, fraction below 1e-2, max drift, label changes."""
    out = {}
    for name, mask in zip(GROUPS, (reachable(rows), ~reachable(rows))):
        loss = rows["final_loss"][mask]
        out[name] = dict(n=int(mask.sum()), median_final_loss=float(np.median(loss)), max_final_loss=float(loss.max()),
                         min_final_loss=float(loss.min()), fraction_below_1e_2=float(np.mean(loss < 1e-2)),
                         max_drift=float(rows["drift"][mask].max()),
                         runs_with_label_change=int(np.sum(rows["label_changes"][mask] > 0)))
    return out


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Run (or reuse) the flow and GD sweeps and the representatives' trajectories, then draw."""
    _common.setup()
    p = _params(quick)
    flow_cfg, gd_cfg = _configs(p)
    flow_rows = _common.sweep(flow_cfg, os.path.join(out_dir, "sweep_flow"))
    gd_rows = _common.sweep(gd_cfg, os.path.join(out_dir, "sweep_gd"))
    reps = _representatives(p, flow_rows)

    def compute():
        arrays, scalars = _curves(p, flow_cfg, reps)
        scalars["sweep"] = dict(flow=_summary(flow_rows), gd=_summary(gd_rows))
        return arrays, scalars

    _common.cached(out_dir, NAME, dict(p, representatives=reps), compute)
    return draw(out_dir)


def draw(out_dir: str) -> list[str]:
    """Four panels: learned functions, loss curves, drift, final losses of the sweep."""
    from .style import PALETTE, figure

    a, doc = _common.load_result(out_dir, NAME)
    p, s = doc["params"], doc["scalars"]
    fig, axes = figure(ncols=2, nrows=2, width=2 * 3.4, aspect=0.72)
    (ax_f, ax_loss), (ax_drift, ax_sweep) = axes
    colors = dict(reachable=PALETTE[0], unreachable=PALETTE[1])
    styles = dict(flow=("-", "exact flow"), gd=("--", f"GD $\\eta$ = {p['lr']:g}"))
    ax_f.plot(np.degrees(a["phi"]), a["target"], color="black", lw=2.2, alpha=0.35, label="target")
    for name in GROUPS:
        for method, (ls, label) in styles.items():
            key = f"{name}_{method}"
            signs = "(" + ", ".join("+" if x > 0 else "−" for x in s[key]["signs"]) + ")"
            lab = f"{name} {signs}, {label}"
            ax_f.plot(np.degrees(a["phi"]), a[f"{key}_f"], ls, color=colors[name], label=lab)
            ax_loss.semilogy(a[f"{key}_t"], a[f"{key}_loss"], ls, color=colors[name], label=lab)
            t, dr = a[f"{key}_t"][1:], a[f"{key}_drift"][1:]
            ax_drift.semilogy(t, np.maximum(dr, 1e-17), ls, color=colors[name],
                              label=f"{name}, {label}: max {s[key]['drift']:.1e} ({100 * s[key]['relative_drift']:.2g}% of c)")
    ax_f.set(xlabel="input angle $\\varphi$ (deg), $x = (\\cos\\varphi, \\sin\\varphi)$", ylabel="$f(x)$ at $t_1$",
             title="(a) learned functions on the unit circle", xticks=[0, 90, 180, 270, 360])
    fig.legend(*ax_f.get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
    ax_loss.set(xlabel="time $t$ (GD: $t = \\eta\\cdot$step)", ylabel="training loss",
                title=f"(b) loss, $\\delta_k(0) = -{p['c']:g}$ (both neurons pathological)")
    ax_drift.set(xlabel="time $t$", ylabel="$\\max_k |\\delta_k(t) - \\delta_k(0)|$",
                 title="(c) drift of the conserved quantities")
    ax_drift.legend(frameon=False, fontsize=6, loc="center right")
    _draw_sweep(ax_sweep, out_dir, colors)
    return _common.save_figure(fig, out_dir, NAME)


def _draw_sweep(ax, out_dir: str, colors: dict) -> None:
    """Final loss of every initialization by component and method (jittered strip plot)."""
    rng = np.random.default_rng(0)
    ticks, labels = [], []
    for j, method in enumerate(("flow", "gd")):
        rows = _common.read_rows(os.path.join(out_dir, f"sweep_{method}"))
        for i, name in enumerate(GROUPS):
            mask = reachable(rows) if name == "reachable" else ~reachable(rows)
            loss = rows["final_loss"][mask]
            x = 2 * i + j
            ax.scatter(x + rng.uniform(-0.18, 0.18, len(loss)), loss, s=7, color=colors[name],
                       marker="o" if method == "flow" else "^", alpha=0.7, linewidths=0)
            ax.hlines(np.median(loss), x - 0.3, x + 0.3, color="black", lw=1)
            ticks.append(x)
            labels.append(f"{name}\n{'flow' if method == 'flow' else 'GD'} (n={mask.sum()})")
    order = np.argsort(ticks)
    ax.set_yscale("log")
    ax.set_xticks(np.array(ticks)[order], np.array(labels)[order])
    ax.set(ylabel="final training loss", title="(d) all initializations of the sweep (bar: median)")
