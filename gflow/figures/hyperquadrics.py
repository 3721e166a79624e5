"""The invariant hyperquadrics of one neuron (docs/theory.md §1, NeurIPS paper Prop. 2), with exact flows.

One hidden neuron with ``d = 2`` inputs and ``e = 1`` output, ``f(x) = v relu(w . x)``, keeps
``delta = ||w||^2 - v^2`` constant along the gradient flow, so ``(w_1, w_2, v)`` moves on

- ``delta > 0``: the one-sheet hyperboloid ``||w|| = sqrt(delta + v^2)``, ``S^1 x R``
  (connected: ``v`` can change sign through the waist ``v = 0``);
- ``delta < 0``: the two-sheet hyperboloid ``v = ±sqrt(||w||^2 - delta)``, ``R^2 x S^0``
  (two components: the sign of ``v`` never changes).

The flows fit a single-neuron teacher ``relu(u . x)`` (``u`` a unit vector, MSE on Gaussian
inputs). On a sheet ``delta`` its representatives are ``w = alpha u``, ``v = 1/alpha`` with
``alpha^2 = (delta + sqrt(delta^2 + 4)) / 2`` (Prop. 4): present on the one-sheet
hyperboloid and on the upper sheet ``v > 0`` only. Flows started on the lower sheet cannot
reach it; they switch the neuron off (``w -> 0``, the sheet's apex ``v = -sqrt(-delta)``).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..data import teacher_student
from ..flow.solve import gradient_flow
from ..invariants import relocate
from ..nets.shallow import ShallowReLU
from . import _common
from .style import PALETTE, figure

DESCRIPTION = "Invariant hyperquadrics of one neuron (d=2, e=1): one- and two-sheet hyperboloids with exact flows"
NAME = "hyperquadrics"


def _params(quick: bool) -> dict:
    return dict(
        delta=1.0,
        teacher_angle=np.pi / 6,
        n_data=200,
        per_sign=1 if quick else 2,
        t1=100.0,
        rtol=1e-8,
        atol=1e-8,
        n_save=101 if quick else 401,
        seed=0,
    )


def teacher(angle: float):
    """The teacher ``relu(u . x)``, ``u = (cos angle, sin angle)``, as a ShallowReLU(2, 1)."""
    t = ShallowReLU(2, 1, key=jr.PRNGKey(0))
    t = eqx.tree_at(lambda m: m.W, t, jnp.array([[np.cos(angle), np.sin(angle)]]))
    return eqx.tree_at(lambda m: m.V, t, jnp.ones((1, 1)))


def _inits(p: dict):
    """``(sheet delta, v sign, model)``: ``per_sign`` inits of each sign of ``v`` on each sheet."""
    out, i = [], 0
    for delta in (p["delta"], -p["delta"]):
        for sign in (1.0, -1.0):
            for _ in range(p["per_sign"]):
                base = ShallowReLU(2, 1, key=jr.fold_in(jr.PRNGKey(p["seed"]), i))
                out.append((delta, sign, relocate(base, delta, jnp.array([[sign]]))))
                i += 1
    return out


def _compute(p: dict):
    data = teacher_student(teacher(p["teacher_angle"]), p["n_data"], jr.PRNGKey(p["seed"] + 1), n_test=0)
    w, v, loss, cons, deltas, signs, status = [], [], [], [], [], [], []
    for delta, sign, model in _inits(p):
        traj = gradient_flow(model, data, "mse", p["t1"], rtol=p["rtol"], atol=p["atol"], n_save=p["n_save"])
        models = traj.models  # the ShallowReLU, with a leading time axis
        assert isinstance(models, ShallowReLU) and traj.conserved is not None
        w.append(np.asarray(models.W[:, 0, :]))
        v.append(np.asarray(models.V[:, 0, 0]))
        loss.append(np.asarray(traj.loss))
        cons.append(np.asarray(traj.conserved[:, 0]))
        deltas.append(delta)
        signs.append(sign)
        status.append(traj.status_name)
        ts = np.asarray(traj.ts)
    arrays = dict(
        ts=ts,
        w=np.stack(w),
        v=np.stack(v),
        loss=np.stack(loss),
        conserved=np.stack(cons),
        delta=np.array(deltas),
        sign=np.array(signs),
    )
    drift = np.max(np.abs(arrays["conserved"] - arrays["conserved"][:, :1]), axis=1)
    sign_kept = np.all(np.sign(arrays["v"]) == arrays["sign"][:, None], axis=1)
    zero_loss = float(0.5 * np.mean(np.asarray(data.y_train) ** 2))  # loss of f = 0 (MSE, 1/(2n))
    scalars = dict(
        status=status,
        max_drift=float(drift.max()),
        final_loss=arrays["loss"][:, -1].tolist(),
        v_sign_kept=sign_kept.tolist(),
        zero_function_loss=zero_loss,
    )
    return arrays, scalars


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Integrate (or reuse) the single-neuron flows in ``out_dir``, then draw."""
    return _common.run_cached(out_dir, NAME, _params(quick), _compute, draw)


def _teacher_point(delta: float, angle: float) -> np.ndarray:
    """``(w_1, w_2, v)`` of the teacher's representative on the sheet ``delta`` (Prop. 4)."""
    alpha = np.sqrt((delta + np.sqrt(delta**2 + 4.0)) / 2.0)
    return np.array([alpha * np.cos(angle), alpha * np.sin(angle), 1.0 / alpha])


def _surface(ax, delta: float, r_max: float, v_max: float, color: str) -> None:
    phi = np.linspace(0, 2 * np.pi, 48)
    if delta > 0:  # ||w||^2 = delta + v^2
        vv, pp = np.meshgrid(np.linspace(-v_max, v_max, 25), phi)
        rr = np.sqrt(delta + vv**2)
        ax.plot_surface(rr * np.cos(pp), rr * np.sin(pp), vv, color=color, alpha=0.18, linewidth=0)
        return
    rr, pp = np.meshgrid(np.linspace(0, r_max, 20), phi)  # v = ±sqrt(||w||^2 - delta)
    for s in (1, -1):
        ax.plot_surface(
            rr * np.cos(pp), rr * np.sin(pp), s * np.sqrt(rr**2 - delta), color=color, alpha=0.18, linewidth=0
        )


def draw(out_dir: str) -> list[str]:
    """Two 3-D panels: the one-sheet (``delta > 0``) and two-sheet (``delta < 0``) hyperboloids."""
    a, doc = _common.load_result(out_dir, NAME)
    p = doc["params"]
    fig, axes = figure(ncols=2, width=2 * 3.4, aspect=1.0, subplot_kw=dict(projection="3d"))
    r_max = 1.05 * np.max(np.linalg.norm(a["w"], axis=-1))
    v_max = 1.05 * np.max(np.abs(a["v"]))
    for ax, delta in zip(axes, np.unique(a["delta"])[::-1], strict=True):
        rows = np.nonzero(a["delta"] == delta)[0]
        _surface(ax, delta, r_max, np.sqrt(max(r_max**2 - delta, 0.0)) if delta > 0 else v_max, "0.5")
        for c, i in enumerate(rows):
            w, v = a["w"][i], a["v"][i]
            color = PALETTE[c % len(PALETTE)]
            ax.plot(w[:, 0], w[:, 1], v, color=color, lw=1.4)
            ax.scatter(*w[0], v[0], color=color, marker="o", s=14)
            ax.scatter(*w[-1], v[-1], color=color, marker="s", s=14)
        ax.scatter(*_teacher_point(delta, p["teacher_angle"]), color="black", marker="*", s=60, depthshade=False)
        drift = np.max(np.abs(a["conserved"][rows] - a["conserved"][rows, :1]))
        kind = "one sheet: $v$ may change sign" if delta > 0 else "two sheets: sign of $v$ fixed"
        ax.set_title(
            f"$\\delta = \\|w\\|^2 - v^2 = {delta:g}$ ({kind})\nmax $|\\Delta\\delta|$ along the flows = {drift:.1e}"
        )
        ax.set(xlabel="$w_1$", ylabel="$w_2$", zlabel="$v$")
        ax.view_init(elev=18, azim=-60)
    fig.text(
        0.5,
        0.0,
        "exact gradient flows (circle: start, square: end) fitting the teacher "
        "$\\mathrm{relu}(u\\cdot x)$ (black star: its representative on the set)",
        ha="center",
        va="top",
    )
    return _common.save_figure(fig, out_dir, NAME)
