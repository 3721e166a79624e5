"""Benchmark reports: a Markdown file with machine, versions and date, tables and CSV rows."""

from __future__ import annotations

import csv
import json
import math
import os

import jax

from ..sweep.store import environment

DEFAULT_OUT = "results/benchmarks"


def write_report(
    name: str, title: str, sections: list[tuple[str, str]], out_dir: str = DEFAULT_OUT, env: dict | None = None
) -> str:
    """Write ``<out_dir>/<name>.md``; ``sections`` are (heading, markdown body) pairs.

    The header table is ``env``, by default :func:`gflow.store.environment` (gflow/JAX/Diffrax
    versions, git commit, device, machine, date) and :func:`runtime`, so every report says
    where its numbers come from; a report drawn later from saved rows passes the run's.
    """
    env = env or dict(environment(), **runtime())
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
    try:
        from threadpoolctl import threadpool_info

        blas = (
            ", ".join(
                sorted(
                    {
                        f"{i['internal_api']} {i['num_threads']}"
                        for i in threadpool_info()
                        if i.get("user_api") == "blas"
                    }
                )
            )
            or "unknown"
        )
    except ImportError:
        blas = "unknown (threadpoolctl not installed)"
    # jax.config's options are dynamic attributes, unknown to type checkers
    on = jax.config.jax_enable_compilation_cache  # pyright: ignore[reportAttributeAccessIssue]
    cache = jax.config.jax_compilation_cache_dir if on else None  # pyright: ignore[reportAttributeAccessIssue]
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


def json_safe(v):
    """Plain JSON values: curve readings as ``{cost, how}``, non-finite floats as ``None``."""
    if hasattr(v, "how") and hasattr(v, "cost"):
        return dict(cost=json_safe(v.cost), how=v.how)
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def write_json(path: str, obj) -> str:
    """Write ``json_safe(obj)`` as strict, indented JSON; returns the path."""
    with open(path, "w") as f:
        json.dump(json_safe(obj), f, indent=2, allow_nan=False)
    return path
