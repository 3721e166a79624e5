"""Paper figures: each one an experiment run through the sweep store, drawn from the store only.

Every figure ``NAME`` is a module ``gflow.figures.<module>`` with

- ``DESCRIPTION``: one line for ``gflow figure --list``;
- ``run(out_dir: str, quick: bool = False) -> list[str]``: runs (or reuses, when the store in
  ``out_dir`` is complete) the experiment, then draws; returns the figure files written;
- ``draw(out_dir: str) -> list[str]``: reads only what ``run`` stored in ``out_dir`` and writes
  ``out_dir/<name>.png`` and ``.pdf`` with :mod:`gflow.figures.style`.

``--quick`` uses reduced sizes (under a minute); full runs are committed under ``results/<name>/``.
"""

from __future__ import annotations

import importlib

# name -> module under gflow.figures (the order of `gflow figure --list`)
FIGURES = {
    "hyperquadrics": "hyperquadrics",
    "toy_obstruction": "toy_obstruction",
    "breast_cancer": "breast_cancer",
    "obstruction_probability": "obstruction_probability",
    "flow_vs_optimizers": "flow_vs_optimizers",
    "reachability": "reachability",
    "dag": "dag",
    "large_sweep": "large_sweep",
    "endpoints": "endpoints",
}


def get(name: str):
    """The module of figure ``name``; a ValueError names the allowed figures otherwise."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; allowed: {', '.join(FIGURES)}.")
    return importlib.import_module(f"gflow.figures.{FIGURES[name]}")
