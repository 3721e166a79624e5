"""Helpers shared by the figure modules: float64 set-up, small cached results, sweeps, saving.

A figure that is not a sweep over initializations stores its numbers as ``<key>.npz`` (arrays)
plus ``<key>.json`` (the parameters that produced them, the environment and scalar results).
:func:`cached` recomputes only when the stored parameters differ from the requested ones, so
``run`` reuses a complete result and ``draw`` reads only ``out_dir``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import jax
import numpy as np

from .._atomic import atomic_json, atomic_savez
from .._cache import enable_compilation_cache
from ..sweep.run import run_sweep
from ..sweep.store import MANIFEST, config_hash, environment, read_runs
from .style import save


def setup() -> None:
    """Float64 (conservation is measured to 1e-8 and below) and the persistent compile cache."""
    jax.config.update("jax_enable_x64", True)
    enable_compilation_cache()


def _paths(out_dir: str, key: str) -> tuple[str, str]:
    return os.path.join(out_dir, f"{key}.npz"), os.path.join(out_dir, f"{key}.json")


def save_result(out_dir: str, key: str, arrays: dict, params: dict, scalars: dict | None = None) -> None:
    """Write ``<key>.npz`` (arrays) and ``<key>.json`` (params, scalars, environment), atomically."""
    npz, meta = _paths(out_dir, key)
    atomic_savez(npz, {k: np.asarray(v) for k, v in arrays.items()})
    doc = dict(params=params, scalars=scalars or {}, environment=environment())
    atomic_json(meta, _jsonable(doc))


def load_result(out_dir: str, key: str) -> tuple[dict, dict]:
    """``(arrays, json document)`` written by :func:`save_result`."""
    npz, meta = _paths(out_dir, key)
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    with open(meta) as f:
        return arrays, json.load(f)


def has_result(out_dir: str, key: str, params: dict) -> bool:
    """Whether ``out_dir`` holds ``key`` computed with exactly ``params``."""
    npz, meta = _paths(out_dir, key)
    if not (os.path.exists(npz) and os.path.exists(meta)):
        return False
    with open(meta) as f:
        return json.load(f).get("params") == _jsonable(params)


def cached(out_dir: str, key: str, params: dict, compute) -> tuple[dict, dict]:
    """Load ``key`` from ``out_dir`` if it was made with ``params``; otherwise
    ``arrays, scalars = compute()``, store and return them like :func:`load_result`."""
    if not has_result(out_dir, key, params):
        arrays, scalars = compute()
        save_result(out_dir, key, arrays, params, scalars)
    return load_result(out_dir, key)


def run_cached(out_dir: str, key: str, params: dict, compute, draw) -> list[str]:
    """The ``run`` of a figure whose data is one cached result: :func:`setup`, compute (or
    reuse) ``compute(params)`` under ``key`` in ``out_dir``, then ``draw(out_dir)``."""
    setup()
    cached(out_dir, key, params, lambda: compute(params))
    return draw(out_dir)


def sweep(config, out_dir: str) -> dict:
    """Run (or resume, or reuse) a sweep into ``out_dir`` quietly; returns its rows as a dict
    of numpy arrays (one entry per column of ``runs.parquet``).

    ``out_dir`` is a figure's own sweep folder: a sweep of another config there (the
    figure's parameters changed) is removed first rather than refused, with a line on
    standard error saying so.
    """
    if os.path.exists(os.path.join(out_dir, MANIFEST)) and not _same_config(config, out_dir):
        print(f"{out_dir} holds a sweep of another config; removing it and running this one.", file=sys.stderr)
        shutil.rmtree(out_dir)
    if not os.path.exists(os.path.join(out_dir, "runs.parquet")):
        run_sweep(config, out_dir, progress=False)
    return read_rows(out_dir)


def _same_config(config, out_dir: str) -> bool:
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return config_hash(json.load(f).get("config", {})) == config_hash(config.to_dict())


def read_rows(out_dir: str) -> dict:
    """``runs.parquet`` of a sweep folder as ``{column: numpy array}``."""
    table = read_runs(out_dir)
    return {name: np.asarray(table.column(name).to_pylist()) for name in table.column_names}


def save_figure(fig, out_dir: str, name: str) -> list[str]:
    """``<out_dir>/<name>.png`` and ``.pdf`` in the gflow style."""
    return save(fig, os.path.join(out_dir, name))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
