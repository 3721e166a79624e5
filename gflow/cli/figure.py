"""``gflow figure NAME [--quick] [--out DIR] | gflow figure all [--quick] | gflow figure --list``.

Each figure (:mod:`gflow.figures`) runs or reuses its experiment in ``--out`` (default
``results/NAME``), stores the data there and draws ``NAME.png`` and ``NAME.pdf`` from it.
``--quick`` uses reduced sizes (under a minute each) and defaults to ``results/quick/NAME``,
so it never replaces the committed full results. ``scripts/fig_<name>.py`` call
:func:`gflow.cli.script_main`, the same entry point.
"""

from __future__ import annotations

import os
import time

from .._validate import OutFolder
from ._args import value


def add_parser(subparsers) -> None:
    """Register ``figure`` on an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "figure",
        help="regenerate a paper figure (gflow figure --list shows them)",
        description="Run (or reuse) a figure's experiment and draw it as PNG and PDF.",
    )
    p.add_argument("name", nargs="?", help="a figure name from --list, or 'all'")
    p.add_argument("--list", action="store_true", help="list the figures with one line each")
    p.add_argument("--quick", action="store_true", help="reduced sizes: under a minute per figure")
    p.add_argument(
        "--out",
        type=value("--out", OutFolder()),
        help="output folder (default results/NAME, with --quick results/quick/NAME; with 'all': OUT/NAME per figure)",
    )
    p.set_defaults(func=run_figure)


def describe() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every figure, in registry order (a module that
    cannot be imported is listed as unavailable, with the reason)."""
    from ..figures import FIGURES, get

    out = []
    for name in FIGURES:
        try:
            out.append((name, get(name).DESCRIPTION))
        except ImportError as err:
            out.append((name, f"(unavailable: {err})"))
    return out


def default_out(name: str, quick: bool = False) -> str:
    """``results/<name>``, or ``results/quick/<name>`` for a quick run."""
    return os.path.join("results", "quick", name) if quick else os.path.join("results", name)


def make(name: str, out_dir: str | None = None, quick: bool = False) -> tuple[list[str], float]:
    """Run figure ``name`` into ``out_dir`` (default :func:`default_out`); ``(files, seconds)``."""
    from ..figures import get

    module = get(name)
    out_dir = out_dir or default_out(name, quick)
    start = time.perf_counter()
    files = module.run(out_dir, quick=quick)
    return files, time.perf_counter() - start


def run_figure(args) -> int:
    """Run ``gflow figure``; returns the exit code. Bad input raises ``ValueError``."""
    from ..figures import FIGURES

    if args.list:
        if args.name:
            raise ValueError("--list takes no figure name.")
        for name, text in describe():
            print(f"{name:<24} {text}")
        return 0
    if not args.name:
        raise ValueError(f"give a figure name or 'all' (allowed: {', '.join(FIGURES)}), or --list.")
    names = list(FIGURES) if args.name == "all" else [args.name]
    if args.name != "all" and args.name not in FIGURES:
        raise ValueError(f"unknown figure {args.name!r}; allowed: all, {', '.join(FIGURES)}.")
    total = 0.0
    for name in names:
        out = os.path.join(args.out, name) if (args.out and args.name == "all") else args.out
        files, seconds = make(name, out, quick=args.quick)
        total += seconds
        print(f"{name}: {seconds:.1f} s{' (quick)' if args.quick else ''}")
        for path in files:
            print(f"  {path}")
    if len(names) > 1:
        print(f"all figures: {total:.1f} s")
    return 0
