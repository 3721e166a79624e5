"""Shared by the benchmarks: a Markdown report with machine, versions and date."""

from __future__ import annotations

import os


def write_report(name: str, title: str, sections: list[tuple[str, str]], out_dir: str = "results/benchmarks") -> str:
    """Write ``results/benchmarks/<name>.md``; ``sections`` are (heading, markdown body) pairs."""
    from gflow.store import environment

    env = environment()
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    for heading, body in sections:
        lines += ["", f"## {heading}", "", body.rstrip()]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats get 4 significant digits."""
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)
