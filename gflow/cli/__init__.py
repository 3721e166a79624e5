"""Command line: ``gflow demo | run | sweep | topology | figure | bench | cache``.

Bad input (unknown names, values of the wrong type, NaN or infinite numbers, non-positive
sizes, lengths that do not fit the model, missing or unreadable files, output paths that
cannot be written) prints one line naming the option or config field and what is allowed,
exits with code 2, and writes nothing: every option, config field and input file is
checked (:mod:`gflow._validate`) before anything runs or is written.
Compiled programs are kept in the persistent compilation cache (:mod:`gflow._cache`) unless
``--no-cache`` or ``GFLOW_CACHE=0``; ``gflow bench`` always compiles cold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .._cache import enable_compilation_cache
from .._version import version
from . import bench as cli_bench
from . import cache as cli_cache
from . import figure as cli_figure
from . import run as cli_run
from . import sweep as cli_sweep
from . import topology as cli_topology
from ._args import Parser, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gflow", description="Exact gradient flow of ReLU networks.")
    # the installed distribution's version (its metadata), as `pip show gflow` reports it
    parser.add_argument("--version", action="version", version=version("gflow"), help="print the version and exit")
    parser.add_argument(
        "--no-cache", action="store_true", help="do not read or write the compilation cache (also: GFLOW_CACHE=0)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_run.add_parsers(sub)
    cli_sweep.add_parsers(sub)
    cli_topology.add_parser(sub)
    cli_figure.add_parser(sub)
    cli_bench.add_parser(sub)
    cli_cache.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(f"{err.prog}: error: {err}", file=sys.stderr)
        return 2
    if args.no_cache:  # also for what this command starts: figure set-up, local array tasks
        os.environ["GFLOW_CACHE"] = "0"
    enable_compilation_cache()
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, IsADirectoryError, json.JSONDecodeError) as err:
        print(f"gflow {args.command}: error: {_sentence(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gflow: interrupted", file=sys.stderr)
        return 130


def _sentence(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return f"file not found: {err.filename or err}."
    if isinstance(err, IsADirectoryError):
        return f"expected a file, got a folder: {err.filename or err}."
    if isinstance(err, json.JSONDecodeError):
        return f"the file is not valid JSON ({err.msg} at line {err.lineno})."
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def script_main(name: str, argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/fig_<name>.py``: ``[--quick] [--out DIR]``, as ``gflow figure NAME``."""
    return main(["figure", name, *(sys.argv[1:] if argv is None else argv)])
