"""Tolerance proportionality of located kinks (issue 16, must-show 1): error at t1 over rtol.

    python benchmarks/kinks_tolerance.py toy|breast_cancer

Tsit5 at rtol = atol in 1e-4 ... 1e-10 against a located Dopri8 solve at 1e-12 from the same
code (the independent check against an event-located SciPy DOP853 is tests/test_located_kinks.py);
error = ||theta(t1) - theta_ref(t1)|| / ||theta_ref(t1)||. Toy: 1000 points, width 2, t1 = 10,
``pin+slide+locate`` and ``pin+slide``; breast cancer: width 8, t1 = 10, ``slide+locate``.
Prints one line per solve (steps, rejected, located, jumps, gradient evaluations, error / rtol).
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import gflow as gf  # noqa: E402
from gflow.bench.problems import flat, make_problem, toy_problem  # noqa: E402

MODES = {"toy": ("pin+slide+locate", "pin+slide"), "breast_cancer": ("slide+locate",)}
STATS = ("steps", "rejected", "located", "jumps", "grad_evals")


def main(name: str) -> None:
    p = toy_problem(1000) if name == "toy" else make_problem("breast_cancer")
    t1 = 10.0
    start = time.perf_counter()
    ref = gf.gradient_flow(p.model, p.data, p.loss, t1, solver="dopri8", rtol=1e-12, atol=1e-12, kinks=MODES[name][0],
                           n_save=2, max_steps=1 << 20)  # fmt: skip
    theta = flat(ref.final)
    print(f"{name}: reference dopri8 1e-12 {MODES[name][0]}: {ref.status_name}, {time.perf_counter() - start:.0f} s")
    print("| mode | rtol | status | " + " | ".join(STATS) + " | error / rtol |")
    print("|---|---|---|" + "---|" * len(STATS) + "---|")
    for mode in MODES[name]:
        for tol in (1e-4, 1e-6, 1e-8, 1e-10):
            tr = gf.gradient_flow(p.model, p.data, p.loss, t1, solver="tsit5", rtol=tol, atol=tol, kinks=mode, n_save=2,
                                  max_steps=1 << 20)  # fmt: skip
            err = np.linalg.norm(flat(tr.final) - theta) / np.linalg.norm(theta)
            counts = " | ".join(str(int(tr.stats[k])) for k in STATS)
            print(f"| {mode} | {tol:.0e} | {tr.status_name} | {counts} | {err / tol:.3g} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "toy")
