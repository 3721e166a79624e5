"""Did the student find the teacher? Reachability and canonical forms.

A teacher relu(u1.x) - relu(u2.x) in d = 2 needs a convex and a concave kink. Students of the
same width 2 start in each of the 4 sign patterns of their output weights, either with both
neurons pathological (delta_k = -1: no output sign can change) or both free (delta_k = +1). By the
reachability criterion of theory §1 the teacher's function is in a pathological student's
component iff its signs are (+, -) or (-, +), and in every free student's.
Each student follows the exact flow on teacher-generated data; at the end its canonical form
(theory §3: unit hyperplanes, merged, oriented, with an affine part) is compared with the
teacher's. A recovered student must have been reachable; the converse is what the flow decides.

    python docs/examples/teacher_recovery.py [--quick] [--out DIR]

``--quick`` (or GFLOW_EXAMPLES_QUICK=1) integrates to t = 10 instead of t = 300, on fewer points;
the figure is ``DIR/teacher_recovery.png`` (default: docs/examples/figures).
"""

from __future__ import annotations

import argparse
import itertools
import os

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import gflow as gf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def teacher() -> gf.ShallowReLU:
    """relu(u1.x) - relu(u2.x) with u1, u2 of different norms and directions (no bias)."""
    model = gf.ShallowReLU(2, 2, key=jr.PRNGKey(0))
    W = jnp.array([[1.0, 0.3], [-0.4, 1.2]])
    V = jnp.array([[1.0, -1.0]])
    return eqx.tree_at(lambda m: (m.W, m.V), model, (W, V))


def students(width: int = 2, seed: int = 1) -> dict:
    """One student per (delta, output-sign pattern): every neuron relocated to delta_k = -1
    (pathological: the signs are fixed) or +1 (free), with the given output signs."""
    base = gf.ShallowReLU(2, width, key=jr.PRNGKey(seed))
    out = {}
    for delta in (-1.0, 1.0):
        for signs in itertools.product((1.0, -1.0), repeat=width):
            label = ("δ<0 " if delta < 0 else "δ>0 ") + "".join("+" if s > 0 else "-" for s in signs)
            out[label] = gf.relocate(base, delta, jnp.array(signs))
    return out


def draw(teacher_cf, results: dict, t1: float, path: str) -> str:
    labels = list(results)
    fig, (ax_loss, ax_planes) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = ["C0" if results[k]["reachable"] else "C1" for k in labels]
    losses = [max(results[k]["final_loss"], 1e-16) for k in labels]
    ax_loss.bar(range(len(labels)), losses, color=colors)
    for i, k in enumerate(labels):
        if results[k]["recovered"]:
            ax_loss.text(i, losses[i] * 1.5, "recovered", ha="center", fontsize=7, rotation=90, va="bottom")
    ax_loss.set_yscale("log")
    ax_loss.set_xticks(range(len(labels)))
    ax_loss.set_xticklabels(labels, fontfamily="monospace", fontsize=8, rotation=30)
    ax_loss.set_xlabel("student: conserved values and output signs at t = 0")
    ax_loss.set_ylabel(f"final training loss at t = {t1:g}")
    ax_loss.set_title("blue: predicted reachable, orange: unreachable", fontsize=9)
    ax_loss.grid(alpha=0.3, axis="y")
    # kink lines {x : h . x = 0} of the canonical forms: teacher (thick) and every student
    s = np.linspace(-1.5, 1.5, 2)
    for k in labels:
        for h, c in zip(results[k]["canonical"].hyperplanes, results[k]["canonical"].coefficients, strict=True):
            direction = np.array([-h[1], h[0]]) / np.linalg.norm(h[:2])
            style = "-" if c[0] > 0 else "--"
            color = "C0" if results[k]["reachable"] else "C1"
            ax_planes.plot(s * direction[0], s * direction[1], style, color=color, lw=0.8, alpha=0.6)
    for h, c in zip(teacher_cf.hyperplanes, teacher_cf.coefficients, strict=True):
        direction = np.array([-h[1], h[0]]) / np.linalg.norm(h[:2])
        ax_planes.plot(s * direction[0], s * direction[1], "-" if c[0] > 0 else "--", color="k", lw=2.5, alpha=0.5)
    ax_planes.set_aspect("equal")
    ax_planes.set_xlim(-1.5, 1.5)
    ax_planes.set_ylim(-1.5, 1.5)
    ax_planes.set_title("kinks of the canonical forms (solid: convex, dashed: concave)\nthick: teacher", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(out_dir: str = os.path.join(HERE, "figures"), quick: bool = False) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    t1 = 10.0 if quick else 300.0
    g = teacher()
    data = gf.teacher_student(g, 200 if quick else 1000, jr.PRNGKey(2))
    results = {}
    for label, student in students().items():
        traj = gf.gradient_flow(student, data, "mse", t1, rtol=1e-8, atol=1e-8, n_save=11)
        final = traj.final
        results[label] = dict(
            reachable=gf.reachable(g, student),
            recovered=gf.recovered(final, g),
            final_loss=float(traj.loss[-1]),
            canonical=gf.canonical_form(final, tol=1e-3),
            label_kept=bool(
                np.all(np.asarray(gf.component_label(traj.models)) == np.asarray(gf.component_label(student)))
            ),
            status=traj.status_name,
        )
        r = results[label]
        print(
            f"{label}: predicted {'reachable  ' if r['reachable'] else 'unreachable'}  final loss "
            f"{r['final_loss']:.2e}  recovered {r['recovered']}  ({r['canonical'].n_neurons} canonical neurons)"
        )
    teacher_cf = gf.canonical_form(g)
    print(
        f"teacher's canonical form: hyperplanes {teacher_cf.hyperplanes.round(3).tolist()}, "
        f"coefficients {teacher_cf.coefficients.ravel().round(3).tolist()}"
    )
    figure = draw(teacher_cf, results, t1, os.path.join(out_dir, "teacher_recovery.png"))
    print("wrote", figure)
    return dict(teacher=g, results=results, figure=figure)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (as in the test suite)")
    parser.add_argument("--out", default=os.path.join(HERE, "figures"), help="folder for the figure")
    args = parser.parse_args()
    main(args.out, quick=args.quick or os.environ.get("GFLOW_EXAMPLES_QUICK") == "1")
