"""Deep nets through ReLU kinks: located activation changes on an MLP and a DAG (issue 16).

    python benchmarks/kinks_deep.py

Problem: teacher-student data (40 points ``x ~ N(0, I_2)``, key 99; teacher
``ShallowReLU(2, 2)``, key 1234), student ``MLP(2, (5, 4))`` (Kaiming, key 1) and the same
network as a ``DAGNet``, MSE, ``t1 = 4``, Tsit5 at rtol = atol = 1e-10, the default step
budget. Modes ``none`` (the plain field, the behaviour before issue 16) and ``auto`` (located
activation changes). Reports steps, rejected steps, located crossings, pattern jumps,
gradient evaluations, status, the relative drift of the conserved quantities, and the
distance at t1 to a Dopri8 ``auto`` run at 1e-12. Writes ``results/benchmarks/kinks_deep.md``.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
from _report import table, write_report  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import gflow as gf  # noqa: E402

T1, TOL = 4.0, 1e-10


def flat(model):
    return np.asarray(ravel_pytree(eqx.filter(model, eqx.is_inexact_array))[0])


def main():
    teacher = gf.ShallowReLU(2, 2, key=jr.PRNGKey(1234))
    data = gf.teacher_student(teacher, 40, jr.PRNGKey(99))
    mlp = gf.MLP(2, (5, 4), key=jr.PRNGKey(1))
    rows = []
    for net_name, net in (("MLP (5, 4)", mlp), ("DAGNet of it", mlp.as_dag())):
        ref = gf.gradient_flow(
            net, data, "mse", T1, solver="dopri8", rtol=1e-12, atol=1e-12, n_save=2, max_steps=1 << 18
        )
        ref_flat = flat(ref.final)
        for kinks in ("none", "auto"):
            gf.gradient_flow(net, data, "mse", T1 / 100, rtol=TOL, atol=TOL, n_save=11, kinks=kinks)  # compile
            start = time.perf_counter()
            tr = gf.gradient_flow(net, data, "mse", T1, rtol=TOL, atol=TOL, n_save=11, kinks=kinks)
            wall = time.perf_counter() - start
            final = flat(tr.final)
            err = np.linalg.norm(final - ref_flat) / np.linalg.norm(ref_flat) if np.all(np.isfinite(final)) else np.inf
            s = {k: int(tr.stats[k]) for k in ("steps", "rejected", "located", "jumps", "grad_evals")}
            drift = float(np.max(np.asarray(tr.drift[1])))
            rows.append([net_name, kinks, *s.values(), tr.status_name, f"{drift:.2g}", f"{err:.2g}", f"{wall:.1f}"])
            print(rows[-1], flush=True)
        rows.append(
            [net_name, "reference: dopri8 1e-12 auto", int(ref.stats["steps"]), int(ref.stats["rejected"]),
             int(ref.stats["located"]), int(ref.stats["jumps"]), int(ref.stats["grad_evals"]), ref.status_name,
             "", "", ""]
        )  # fmt: skip
    header = ["net", "kinks", "steps", "rejected", "located", "jumps", "grad evals", "status", "drift (rel)",
              "error at t1", "wall s"]  # fmt: skip
    body = (
        f"Teacher-student, 40 points, t1 = {T1:g}, Tsit5 at rtol = atol = {TOL:g}, default step budget. "
        "Error: relative parameter distance at t1 to the reference row.\n\n" + table(header, rows)
    )
    print(write_report("kinks_deep", "Deep nets through ReLU kinks", [("Results", body)]))


if __name__ == "__main__":
    main()
