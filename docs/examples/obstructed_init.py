"""Is my initialization obstructed?

For one freshly initialized shallow network: which neurons are pathological (delta_k < 0), how many
components its invariant set has and which one the network starts in. Then, over the
initialization's randomness: the probability that the set is disconnected, in closed form
(1 - (1 - p)^l with p = 1 - F_{1,d}(d sigma_w^2 / sigma_v^2)) against a Monte Carlo estimate, for
Kaiming and Xavier initializations.

    python docs/examples/obstructed_init.py [--quick] [--out DIR]

``--quick`` (or GFLOW_EXAMPLES_QUICK=1) uses fewer widths and samples; the figure is
``DIR/obstructed_init.png`` (default: docs/examples/figures).
"""

from __future__ import annotations

import argparse
import os

import jax

jax.config.update("jax_enable_x64", True)

import jax.random as jr  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import gflow as gf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def one_network(in_size: int = 2, width: int = 16, seed: int = 0) -> dict:
    """The topology of one Kaiming-initialized network's invariant set."""
    model = gf.ShallowReLU(in_size, width, key=jr.PRNGKey(seed))
    delta = np.asarray(gf.conserved(model))
    n_pos, n_neg, n_zero = gf.neuron_counts(model)
    out = dict(
        delta=delta,
        counts=(n_pos, n_neg, n_zero),
        n_components=gf.n_components(model),
        n_effective=gf.n_effective_components(model),
        label=np.asarray(gf.component_label(model)),
        effective_label=int(gf.effective_label(model)),
        betti=gf.betti_numbers(model),
    )
    print(f"d = {in_size}, l = {width}: delta_k = {np.array2string(delta, precision=2)}")
    print(f"  pathological neurons (delta_k < 0): {n_neg} of {width}")
    print(f"  components: {out['n_components']} (= 2^{n_neg}), effective components: {out['n_effective']}")
    print(f"  this network's component label (sign of v_k on pathological neurons): {out['label']}")
    print(f"  its effective component (pathological neurons with v_k < 0): {out['effective_label']}")
    return out


def probabilities(ds, widths, n_mc: int, seed: int = 0) -> dict:
    """``{(scheme, d): (exact[l], mc[l], se[l])}`` over ``widths``."""
    table = {}
    key = jr.PRNGKey(seed)
    for scheme in ("kaiming", "xavier"):
        for d in ds:
            exact, mc, se = [], [], []
            for width in widths:
                key, sub = jr.split(key)
                exact.append(gf.obstruction_probability(d, width, scheme))
                est, err = gf.obstruction_probability_mc(d, width, scheme, n_mc, sub)
                mc.append(est)
                se.append(err)
            table[(scheme, d)] = (np.array(exact), np.array(mc), np.array(se))
    return table


def draw(table, ds, widths, n_mc: int, path: str) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, scheme in zip(axes, ("kaiming", "xavier"), strict=True):
        for i, d in enumerate(ds):
            exact, mc, se = table[(scheme, d)]
            color = f"C{i}"
            ax.plot(widths, exact, "-", color=color, label=f"d = {d} (closed form)")
            ax.errorbar(widths, mc, yerr=2 * se, fmt="o", ms=3, color=color, capsize=2)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width l")
        ax.set_title(f"{scheme.capitalize()} init")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("P(invariant set disconnected)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Probability of obstruction: closed form (lines) vs Monte Carlo, {n_mc} nets, ±2 s.e.", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(out_dir: str = os.path.join(HERE, "figures"), quick: bool = False) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    net = one_network()
    ds = (2, 32) if quick else (2, 8, 32)
    widths = (1, 16) if quick else (1, 2, 4, 8, 16, 32, 64, 128)
    n_mc = 4_000 if quick else 100_000
    table = probabilities(ds, widths, n_mc)
    for (scheme, d), (exact, _mc, _se) in table.items():
        print(f"{scheme:8s} d = {d:3d}: " + "  ".join(f"l={w}: {p:.4f}" for w, p in zip(widths, exact, strict=True)))
    figure = draw(table, ds, widths, n_mc, os.path.join(out_dir, "obstructed_init.png"))
    print("wrote", figure)
    return dict(network=net, table=table, widths=widths, n_mc=n_mc, figure=figure)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (as in the test suite)")
    parser.add_argument("--out", default=os.path.join(HERE, "figures"), help="folder for the figure")
    args = parser.parse_args()
    main(args.out, quick=args.quick or os.environ.get("GFLOW_EXAMPLES_QUICK") == "1")
