"""Two checks of issue 5 that complete ``benchmarks/kinks.py``:

    python benchmarks/kinks_checks.py [--n 4] [--betas 10 100 1000]

1. **Projection** (must-show 3): on toy inits (THEORY.md §5, relocated to delta = ±1, t1 = 100,
   Tsit5 rtol = atol = 1e-5, default kink mode), ``project=True`` keeps the conserved
   quantities at their initial values to round-off, and its network function differs from a
   reference (the same mode at rtol = atol = 1e-9) by no more than the unprojected solve's
   own error: projection does not cost accuracy.
2. **Softplus smoothing** (a labelled approximation, never a gflow mode): replacing ReLU by
   ``softplus_beta(u) = log(1 + exp(beta u)) / beta`` makes the field smooth but not
   positively homogeneous, so ``delta_k = |w_k|^2 - v_k^2`` is no longer conserved. Measured:
   the drift of delta over the same horizon, integrated by Tsit5 at rtol = atol = 1e-9, and
   the distance of the smoothed network function from the exact (reference) flow at t1.

Writes ``results/benchmarks/kinks_checks.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import diffrax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from kinks import REF, T1, solve, toy_problem  # noqa: E402


def function_values(traj, x):
    """The network on inputs ``x`` at every saved time: (n_save, n)."""
    return jax.vmap(lambda m: jax.vmap(m)(x)[:, 0])(traj.models)


def projection_rows(inits, x):
    data, init = toy_problem()
    rows = []
    for i in inits:
        plain = solve("toy", data, init(i), "auto")
        proj = solve("toy", data, init(i), "auto", project=True)
        ref = solve("toy", data, init(i), "auto", REF["toy"][0], REF["toy"][1], max_steps=400_000)
        f_plain, f_proj, f_ref = (function_values(t, x) for t in (plain, proj, ref))
        rows.append(
            [
                i,
                float(plain.drift[1]),
                float(proj.drift[1]),
                float(jnp.max(jnp.abs(f_proj - f_plain))),
                float(jnp.max(jnp.abs(f_plain - f_ref))),
                float(jnp.max(jnp.abs(f_proj - f_ref))),
                int(plain.stats["steps"]),
                int(proj.stats["steps"]),
            ]
        )
    return rows


def softplus_flow(model, data, beta, t1, tol=1e-9):
    """Gradient flow of the MSE of ``sum_k v_k softplus_beta(w_k . x)`` (the smoothed net);
    returns (W, V) at t1 and ``max_t max_k |delta_k(t) - delta_k(0)|`` at 101 saved times."""

    def loss(p):
        W, V = p
        pred = jax.nn.softplus(beta * data.x_train @ W.T) / beta @ V.T
        return 0.5 * jnp.mean(jnp.sum((pred - data.y_train) ** 2, axis=-1))

    grad = jax.grad(loss)
    term = diffrax.ODETerm(lambda t, p, args: jax.tree_util.tree_map(jnp.negative, grad(p)))
    y0 = (model.W, model.V)
    ts = jnp.linspace(0.0, t1, 101)
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5(),
        0.0,
        t1,
        None,
        y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
        max_steps=1_000_000,
    )
    W, V = sol.ys
    delta = jnp.sum(W**2, axis=-1) - jnp.sum(V**2, axis=-2)
    return (W[-1], V[-1]), float(jnp.max(jnp.abs(delta - delta[0]))), int(sol.stats["num_steps"])


def softplus_rows(inits, betas, x):
    data, init = toy_problem()
    rows = []
    for i in inits:
        model = init(i)
        ref = solve("toy", data, model, "auto", REF["toy"][0], REF["toy"][1], n_save=2, max_steps=400_000)
        f_ref = jax.vmap(ref.final)(x)[:, 0]
        for beta in betas:
            (W, V), drift, steps = softplus_flow(model, data, beta, T1["toy"])
            f = jax.nn.relu(x @ W.T) @ V[0]
            rows.append([i, beta, drift, float(jnp.max(jnp.abs(f - f_ref))), steps])
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4, help="toy inits per check")
    p.add_argument("--first", type=int, default=50, help="first init index")
    p.add_argument("--betas", type=float, nargs="+", default=[10.0, 100.0, 1000.0])
    p.add_argument("--out", default="results/benchmarks")
    a = p.parse_args()
    start = time.perf_counter()
    data, _ = toy_problem()
    x = data.x_train[:2000]
    inits = list(range(a.first, a.first + a.n))
    proj = projection_rows(inits, x)
    soft = softplus_rows(inits, a.betas, x)
    total = time.perf_counter() - start

    from _report import table, write_report

    sections = [
        (
            "Setup",
            __doc__.split("\n\n", 1)[1].rsplit("\n\nWrites", 1)[0]
            + f"\n\nInits {inits[0]}..{inits[-1]} of `benchmarks/kinks.py`'s toy problem; `f`: the network on the "
            f"first 2000 training inputs (for projection: at all 101 saved times). Total time {total:.0f} s.",
        ),
        (
            "Projection",
            table(
                [
                    "init",
                    "rel. drift, unprojected",
                    "rel. drift, project=True",
                    "max|f_proj - f_plain|",
                    "max|f_plain - f_ref|",
                    "max|f_proj - f_ref|",
                    "steps plain",
                    "steps projected",
                ],
                proj,
            )
            + "\n\nThe projected and unprojected solves differ by about as much as each differs from the reference: "
            "the difference is the tolerance-1e-5 solver's own global error on these kink-crossing trajectories "
            "(the per-step tolerance does not bound the global error through kinks), not an effect of projecting.",
        ),
        (
            "Softplus smoothing (not a gflow mode)",
            table(["init", "beta", "max |delta(t) - delta(0)|", "max|f_softplus - f_exact| at t1", "steps"], soft)
            + "\n\nThe exact flow conserves delta to round-off (first table, relative drift ~1e-16 projected, "
            "~1e-6 at rtol 1e-5 unprojected); the smoothed flow breaks the conservation law by the amounts above, "
            "and its function at t1 is measured against the exact flow's (ReLU evaluated at the smoothed weights).",
        ),
    ]
    path = write_report("kinks_checks", "Kinks: projection accuracy and softplus smoothing (issue 5)", sections, a.out)
    print(f"wrote {path} ({total:.0f} s)")


if __name__ == "__main__":
    main()
