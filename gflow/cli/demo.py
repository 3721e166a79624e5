"""``gflow demo``: the topological obstruction of docs/theory.md §1 on the toy problem of §5.

Two initializations of a width-2 net, both relocated (Prop. 4) to ``delta = (-1, -1)``:
both neurons are pathological, so the sign of each output weight can never change.
The target ``relu(x1) - relu(x2)`` needs one negative output weight: with signs (+, -)
it is reachable, with (+, +) it is not, whatever the optimizer does while it follows
the flow. Each is trained with the exact flow and with small-lr GD.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import jax.random as jr

from ..data import toy
from ..discrete import train
from ..flow.solve import gradient_flow
from ..invariants import relocate
from ..nets.shallow import ShallowReLU

CASES = (("reachable", (1.0, -1.0)), ("unreachable", (1.0, 1.0)))


def run_demo(
    out_dir: str = "gflow-demo", *, n: int = 1000, t1: float = 20.0, lr: float = 1e-2, tol: float = 1e-6, seed: int = 0
) -> dict:
    """Run the four trainings and draw the figure; returns ``{"rows": [...], "figure": path}``."""
    data = toy(n=n, key=jr.PRNGKey(seed))
    base = ShallowReLU(2, 2, key=jr.PRNGKey(seed + 1))
    rows, trajs = [], {}
    for name, signs in CASES:
        model = relocate(base, -1.0, jnp.array(signs))
        runs = {
            "exact flow": gradient_flow(model, data, "mse", t1, rtol=tol, atol=tol),
            f"GD lr={lr:g}": train(model, data, "mse", "gd", lr=lr, steps=round(t1 / lr)),
        }
        for method, traj in runs.items():
            s = traj.summary()
            rows.append(
                dict(
                    init=f"{name} v-signs {_signs(signs)}",
                    method=method,
                    final_loss=s["final_loss"],
                    drift=s["drift"],
                    steps=s["steps"],
                    grad_evals=s["grad_evals"],
                    status=s["status"],
                )
            )
            trajs[(name, method)] = traj
    figure = _draw(trajs, os.path.join(out_dir, "demo"))
    return dict(rows=rows, figure=figure)


def _signs(signs):
    return "(" + ", ".join("+" if s > 0 else "-" for s in signs) + ")"


def _draw(trajs, path):
    from ..figures.style import PALETTE, figure, save

    fig, (ax_loss, ax_drift) = figure(ncols=2, width=6.8, aspect=0.8)
    for (name, method), traj in trajs.items():
        color = PALETTE[0] if name == "reachable" else PALETTE[1]
        style = "-" if method == "exact flow" else "--"
        label = f"{name}, {method}"
        ts = traj.ts
        ax_loss.semilogy(ts, traj.loss, style, color=color, label=label)
        dev = jnp.max(jnp.abs(traj.conserved - traj.conserved[0]), axis=-1)
        ax_drift.semilogy(ts[1:], jnp.maximum(dev[1:], 1e-17), style, color=color, label=label)
    ax_loss.set(
        xlabel="time $t$ (GD: $t = \\eta \\cdot$ step)",
        ylabel="training loss $L(\\theta(t))$",
        title="Loss: reachable vs obstructed",
    )
    ax_drift.set(
        xlabel="time $t$", ylabel="$\\max_k |\\delta_k(t) - \\delta_k(0)|$", title="Drift of the conserved quantities"
    )
    ax_drift.legend(frameon=False, loc="center right")
    return save(fig, path, formats=("png",))[0]


def format_table(rows) -> str:
    header = (
        f"{'initialization':<26} {'method':<13} {'final loss':>11} {'max|Δδ|':>9} "
        f"{'steps':>7} {'grad evals':>10}  status"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['init']:<26} {r['method']:<13} {r['final_loss']:>11.3e} {r['drift']:>9.1e} "
            f"{r['steps']:>7d} {r['grad_evals']:>10d}  {r['status']}"
        )
    return "\n".join(lines)
