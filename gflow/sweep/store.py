"""Results on disk: ``manifest.json`` + per-chunk row tables + merged ``runs.parquet``
(+ per-chunk saved trajectories, when a sweep is asked to keep them).

Every file is written to a temporary name in the same folder and renamed, so a sweep
killed at any moment leaves only complete files. A chunk's table exists iff the chunk is
done; a restarted sweep skips those chunks.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess

import diffrax
import equinox
import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._atomic import atomic_json, atomic_savez, atomic_write
from .._version import version as _version

MANIFEST = "manifest.json"
RUNS = "runs.parquet"
TRAJECTORIES = "trajectories"
NETWORKS = "networks"
ANNOTATIONS = "annotations.parquet"


# Config fields that decide no row: ``name`` labels the progress bar and the default folder;
# ``steps_per_call`` only sets how often the engine returns to the host (rows bitwise equal,
# tests/test_sweep.py::test_rows_independent_of_call_budget). A sweep resumes with them changed.
ROW_NEUTRAL = ("name", "steps_per_call")


def _row_deciding(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ROW_NEUTRAL}


def config_hash(config: dict) -> str:
    """SHA-256 (first 16 hex digits) of the fields of a config (a ``SweepConfig.to_dict()``)
    that decide the rows, as canonical JSON: every field but :data:`ROW_NEUTRAL`."""
    return hashlib.sha256(json.dumps(_row_deciding(config), sort_keys=True).encode()).hexdigest()[:16]


def check_same_config(out_dir: str, config: dict) -> bool:
    """Whether ``out_dir`` holds a sweep (``False``: no manifest yet); ``ValueError`` naming
    the differing fields if its config decides other rows than ``config``. The folder's hash
    is recomputed from its manifest's config, so manifests of older versions compare alike."""
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        return False
    old = read_manifest(out_dir).get("config", {})
    if config_hash(old) != config_hash(config):
        raise ValueError(
            f"{out_dir} holds a sweep with a different config ({config_difference(old, config)}); "
            "use another --out folder."
        )
    return True


def _git_commit() -> str:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    """Versions, device and machine, for manifests and benchmark reports."""

    dev = jax.devices()[0]
    return dict(
        gflow=_version("gflow"),
        git_commit=_git_commit(),
        jax=jax.__version__,
        diffrax=diffrax.__version__,
        equinox=equinox.__version__,
        optax=importlib.metadata.version("optax"),
        python=platform.python_version(),
        device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        n_devices=jax.device_count(),
        machine=f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def open_store(out_dir: str, config: dict, resume: bool, extra: dict | None = None) -> None:
    """Create ``out_dir`` with a manifest, or check that an existing one has the same config.

    A different config in the same folder is refused (``ValueError``); ``resume=False`` on
    a folder with results is refused too, so nothing is overwritten by accident. ``extra``:
    more entries for a new manifest (e.g. ``teacher``), derived from the config.
    """
    if check_same_config(out_dir, config):
        if not resume and done_chunks(out_dir):
            raise ValueError(
                f"{out_dir} already has results of this sweep; pass --resume to continue it "
                "or choose another --out folder."
            )
        return
    manifest = dict(config=config, config_hash=config_hash(config), **(extra or {}), **environment())
    atomic_json(os.path.join(out_dir, MANIFEST), manifest)


def config_difference(folder: dict, config: dict) -> str:
    """The fields in which two configs differ, as ``"seed: 0 in the folder, 1 in the config"``
    (``;``-separated, sorted; a field one side lacks reads as its default there)."""
    folder, config = _row_deciding(folder), _row_deciding(config)
    keys = sorted(k for k in set(folder) | set(config) if folder.get(k) != config.get(k))

    def show(d: dict, k: str) -> str:
        return json.dumps(d[k]) if k in d else "the default"

    return "; ".join(f"{k}: {show(folder, k)} in the folder, {show(config, k)} in the config" for k in keys)


def chunk_path(out_dir: str, chunk: int) -> str:
    return os.path.join(out_dir, "chunks", f"chunk-{chunk:06d}.parquet")


def done_chunks(out_dir: str) -> set[int]:
    files = glob.glob(os.path.join(out_dir, "chunks", "chunk-*.parquet"))
    return {int(os.path.basename(f)[6:12]) for f in files}


def write_chunk(out_dir: str, chunk: int, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["index"]))
    atomic_write(chunk_path(out_dir, chunk), lambda tmp: pq.write_table(table, tmp))


def trajectory_path(out_dir: str, chunk: int) -> str:
    return os.path.join(out_dir, TRAJECTORIES, f"chunk-{chunk:06d}.npz")


def write_trajectories(out_dir: str, chunk: int, index: list[int], ts, states: list[list]) -> None:
    """``trajectories/chunk-NNNNNN.npz``: ``index`` (the chunk's initializations, in order),
    ``ts`` (saved times) and ``leaf_k`` = leaf ``k`` of the parameters, shape
    ``(len(index), len(ts), ...)``; ``states[r]`` holds row ``r``'s leaves. Written atomically
    before the chunk's rows, so every finished chunk has its file."""

    leaves = {f"leaf_{k}": np.stack([row[k] for row in states]) for k in range(len(states[0]))}
    atomic_savez(trajectory_path(out_dir, chunk), dict(index=np.asarray(index), ts=np.asarray(ts), **leaves))


def read_trajectories(out_dir: str, chunk: int) -> dict:
    """The arrays written by :func:`write_trajectories` for ``chunk``."""
    path = trajectory_path(out_dir, chunk)
    if not os.path.exists(path):
        raise ValueError(
            f"{path} does not exist: run the sweep with save_trajectories = true (and let the chunk finish)."
        )
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def network_path(out_dir: str, chunk: int) -> str:
    return os.path.join(out_dir, NETWORKS, f"chunk-{chunk:06d}.npz")


def write_networks(out_dir: str, chunk: int, index: list[int], initial: list[list], final: list[list]) -> None:
    """``networks/chunk-NNNNNN.npz``: ``index`` (the chunk's initializations, in order) and,
    per parameter leaf ``k``, ``initial_k`` and ``final_k`` of shape ``(len(index), ...)``
    (``initial[r]``/``final[r]`` hold row ``r``'s leaves): the first and last network of
    every run, so derived columns can be recomputed without running again
    (:mod:`gflow.sweep.annotate`). Written atomically before the chunk's rows."""
    arrays = {f"initial_{k}": np.stack([row[k] for row in initial]) for k in range(len(initial[0]))}
    arrays.update({f"final_{k}": np.stack([row[k] for row in final]) for k in range(len(final[0]))})
    atomic_savez(network_path(out_dir, chunk), dict(index=np.asarray(index), **arrays))


def read_networks(out_dir: str, n_chunks: int) -> dict:
    """All chunks' :func:`write_networks` arrays, concatenated in index order; ``ValueError``
    if a chunk has none (a sweep run before networks were stored, or unfinished)."""
    parts = []
    for c in range(n_chunks):
        path = network_path(out_dir, c)
        if not os.path.exists(path):
            raise ValueError(f"{path} does not exist: the sweep is unfinished or ran before gflow stored networks.")
        with np.load(path) as f:
            parts.append({k: f[k] for k in f.files})
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(out["index"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def merge(out_dir: str, n_chunks: int | None = None) -> pa.Table:
    """Concatenate the chunk tables into ``runs.parquet`` (sorted by index); checks completeness."""
    chunks = sorted(done_chunks(out_dir))
    if n_chunks is not None:
        missing = sorted(set(range(n_chunks)) - set(chunks))
        if missing:
            raise ValueError(
                f"{out_dir} is incomplete: {len(missing)} of {n_chunks} chunks missing "
                f"(first: {missing[0]}); run the remaining parts first."
            )
    tables = [pq.read_table(chunk_path(out_dir, c)) for c in chunks]
    table = pa.concat_tables(tables).sort_by("index") if tables else pa.table({})
    atomic_write(os.path.join(out_dir, RUNS), lambda tmp: pq.write_table(table, tmp))
    return table


def merge_methods(out_dir: str, methods: list[str]) -> pa.Table:
    """``runs.parquet`` of a sweep with ``methods``: the rows of each method's sweep
    (``out_dir/<method>``) with a ``method`` column first, ordered by ``index`` then by the
    order of ``methods``."""
    table = _methods_table(out_dir, methods, annotated=False)
    atomic_write(os.path.join(out_dir, RUNS), lambda tmp: pq.write_table(table, tmp))
    return table


def _methods_table(out_dir: str, methods: list[str], annotated: bool) -> pa.Table:
    tables = []
    for m in methods:
        t = read_runs(os.path.join(out_dir, m), annotated)
        tables.append(t.add_column(0, "method", pa.array([m] * t.num_rows, pa.string())))
    table = pa.concat_tables(tables, promote_options="default")
    rank = np.repeat(np.arange(len(methods)), [t.num_rows for t in tables])
    return table.take(pa.array(np.lexsort((rank, table["index"].to_numpy()))))


def read_manifest(out_dir: str) -> dict:
    """A sweep folder's ``manifest.json`` as a dict: ``config`` (the fields of
    :class:`gflow.sweep.SweepConfig`), ``config_hash``, and the environment that ran it
    (versions, git commit, device, machine, date)."""
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir} does not exist.")
    if not os.path.exists(path):
        raise ValueError(f"{out_dir} is not a sweep folder (it has no {MANIFEST}).")
    with open(path) as f:
        return json.load(f)


def n_chunks_of(config: dict) -> int:
    """How many chunk files a complete sweep of ``config`` (a manifest's config) has."""
    return -(-config["n_inits"] // config["chunk_size"])


def read_runs(out_dir: str, annotated: bool = True) -> pa.Table:
    """The rows of a finished sweep (``runs.parquet``, one row per initialization, sorted by
    ``index``) as a ``pyarrow.Table``: ``.to_pandas()`` for pandas,
    ``polars.from_arrow(table)`` for polars, ``table.column("final_loss").to_numpy()`` for one
    column. ``ValueError`` if ``out_dir`` is not a sweep folder or the sweep is unfinished.

    If ``gflow sweep annotate`` re-scored the sweep (``annotations.parquet``), its columns
    replace the run's (``recovered``) or are added (``recover_tol``); ``annotated=False``
    gives the rows as run. A sweep with ``methods``: the rows of every method, with a
    ``method`` column, ordered by ``index`` then method."""
    path = os.path.join(out_dir, RUNS)
    if not os.path.exists(path):
        config = read_manifest(out_dir)["config"]
        n, done = n_chunks_of(config), len(done_chunks(out_dir))
        hint = f"run gflow sweep merge {out_dir}" if done == n else "run the remaining parts first"
        raise ValueError(f"{out_dir} has no {RUNS}: {done} of {n} chunks are done; {hint}.")
    methods = read_manifest(out_dir)["config"].get("methods")
    if methods is not None:  # each method's rows as that sweep shows them (annotated or not)
        return _methods_table(out_dir, list(methods), annotated)
    table = pq.read_table(path)
    notes = os.path.join(out_dir, ANNOTATIONS)
    if not annotated or not os.path.exists(notes):
        return table
    extra = pq.read_table(notes).sort_by("index")
    if extra.column("index") != table.column("index"):
        raise ValueError(f"{notes} does not match the rows of {path}; run gflow sweep annotate again.")
    for name in extra.column_names[1:]:
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, extra.column(name))
        else:
            table = table.append_column(name, extra.column(name))
    return table
