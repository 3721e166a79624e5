"""Benchmark reports: a Markdown file with machine, versions and date, tables and CSV rows."""

from __future__ import annotations

import csv
import math
import os

DEFAULT_OUT = "results/benchmarks"


def write_report(name: str, title: str, sections: list[tuple[str, str]], out_dir: str = DEFAULT_OUT) -> str:
    """Write ``<out_dir>/<name>.md``; ``sections`` are (heading, markdown body) pairs.

    The header table is :func:`gflow.store.environment` (gflow/JAX/Diffrax versions, git
    commit, device, machine, date), so every report says where its numbers come from.
    """
    from ..store import environment

    env = dict(environment(), **runtime())
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    for heading, body in sections:
        lines += ["", f"## {heading}", "", body.rstrip()]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def runtime() -> dict:
    """Settings that change timings: NumPy's BLAS threads and JAX's persistent compilation cache."""
    import jax

    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(sorted({f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()
                                 if i.get("user_api") == "blas"})) or "unknown"
    except ImportError:
        blas = "unknown (threadpoolctl not installed)"
    cache = jax.config.jax_compilation_cache_dir if jax.config.jax_enable_compilation_cache else None
    return {"numpy BLAS threads": blas, "persistent compilation cache": cache or "off"}


def fmt(v) -> str:
    """A table cell: floats with 4 significant digits, ``inf``/``nan`` spelled out."""
    if isinstance(v, float):
        return str(v) if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats get 4 significant digits."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def write_csv(path: str, rows: list[dict]) -> str:
    """Write ``rows`` (dicts with the same keys) as CSV; returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
