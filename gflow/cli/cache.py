"""``gflow cache info | clear``: the persistent compilation cache (:mod:`gflow._cache`)."""

from __future__ import annotations

import argparse

from .._cache import cache_info, clear_cache


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cache",
        help="show or clear the compilation cache",
        description="gflow keeps compiled programs in a cache folder ($GFLOW_CACHE_DIR, else "
        "$XDG_CACHE_HOME/gflow/jax, else ~/.cache/gflow/jax), so a second run does not compile "
        "again. GFLOW_CACHE=0 or `gflow --no-cache COMMAND` turns it off.",
    )
    p.add_argument("action", choices=("info", "clear"), help="info: folder, programs and size; clear: delete them")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = clear_cache() if args.action == "clear" else cache_info()
    if info["path"] is None:
        print("compilation cache: off (GFLOW_CACHE=0 or GFLOW_CACHE_DIR is empty)")
        return 0
    done = "cleared " if args.action == "clear" else ""
    print(f"compilation cache: {info['path']} — {done}{info['entries']} programs, {info['bytes'] / 1e6:.1f} MB")
    return 0
