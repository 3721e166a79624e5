"""Components of a DAG: which weights can never change sign, and how many pieces the invariant set has.

A small ReLU network with skip connections (2 inputs, 3 hidden nodes, 1 output, 8 edges). Every hidden node
h conserves c_h = (sum of squared incoming weights) - (sum of squared outgoing weights). An edge is
*rigid* when its squared weight has a positive minimum over {u >= 0 : B u = c} (one linear
program): its sign can never change, and the invariant set has 2^(number of rigid edges)
components (theory §2). The example draws the graph with its rigid edges, runs the exact flow and
shows that rigid weights keep their sign while others may cross zero, and maps the number of
components over two of the conserved values. Finally it prunes a hidden node and finds the
singular point that this makes.

    python docs/examples/dag_components.py [--quick] [--out DIR]

``--quick`` (or GFLOW_EXAMPLES_QUICK=1) integrates to t = 2 and maps a coarser grid; the figure is
``DIR/dag_components.png`` (default: docs/examples/figures).
"""

from __future__ import annotations

import argparse
import os

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import gflow as gf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

GRAPH = gf.Graph(
    n_in=2,
    n_hidden=3,
    n_out=1,
    edges=(
        ("x0", "h0"),
        ("x1", "h0"),
        ("x1", "h1"),
        ("h0", "h2"),
        ("h1", "h2"),
        ("h2", "y0"),
        ("h0", "y0"),  # skip connection over h2
        ("x0", "y0"),  # linear skip from an input
    ),
)
C = (-0.5, 0.4, -0.3)  # conserved values the network is relocated to
POS = {"x0": (0, 1.5), "x1": (0, 0.5), "h0": (1, 1.6), "h1": (1, 0.4), "h2": (2, 1.0), "y0": (3, 1.0)}


def draw_graph(ax, rigid: list[int], c) -> None:
    for e, (s, t) in enumerate(GRAPH.edges):
        (x0, y0), (x1, y1) = POS[s], POS[t]
        is_rigid = e in rigid
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops=dict(
                arrowstyle="-|>",
                color="C3" if is_rigid else "0.6",
                lw=2.5 if is_rigid else 1.2,
                shrinkA=12,
                shrinkB=12,
                connectionstyle="arc3,rad=-0.4" if s == "x0" and t == "y0" else None,
            ),
        )
    for name, (x, y) in POS.items():
        ax.plot(x, y, "o", ms=22, color="white", mec="k")
        ax.text(x, y, name, ha="center", va="center", fontsize=9)
        if name.startswith("h"):
            ax.text(x, y - 0.3, f"c = {c[int(name[1:])]:+.1f}", ha="center", fontsize=8)
    ax.set_xlim(-0.4, 3.4)
    ax.set_ylim(-0.1, 2.1)
    ax.axis("off")
    ax.set_title(f"rigid edges (red): {len(rigid)}, so 2^{len(rigid)} components", fontsize=9)


def component_map(n_grid: int):
    """log2 of the number of components over (c_h0, c_h2), with c_h1 fixed."""
    grid = np.linspace(-1.0, 1.0, n_grid)
    counts = np.zeros((n_grid, n_grid))
    for i, c2 in enumerate(grid):
        for j, c0 in enumerate(grid):
            counts[i, j] = np.log2(gf.dag_components(GRAPH, np.array([c0, C[1], c2]))[0])
    return grid, counts


def main(out_dir: str = os.path.join(HERE, "figures"), quick: bool = False) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    model = gf.relocate(gf.DAGNet(GRAPH, key=jr.PRNGKey(3)), jnp.array(C))
    n_comp, label = gf.dag_components(model)
    rigid = gf.dag_rigid_edges(model)
    print(f"conserved values c = {np.asarray(gf.conserved(model)).round(12)}")
    print(f"rigid edges: {[GRAPH.edges[e] for e in rigid]}")
    print(f"components: {n_comp}; this network's label (signs of its rigid weights): {label}")

    data = gf.toy(n=200, key=jr.PRNGKey(0))
    t1 = 2.0 if quick else 10.0
    traj = gf.gradient_flow(model, data, "mse", t1, rtol=1e-8, atol=1e-8)
    w = np.asarray(traj.models.weights)  # (time, edges)
    rigid_signs_kept = bool(np.all(np.sign(w[:, rigid]) == np.sign(w[0, rigid])))
    crossed = [GRAPH.edges[e] for e in range(GRAPH.n_edges) if np.any(np.sign(w[:, e]) != np.sign(w[0, e]))]
    print(f"exact flow to t = {t1:g}: {traj.status_name}, max|Δc| = {traj.summary()['drift']:.1e}")
    print(f"  rigid weights kept their signs: {rigid_signs_kept}; weights that crossed zero: {crossed}")

    pruned = np.asarray(model.weights).copy()
    for e, (s, t) in enumerate(GRAPH.edges):
        if "h1" in (s, t):
            pruned[e] = 0.0
    singular = gf.singular_subnetworks(GRAPH, pruned)
    print(f"generic point: singular sub-networks {gf.singular_subnetworks(model)}")
    print(f"h1 pruned (all its edges zero): singular sub-networks {[sorted(s) for s in singular]}")

    grid, counts = component_map(5 if quick else 41)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw=dict(width_ratios=(1.1, 1.2, 1)))
    draw_graph(axes[0], rigid, C)
    ts = np.asarray(traj.ts)
    for e, (s, t) in enumerate(GRAPH.edges):
        is_rigid = e in rigid
        axes[1].plot(
            ts,
            w[:, e],
            lw=2 if is_rigid else 1,
            color="C3" if is_rigid else "0.6",
            label=f"{s}→{t}" if is_rigid else None,
        )
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set_xlabel("time t")
    axes[1].set_ylabel("edge weight")
    axes[1].set_title("exact flow: rigid weights (red) never reach 0", fontsize=9)
    axes[1].legend(fontsize=7)
    im = axes[2].imshow(
        counts, origin="lower", extent=(grid[0], grid[-1], grid[0], grid[-1]), cmap="viridis", aspect="auto"
    )
    axes[2].plot(C[0], C[2], "r*", ms=10)
    axes[2].set_xlabel("c_h0")
    axes[2].set_ylabel("c_h2")
    axes[2].set_title(f"log2(number of components), c_h1 = {C[1]}", fontsize=9)
    fig.colorbar(im, ax=axes[2])
    fig.tight_layout()
    figure = os.path.join(out_dir, "dag_components.png")
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    print("wrote", figure)
    return dict(
        model=model,
        rigid=rigid,
        n_components=n_comp,
        label=label,
        trajectory=traj,
        rigid_signs_kept=rigid_signs_kept,
        singular=singular,
        grid=grid,
        counts=counts,
        figure=figure,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (as in the test suite)")
    parser.add_argument("--out", default=os.path.join(HERE, "figures"), help="folder for the figure")
    args = parser.parse_args()
    main(args.out, quick=args.quick or os.environ.get("GFLOW_EXAMPLES_QUICK") == "1")
