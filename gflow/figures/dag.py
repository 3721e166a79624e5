"""DAG connectivity and singularities (DAG paper; docs/theory.md §2).

The graph: inputs ``x0, x1, x2``, one output ``y0``, four hidden nodes.

- main path: ``x0, x1 -> h0 -> y0`` and a skip edge ``x1 -> y0``;
- side sub-network ``S = {h1, h2, h3}``: ``x2 -> h1, h2 -> h3 -> y0``, where ``h3`` is a
  bottleneck (the only way out of ``S``).

With ``u = w * w`` and ``B`` the hidden x edge incidence, ``c = B u`` is conserved
(``c_h = sum_in w^2 - sum_out w^2``) and the invariant set has ``2^{#rigid edges}``
components, an edge being rigid when ``min u_e > 0`` on ``{u >= 0 : B u = c}``.

**Panel (a).** ``c_h0 = 1/2`` fixed, ``c_h1 = c_h2 = a``, ``c_h3 = b``. For ``a < 0`` both
``h1 -> h3`` and ``h2 -> h3`` are rigid (``u_{h_i h3} >= -a``) and
``u_{h3 y0} = u_{h1 h3} + u_{h2 h3} - b >= -2a - b``: the exit edge is rigid too when
``b < -2a`` (8 components) and flexible when ``b > -2a`` (4). On the line
``b = -2a`` (``a <= 0``: ``sum_{h in S} c_h = 0`` with feasible inner weights) the boundary
edges of ``S`` — ``x2 -> h1``, ``x2 -> h2``, ``h3 -> y0`` — can all vanish together while
the inner ones stay at ``u = -a``: a pruned sub-network, a singular point of ``w -> B(w*w)``
(its Jacobian ``2 B diag(w)`` loses rank).

**Panels (b), (c).** Data ``x ~ N(0, I_3)``, target ``y = relu(x0) + x1/2`` (``x2`` is noise
the target ignores), MSE. Initializations (Kaiming) relocated to ``c = (1/2, -1/2, -1/2, 1)``,
on that line. The main path fits the target, so at a zero of the loss ``S`` must compute 0;
when the flow gets there by pruning, its boundary weights decay algebraically: with ``s``
their common size (``c`` forces equal in- and out-boundary norms) ``S``'s output is
``O(s^2)``, so ``ds/dt = O(-s^3)`` and ``s ~ t^{-1/2}``: slow, as expected at a singular
point, where the loss is flat to higher order.
"""

from __future__ import annotations

import jax
import jax.random as jr
import matplotlib
import matplotlib.colors as mcolors
import numpy as np

from ..data import Dataset
from ..flow.solve import gradient_flow
from ..invariants import project
from ..nets.dag import DAGNet, Graph
from ..topology.dag import dag_components, singular_subnetworks
from . import _common
from .style import PALETTE, figure

DESCRIPTION = "DAG with a bottleneck: number of components vs balances c; a flow approaching a pruned sub-network"
NAME = "dag"

EDGES = (
    ("x0", "h0"),
    ("x1", "h0"),
    ("h0", "y0"),
    ("x1", "y0"),
    ("x2", "h1"),
    ("x2", "h2"),
    ("h1", "h3"),
    ("h2", "h3"),
    ("h3", "y0"),
)
SUB = ("h1", "h2", "h3")  # the side sub-network S
C_MAIN = 0.5  # c_h0 in panel (a) and in the flows
C_FLOW = (C_MAIN, -0.5, -0.5, 1.0)  # (c_h0, a, a, b) with b = -2a


def graph():
    """The :class:`gflow.Graph` of the module docstring."""
    return Graph(3, 4, 1, EDGES)


def _edge_roles(g) -> np.ndarray:
    """Per edge: ``"boundary"`` (between S and the rest), ``"inner"`` (inside S), ``"main"``."""
    inside = [(s in SUB, t in SUB) for s, t in g.edges]
    return np.array(["inner" if a and b else ("boundary" if a or b else "main") for a, b in inside])


def _params(quick: bool) -> dict:
    return dict(
        c_main=C_MAIN,
        c_flow=list(C_FLOW),
        grid=9 if quick else 41,
        c_max=1.5,
        n_data=500,
        t1=1e3 if quick else 1e5,
        n_save=41 if quick else 81,
        seeds=2 if quick else 8,
        rtol=1e-8,
        atol=1e-8,
        data_seed=1,
    )


def _components(p: dict):
    """``log2`` of the number of components on the ``(a, b)`` grid (NaN: no such weights)."""
    g = graph()
    axis = np.linspace(-p["c_max"], p["c_max"], p["grid"])
    rigid = np.full((len(axis), len(axis)), np.nan)  # [b index, a index]
    for i, b in enumerate(axis):
        for j, a in enumerate(axis):
            try:
                rigid[i, j] = np.log2(dag_components(g, [p["c_main"], a, a, b])[0])
            except ValueError:
                pass
    return dict(axis=axis, rigid=rigid), {}


def dataset(p: dict):
    """``x ~ N(0, I_3)`` (train and test), ``y = relu(x0) + x1 / 2``."""
    x = jr.normal(jr.PRNGKey(p["data_seed"]), (2 * p["n_data"], 3))
    y = jax.nn.relu(x[:, 0]) + 0.5 * x[:, 1]
    n = p["n_data"]
    return Dataset(x[:n], y[:n], x[n:], y[n:])


def _flows(p: dict):
    """Exact flows from ``seeds`` Kaiming inits relocated to ``c_flow``; weights at log-spaced times."""
    g, data = graph(), dataset(p)
    ts = np.concatenate([[0.0], np.logspace(-2, np.log10(p["t1"]), p["n_save"] - 1)])
    weights, loss, drift, steps, status = [], [], [], [], []
    for seed in range(p["seeds"]):
        model = project(DAGNet(g, key=jr.PRNGKey(seed)), np.asarray(p["c_flow"]))
        traj = gradient_flow(model, data, "mse", ts=ts, rtol=p["rtol"], atol=p["atol"], max_steps=2**24)
        models = traj.models  # the DAGNet, with a leading time axis
        assert isinstance(models, DAGNet)
        weights.append(np.asarray(models.weights))
        loss.append(np.asarray(traj.loss))
        s = traj.summary()
        drift.append(s["drift"])
        steps.append(s["steps"])
        status.append(s["status"])
    weights = np.stack(weights)
    roles = _edge_roles(g)
    boundary = np.max(np.abs(weights[:, :, roles == "boundary"]), axis=-1)  # (seed, time)
    pruned = [sorted(singular_subnetworks(g, w[-1], tol=0.05)) for w in weights]
    scalars = dict(
        drift=drift,
        steps=steps,
        status=status,
        final_loss=[float(v[-1]) for v in loss],
        final_boundary=boundary[:, -1].tolist(),
        pruned=[[sorted(s) for s in x] for x in pruned],
    )
    return dict(ts=ts, weights=weights, loss=np.stack(loss), boundary=boundary), scalars


def run(out_dir: str, quick: bool = False) -> list[str]:
    """Compute (or reuse) the component grid and the flows in ``out_dir``, then draw."""
    _common.setup()
    p = _params(quick)
    grid_keys = ("c_main", "grid", "c_max")
    comp, _ = _common.cached(out_dir, "components", {k: p[k] for k in grid_keys}, lambda: _components(p))
    flows, doc = _common.cached(
        out_dir, "flows", {k: v for k, v in p.items() if k not in grid_keys[1:]}, lambda: _flows(p)
    )
    kind = outcomes(doc)
    counts, n = np.unique(comp["rigid"][np.isfinite(comp["rigid"])], return_counts=True)
    scalars = dict(
        outcomes=kind.tolist(),
        decay_exponent=decay_exponents(flows).tolist(),
        final_boundary=doc["scalars"]["final_boundary"],
        final_loss=doc["scalars"]["final_loss"],
        inner_final=np.abs(flows["weights"][:, -1][:, _edge_roles(graph()) == "inner"]).tolist(),
        max_drift=max(doc["scalars"]["drift"]),
        steps=doc["scalars"]["steps"],
        component_cells={int(2**k): int(v) for k, v in zip(counts, n, strict=True)},
    )
    _common.save_result(out_dir, NAME, {}, p, scalars)
    return draw(out_dir)


def decay_exponents(flows: dict, decades: float = 2.0) -> np.ndarray:
    """Per seed: the slope of ``log max boundary |w|`` against ``log t`` over the last
    ``decades`` decades of time (``-1/2`` for the algebraic approach to a pruned S)."""
    ts, b = flows["ts"], flows["boundary"]
    i = np.searchsorted(ts, ts[-1] / 10**decades)
    return np.log(b[:, -1] / b[:, i]) / np.log(ts[-1] / ts[i])


def outcomes(doc: dict, loss_tol: float = 1e-6) -> np.ndarray:
    """Per seed: ``"pruned"`` (final loss < ``loss_tol`` and every boundary weight of S below
    0.05, so ``singular_subnetworks(tol=0.05)`` finds S), ``"cancels"`` (fits, but S outputs 0
    on the data with non-zero boundary weights: its two branches cancel or ``h3`` is dead) or
    ``"stuck"`` (does not fit)."""
    s = doc["scalars"]
    fits = np.asarray(s["final_loss"]) < loss_tol
    pruned = np.array([list(SUB) in x for x in s["pruned"]])
    return np.where(fits & pruned, "pruned", np.where(fits, "cancels", "stuck"))


def draw(out_dir: str) -> list[str]:
    """(a) components over ``(a, b)``; (b) weights of seed 0 along the flow; (c) max boundary
    weight of S for every seed."""
    comp, _ = _common.load_result(out_dir, "components")
    flows, doc = _common.load_result(out_dir, "flows")
    p = doc["params"]
    fig, (ax_a, ax_b, ax_c) = figure(nrows=3, aspect=0.62)

    axis, rigid = comp["axis"], comp["rigid"]
    step = axis[1] - axis[0]
    edges = np.concatenate([axis - step / 2, [axis[-1] + step / 2]])
    levels = np.arange(np.nanmax(rigid) + 2) - 0.5
    cmap = _discrete_cmap("viridis", len(levels) - 1)
    mesh = ax_a.pcolormesh(edges, edges, rigid, cmap=cmap, norm=mcolors.BoundaryNorm(levels, cmap.N))
    bar = fig.colorbar(mesh, ax=ax_a, ticks=np.arange(len(levels) - 1))
    bar.ax.set_yticklabels([f"{2**k}" for k in range(len(levels) - 1)])
    bar.set_label("components $2^{\\#\\mathrm{rigid}}$")
    a_line = np.linspace(-axis[-1] / 2, 0, 10)
    ax_a.plot(a_line, -2 * a_line, color="black", ls="--", lw=1.2, label="$\\sum_{h\\in S} c_h = 0$: $S$ prunable")
    ax_a.plot(p["c_flow"][1], p["c_flow"][3], marker="*", color=PALETTE[1], ms=9, ls="none", label="flows below")
    ax_a.set(
        xlabel="$a = c_{h_1} = c_{h_2}$",
        ylabel="$b = c_{h_3}$ (bottleneck)",
        title=f"(a) components of the invariant set ($c_{{h_0}} = {p['c_main']:g}$)",
    )
    ax_a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)

    ts, w = flows["ts"][1:], np.abs(flows["weights"][0, 1:])
    roles = _edge_roles(graph())
    for e, (s, t) in enumerate(EDGES):
        style = dict(boundary=dict(lw=1.5), inner=dict(ls="--", lw=1.2), main=dict(color="0.6", lw=0.8))[roles[e]]
        label = f"{s}$\\to${t}" if roles[e] != "main" else None
        ax_b.loglog(ts, w[:, e], label=label, **style)
    ref = flows["boundary"][0, -1] * np.sqrt(ts[-1] / ts)
    mid = ts > ts[-1] / 300
    slope = decay_exponents(flows)[0]
    ax_b.loglog(
        ts[mid], ref[mid], color="black", ls=":", lw=1.0, label=f"$\\propto t^{{-1/2}}$ (fit: $t^{{{slope:.3f}}}$)"
    )
    ax_b.set(
        xlabel="time $t$",
        ylabel="$|w_e|$",
        title=f"(b) seed 0: boundary of $S$ $\\to 0$, inner edges $\\to \\sqrt{{{-p['c_flow'][1]:g}}}$ "
        "(grey: main path)",
    )
    ax_b.legend(ncol=2, loc="lower left")

    kind = outcomes(doc)
    colors = dict(pruned=PALETTE[0], cancels=PALETTE[2], stuck=PALETTE[1])
    labels = dict(pruned="fits, $S$ pruned", cancels="fits, $S$ silent, not pruned", stuck="loss stays > $10^{-6}$")
    for i, line in enumerate(flows["boundary"]):
        ax_c.loglog(ts, line[1:], color=colors[kind[i]], lw=1.0)
    for k, label in labels.items():
        ax_c.plot([], [], color=colors[k], label=f"{label} ({np.sum(kind == k)}/{len(kind)})")
    ax_c.set(
        xlabel="time $t$",
        ylabel="max boundary $|w_e|$ of $S$",
        title=f"(c) {len(kind)} Kaiming inits relocated to the star; Tsit5, rtol = atol = {p['rtol']:g}",
    )
    ax_c.legend(loc="lower left")
    return _common.save_figure(fig, out_dir, NAME)


def _discrete_cmap(name: str, n: int):
    """``n`` discrete colours of the colour map ``name``."""
    return matplotlib.colormaps[name].resampled(n)
