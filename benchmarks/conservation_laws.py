"""``count_conservation_laws``: counts, singular-value gaps and time per call, D <= 200.

    python benchmarks/conservation_laws.py [--repeats 3] [--quick] [--out results/benchmarks]

For each case: the count and the known one (one law per hidden ReLU unit; r(r+1)/2 for ``x -> U V^T x``;
0 for tanh), with ``D - rank V`` (the count that level 1 alone would give; for ReLU nets the known
count holds when it already equals it, see tests/test_laws.py), the rank after each bracket level, the
gap ``sigma_r / sigma_(r+1)`` of the last level (the decision that the algebra stopped growing) and the
smallest gap over all levels, and the time per call: cold (first call of that architecture in this
process, compilation included) and warm (median of ``--repeats`` further calls). Float64. Writes
``conservation_laws.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402

import gflow as gf  # noqa: E402
from gflow.bench.report import table, write_report  # noqa: E402
from gflow.laws import count_conservation_laws  # noqa: E402


class LowRank(eqx.Module):
    """``x -> U V^T x``."""

    U: jax.Array
    V: jax.Array

    def __call__(self, x):
        return self.U @ (self.V.T @ x)


def low_rank(n, m, r, samples, seed=0):
    kU, kV, kx = jr.split(jr.PRNGKey(seed), 3)
    return LowRank(jr.normal(kU, (n, r)), jr.normal(kV, (m, r))), jr.normal(kx, (samples, m))


def relu_mlp(d, width, depth, samples, seed):
    net = eqx.nn.MLP(
        d, 1, width, depth, activation=jax.nn.relu, use_bias=False, use_final_bias=False, key=jr.PRNGKey(seed)
    )
    return net, jr.normal(jr.PRNGKey(100 + seed), (samples, d))


def tanh_mlp(d, width, depth, samples, seed=0):
    return eqx.nn.MLP(d, 1, width, depth, activation=jnp.tanh, key=jr.PRNGKey(seed)), jr.normal(
        jr.PRNGKey(1), (samples, d)
    )


def cases(quick: bool):
    """(name, model, inputs, known count)."""
    x = lambda seed, n, d: jr.normal(jr.PRNGKey(seed), (n, d))  # noqa: E731
    small = [
        ("ShallowReLU(3, 4), n=40", gf.ShallowReLU(3, 4, key=jr.PRNGKey(0)), x(1, 40, 3), 4),
        ("ShallowReLU(3, 4, bias), n=40", gf.ShallowReLU(3, 4, bias=True, key=jr.PRNGKey(0)), x(1, 40, 3), 4),
        ("MLP(4, (3, 2)), n=60", gf.MLP(4, (3, 2), key=jr.PRNGKey(2)), x(102, 60, 4), 5),
        ("MLP(4, (3, 2), bias), n=300", gf.MLP(4, (3, 2), bias=True, key=jr.PRNGKey(7)), x(107, 300, 4), 5),
        ("eqx.nn.MLP relu 4-3-3-1, n=60", *relu_mlp(4, 3, 2, 60, 2), 6),
        ("U V^T 4x2, 3x2, n=5", *low_rank(4, 3, 2, 5), 3),
        ("U V^T 3x3, 3x3, n=5", *low_rank(3, 3, 3, 5), 6),
        ("eqx.nn.MLP tanh 2-3-1, n=40", *tanh_mlp(2, 3, 1, 40), 0),
        ("eqx.nn.MLP tanh 2-3-1, n=3", *tanh_mlp(2, 3, 1, 3), 0),
    ]
    large = [
        ("ShallowReLU(6, 10, bias), n=200", gf.ShallowReLU(6, 10, bias=True, key=jr.PRNGKey(0)), x(1, 200, 6), 10),
        ("U V^T 10x4, 10x4, n=12", *low_rank(10, 10, 4, 12), 10),
        ("ShallowReLU(9, 18), n=400", gf.ShallowReLU(9, 18, key=jr.PRNGKey(0)), x(1, 400, 9), 18),
        ("U V^T 20x5, 20x5, n=25", *low_rank(20, 20, 5, 25), 15),
        ("eqx.nn.MLP relu 8-10-10-1, n=400", *relu_mlp(8, 10, 2, 400, 0), 20),
        ("eqx.nn.MLP tanh 5-10-10-1, n=200", *tanh_mlp(5, 10, 2, 200), 0),
    ]
    return small if quick else small + large


def fmt_load(load):
    return " / ".join(f"{v:.1f}" for v in load)


def measure(model, x, repeats):
    t0 = time.perf_counter()
    count, info = count_conservation_laws(model, x, return_info=True, min_gap=None)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        count_conservation_laws(model, x, min_gap=None)
        warm.append(time.perf_counter() - t0)
    return count, info, cold, statistics.median(warm)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only the small cases (D <= 25)")
    parser.add_argument("--out", default="results/benchmarks")
    args = parser.parse_args()
    header = [
        "case",
        "D",
        "count",
        "known",
        "D - rank V",
        "rank per level",
        "fields evaluated",
        "last gap",
        "min gap",
        "smallest kept sigma",
        "cold (s)",
        "warm (s)",
    ]
    rows = []
    load_start = os.getloadavg()
    for name, model, x, known in cases(args.quick):
        count, info, cold, warm = measure(model, x, args.repeats)
        kept = min(lev["sigma_r"] for lev in info.levels if lev["rank"] > 0)
        row = [
            name,
            info.n_params,
            count,
            known,
            info.n_params - info.levels[0]["rank"],
            " / ".join(str(lev["rank"]) for lev in info.levels),
            info.n_evaluated,
            info.gap,
            info.min_gap,
            kept,
            cold,
            warm,
        ]
        rows.append(row)
        print(" | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row), flush=True)
    body = table(header, rows)
    notes = (
        "Gaps are `sigma_r / sigma_(r+1)` of the scaled field values (each field divided by its size before "
        "the last subtraction) at `rtol = 1e-9`; where no singular value is cut, the round-off floor "
        "`max(rows, columns) * eps` stands in for `sigma_(r+1)`. `smallest kept sigma` is relative to the largest. "
        "`D - rank V` is the count that the gradient fields alone (no bracket) would give. The ReLU cases use "
        "seeds and sample counts for which the data see every direction (`D - rank V` equal to the known count, "
        "the precondition checked in tests/test_laws.py); for other seeds of small deep nets the count is larger, "
        "a property of the point and the data (a unit active on one sample, a weight no sample sees). "
        "Cold: first call of the architecture in the process (one bracket program compiled per level); warm: "
        "median of further calls on the same shapes."
    )
    path = write_report(
        "conservation_laws",
        "Counting conservation laws: D - dim Lie(V)(theta)",
        [
            ("Cases", body),
            ("Reading", notes),
            (
                "Machine load",
                f"1/5/15-minute load averages at start {fmt_load(load_start)}, at end {fmt_load(os.getloadavg())} "
                f"({os.cpu_count()} CPUs, shared with other jobs): timings scale with it.",
            ),
            ("Command", "`" + " ".join(["python benchmarks/conservation_laws.py", *sys.argv[1:]]) + "`"),
        ],
        out_dir=args.out,
    )
    print(path)


if __name__ == "__main__":
    main()
