"""A 10^4-init sweep and its summary: how often does a random initialization start obstructed,
and what does that cost at the end of training?

10^4 initializations of the toy problem's width-2 network (200 training points) (target relu(x1) - relu(x2)), each
neuron relocated to |delta_k| = 1 with a random sign and random output signs, run with the exact
flow to t = 10. The target needs a convex and a concave kink: with P (M) pathological neurons of
output sign + (-) and F free ones, it is reachable iff max(0, 1 - P) + max(0, 1 - M) <= F
(theory §1). The summary groups the final losses by that prediction and checks that no exact
flow changed its component.

    python docs/examples/sweep_summary.py [--quick] [--out DIR] [--store DIR]

``--quick`` (or GFLOW_EXAMPLES_QUICK=1) runs 16 initializations on 100 points to t = 5; the
figure is ``DIR/sweep_summary.png`` (default: docs/examples/figures). The sweep's rows go to
``--store`` (default: a temporary folder); run again with the same ``--store`` to resume.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gflow.sweep import SweepConfig, run_sweep  # noqa: E402
from gflow.sweep.store import read_runs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def config(quick: bool) -> SweepConfig:
    return SweepConfig(
        name="sweep_summary",
        data="toy",
        n_data=100 if quick else 200,
        width=2,
        delta=1.0,
        delta_signs="random",  # each neuron: delta_k = +1 or -1
        signs="random",  # output-weight signs
        t1=5.0 if quick else 10.0,
        n_inits=16 if quick else 10_000,
        chunk_size=16 if quick else 1000,
        # rows do not depend on slots (each slot takes a single solve's steps, up to round-off);
        # one slot compiles the narrowest program, which is most of a small run
        slots=1 if quick else 32,
        rtol=1e-6,
        atol=1e-6,
    )


def summarize(table) -> dict:
    """Columns as NumPy arrays, the reachability prediction and counts per (P, M, F) cell."""
    cols = {name: np.asarray(table.column(name).to_pylist()) for name in table.column_names}
    width = 2
    plus = np.array([s.count("+") for s in cols["label_start"]])
    minus = np.array([s.count("-") for s in cols["label_start"]])
    free = width - cols["n_pathological"]
    reachable = np.maximum(0, 1 - plus) + np.maximum(0, 1 - minus) <= free
    cells = {}
    for p, m, f, r, loss in zip(plus, minus, free, reachable, cols["final_loss"], strict=True):
        cells.setdefault((int(p), int(m), int(f)), dict(reachable=bool(r), losses=[]))["losses"].append(loss)
    return dict(cols=cols, reachable=reachable, cells=cells)


def draw(summary: dict, n: int, t1: float, path: str) -> str:
    cols, reachable, cells = summary["cols"], summary["reachable"], summary["cells"]
    keys = sorted(cells, key=lambda k: (not cells[k]["reachable"], k))
    fig, (ax_hist, ax_cells) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw=dict(width_ratios=(1, 1.4)))
    loss = np.maximum(cols["final_loss"], 1e-12)
    bins = np.logspace(np.log10(loss.min()), np.log10(loss.max()) + 1e-9, 40)
    ax_hist.hist(loss[reachable], bins=bins, alpha=0.7, label=f"predicted reachable ({reachable.sum()})")
    ax_hist.hist(loss[~reachable], bins=bins, alpha=0.7, label=f"predicted unreachable ({(~reachable).sum()})")
    ax_hist.set_xscale("log")
    ax_hist.set_xlabel(f"final training loss at t = {t1:g}")
    ax_hist.set_ylabel("initializations")
    ax_hist.legend(fontsize=8)
    data = [np.maximum(cells[k]["losses"], 1e-12) for k in keys]
    parts = ax_cells.boxplot(data, patch_artist=True, showfliers=False)
    for patch, k in zip(parts["boxes"], keys, strict=True):
        patch.set_facecolor("C0" if cells[k]["reachable"] else "C1")
        patch.set_alpha(0.7)
    ax_cells.set_xticks(range(1, len(keys) + 1))
    ax_cells.set_xticklabels(
        [f"P={p} M={m}\nF={f}\n({len(cells[(p, m, f)]['losses'])})" for p, m, f in keys], fontsize=7
    )
    ax_cells.set_yscale("log")
    ax_cells.set_ylabel("final training loss")
    ax_cells.set_title("by component type (P, M: pathological with v > 0, v < 0; F: free)", fontsize=9)
    for ax in (ax_hist, ax_cells):
        ax.grid(alpha=0.3)
    fig.suptitle(f"Toy problem, {n} initializations, |δ_k| = 1 with random signs, exact flow", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(out_dir: str = os.path.join(HERE, "figures"), quick: bool = False, store: str | None = None) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    cfg = config(quick)
    store = store or tempfile.mkdtemp(prefix="gflow-sweep-summary-")
    info = run_sweep(cfg, store, progress=not quick)
    table = read_runs(store)  # a pyarrow Table, one row per initialization (.to_pandas() with pandas)
    summary = summarize(table)
    cols = summary["cols"]
    changed = int(np.sum(cols["label_start"] != cols["label_end"]))
    print(f"{table.num_rows} rows in {store} ({info['seconds']:.1f} s, {info['failures']} failures)")
    print(f"statuses: { {s: int(np.sum(cols['status'] == s)) for s in np.unique(cols['status'])} }")
    print(f"component changed along the exact flow: {changed} of {table.num_rows} (theory: 0)")
    print(f"max drift of delta: {cols['drift'].max():.1e}")
    for (p, m, f), cell in sorted(summary["cells"].items()):
        losses = np.asarray(cell["losses"])
        verdict = "reachable  " if cell["reachable"] else "unreachable"
        print(f"P={p} M={m} F={f}: {len(losses):5d} inits, predicted {verdict}, median loss {np.median(losses):.2e}")
    figure = draw(summary, table.num_rows, cfg.t1, os.path.join(out_dir, "sweep_summary.png"))
    print("wrote", figure)
    return dict(config=cfg, store=store, summary=summary, label_changes=changed, figure=figure)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (as in the test suite)")
    parser.add_argument("--out", default=os.path.join(HERE, "figures"), help="folder for the figure")
    parser.add_argument("--store", default=None, help="sweep folder (default: a temporary one)")
    args = parser.parse_args()
    main(args.out, quick=args.quick or os.environ.get("GFLOW_EXAMPLES_QUICK") == "1", store=args.store)
