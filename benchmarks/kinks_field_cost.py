"""Cost of one evaluation of the sliding field vs the plain gradient (issue 16).

    python benchmarks/kinks_field_cost.py [--reps 200]

Per problem, the time of one evaluation inside a compiled loop of ``--reps`` evaluations
(best of 7 loops, params moved slightly each evaluation so nothing is hoisted), for:
``plain`` (``-grad L`` by autodiff, what ``kinks="none"`` integrates), ``dense`` (the sliding
field with the band correction over every (neuron, point) pair, as before issue 16) and
``gated`` (the band test over every pair, the correction only when some pair is in the
band). Each sliding variant is timed at a state with no pair in the band and at a state
with neuron 0 exactly on the kink of point 0 (so the correction runs). Single net, and
``vmap`` over 64 nets (a sweep's slots; toy with 256 points). Writes
``results/benchmarks/kinks_field_cost.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
from _report import table, write_report  # noqa: E402

import gflow as gf  # noqa: E402
from gflow._jit import jit  # noqa: E402
from gflow.bench.problems import make_problem  # noqa: E402
from gflow.flow.field import dense_sliding_field, flow_field, sliding_field  # noqa: E402
from gflow.losses import get_loss  # noqa: E402

TOL = 1e-6


def on_kink(params, x):
    """``params`` with neuron 0's incoming weights projected onto the kink of point 0."""
    w, z = params.W[0], x[0]
    return eqx.tree_at(lambda p: p.W, params, params.W.at[0].set(w - (w @ z) / (z @ z) * z))


def per_eval(field, params, reps, batched):
    f = jax.vmap(field, in_axes=(None, 0, None)) if batched else field

    @jit  # gflow's compiler options, as the engine and the single solve compile
    def loop(p):
        def body(i, y):
            g = f(0.0, y, None)
            return jax.tree_util.tree_map(lambda a, b: a + 1e-9 * b, y, g)

        return jax.lax.fori_loop(0, reps, body, p)

    jax.block_until_ready(loop(params))
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        jax.block_until_ready(loop(params))
        best = min(best, time.perf_counter() - start)
    return best / reps


def cases():
    for name in ("toy", "breast_cancer"):
        p = make_problem(name)
        yield name, p.model, p.data, p.loss, False
    data = gf.toy(n=256, key=jr.PRNGKey(0))
    models = eqx.filter_vmap(lambda k: gf.ShallowReLU(2, 2, key=k))(jr.split(jr.PRNGKey(1), 64))
    yield "toy 256 points, vmap 64", models, data, "mse", True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    rows = []
    for name, model, data, loss, batched in cases():
        params, static = eqx.partition(model, eqx.is_inexact_array)
        if batched:
            static = eqx.partition(jax.tree_util.tree_map(lambda a: a, model), eqx.is_inexact_array)[1]
        lf = get_loss(loss)
        tol = jnp.asarray(TOL)
        fields = {
            "plain": flow_field(static, data, lf),
            "dense": dense_sliding_field(static, data, lf, jnp.asarray(10.0), tol, tol),
            "gated": sliding_field(static, data, lf, jnp.asarray(10.0), tol, tol),
        }
        kink = jax.vmap(on_kink, in_axes=(0, None))(params, data.x_train) if batched else on_kink(params, data.x_train)
        t = {k: per_eval(f, params, args.reps, batched) for k, f in fields.items()}
        tk = {k: per_eval(fields[k], kink, args.reps, batched) for k in ("dense", "gated")}
        rows.append(
            [name, f"{t['plain'] * 1e6:.1f}"]
            + [f"{t[k] * 1e6:.1f} ({t[k] / t['plain']:.2f}×)" for k in ("dense", "gated")]
            + [f"{tk[k] * 1e6:.1f} ({tk[k] / t['plain']:.2f}×)" for k in ("dense", "gated")]
        )
        print(rows[-1], flush=True)
    header = [
        "problem",
        "plain µs",
        "dense, none in band",
        "gated, none in band",
        "dense, one on kink",
        "gated, one on kink",
    ]
    body = (
        "Microseconds per field evaluation (best of 7 compiled loops of "
        f"{args.reps} evaluations; ratio to the plain gradient in brackets). rtol = atol = {TOL:g}, "
        "slide_tol = 10. In the vmap case 'one on kink' puts neuron 0 of every member on a kink, so "
        "all 64 members run the correction (the batched branch's dense path); in a 64-slot sweep of "
        "the toy about 9 members per evaluation have a pair in the band. Noise between runs on this "
        "machine: about 20% per cell.\n\n" + table(header, rows)
    )
    print(write_report("kinks_field_cost", "Sliding field: cost per evaluation", [("Results", body)], args.out))


if __name__ == "__main__":
    main()
