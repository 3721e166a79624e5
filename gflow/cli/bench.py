"""``gflow bench [--quick] [--only ...] [--out DIR]``: run the benchmarks of :mod:`gflow.bench`."""

from __future__ import annotations

import argparse

from .._validate import Choice, out_folder


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="work-precision, peers and machine-limit benchmarks; writes reports",
        description="Run gflow's benchmarks (exact flow vs GD, peer tools, sweep engine vs the "
        "machine's matmul peak, compile time and scaling) and write Markdown reports "
        "with CSV rows and figures. Needs the bench extra for the PyTorch peer "
        '(pip install -e ".[bench]"); without it that row is skipped with a note.',
    )
    from ..bench import BENCHMARKS, add_arguments

    add_arguments(p, None)
    p.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import jax

    from ..bench import resolve, run_all

    # Compile times are part of the report: no persistent cache (set before anything compiles).
    jax.config.update("jax_enable_compilation_cache", False)
    from ..bench import BENCHMARKS

    only = tuple(s.strip() for s in args.only.split(","))
    for name in only:
        Choice(BENCHMARKS)(name, "--only")
    size, out = resolve(args)
    out_folder(out, "--out")
    summary = run_all(size, out, only=only)
    print(
        f"gflow bench ({size}): reports in {out}/ — "
        + ", ".join(f"{k} {v:.0f} s" for k, v in summary["seconds"].items())
    )
    return 0
