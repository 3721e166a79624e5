"""Derived columns recomputed from a finished sweep's stored networks, without running again.

Every sweep stores the first and last network of each run (``networks/chunk-*.npz``).
:func:`annotate` recomputes the teacher–student columns that depend on a tolerance, not on
the run, and writes them to ``annotations.parquet`` beside the rows: the config, its hash
and ``runs.parquet`` stay as they are, and :func:`gflow.sweep.store.read_runs` shows the
annotated values in place of the run's.
"""

from __future__ import annotations

import json
import os

import equinox as eqx
import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._atomic import atomic_write
from ..data import Dataset
from ..topology.symmetry import data_resolution, recovered
from . import store
from .config import SweepConfig
from .problems import _init_structure, dataset

__all__ = ["annotate", "recover_distance"]


def annotate(out_dir: str, recover_tol: float | str = "data") -> pa.Table:
    r"""Re-score a finished teacher–student sweep at another ``recover_tol``.

    ``recovered`` is recomputed for every run from its stored final network:
    :func:`gflow.recovered` (canonical forms of student and teacher within ``tol``). With
    ``recover_tol="data"``, ``tol`` is the data's angular resolution
    :func:`gflow.data_resolution` (the largest gap between the directions of the training
    inputs, in radians): inside such a gap a kink can move without changing any training
    prediction, so a student that splits one teacher kink into two neurons a little apart
    there has learned all the data can tell. Rows of a run whose final loss is not finite
    stay ``False``, as in the sweep itself.

    Writes ``out_dir/annotations.parquet`` (columns ``index``, ``recovered``,
    ``recover_tol`` and ``recover_distance``, :func:`recover_distance`; replaced by the next
    call) and returns it. The result equals the
    ``recovered`` column of the same sweep run with ``recover_tol`` set to that value.
    """
    manifest = store.read_manifest(out_dir)
    cfg = SweepConfig.from_dict(manifest["config"])
    if cfg.methods is not None:  # each method's sweep, then their rows together
        parts = []
        for name, _ in cfg.methods:
            part = annotate(os.path.join(out_dir, name), recover_tol)
            parts.append(part.add_column(0, "method", pa.array([name] * part.num_rows)))
        return pa.concat_tables(parts)
    if cfg.data != "teacher_student" or cfg.model != "shallow" or cfg.bias:
        raise ValueError(
            f"{out_dir}: annotate re-scores teacher-student sweeps of shallow nets without biases "
            f"(this one has data = {cfg.data!r}, model = {cfg.model!r}, bias = {cfg.bias})."
        )
    cfg.check_precision()
    runs = store.read_runs(out_dir, annotated=False)
    data, teacher = dataset(cfg)
    assert teacher is not None  # teacher-student data, checked above
    if recover_tol == "data" and not isinstance(data, Dataset):
        raise ValueError("recover_tol 'data' reads the training inputs; a Gaussian population has none: give a number.")
    tol = data_resolution(data.x_train) if isinstance(data, Dataset) and recover_tol == "data" else recover_tol
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"recover_tol must be a positive number or 'data', got {recover_tol!r}.")
    networks = store.read_networks(out_dir, store.n_chunks_of(manifest["config"]))
    treedef, static = _init_structure(cfg, data)
    index = runs.column("index").to_numpy()
    if not np.array_equal(networks["index"], index):
        raise ValueError(f"{out_dir}: the stored networks do not match the rows of runs.parquet.")
    finite = np.isfinite(runs.column("final_loss").to_numpy())
    flags, distance = [], []
    for r in range(len(index)):
        leaves = [networks[f"final_{k}"][r] for k in range(treedef.num_leaves)]
        student = eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
        flags.append(bool(finite[r] and recovered(student, teacher, float(tol))))
        distance.append(recover_distance(student, teacher) if finite[r] else float("inf"))
    columns = dict(index=index, recovered=flags, recover_tol=np.full(len(index), float(tol)))
    table = pa.table(dict(columns, recover_distance=distance))
    table = table.replace_schema_metadata({"recover_tol": json.dumps(recover_tol)})
    atomic_write(os.path.join(out_dir, store.ANNOTATIONS), lambda tmp: pq.write_table(table, tmp))
    return table


# tolerances 10^(k/4), 1e-12 ... 10: a quarter decade apart
_GRID = 10.0 ** (np.arange(-48, 5) / 4)


def recover_distance(student, teacher) -> float:
    """How far a student is from the teacher's function, as a tolerance: the smallest
    ``tol`` of the grid ``10^(k/4)`` in [1e-12, 10] at which :func:`gflow.recovered` holds
    (``inf`` if none), found by bisection (``recovered`` holds for every larger tolerance of
    the grid in the cases it is used for: a looser tolerance only drops more small neurons
    and matches more loosely). ``recovered(student, teacher, tol)`` is then
    ``recover_distance <= tol`` up to the grid's quarter-decade resolution."""
    if not recovered(student, teacher, float(_GRID[-1])):
        return float("inf")
    lo, hi = -1, len(_GRID) - 1  # recovered fails at lo (or lo is below the grid), holds at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if recovered(student, teacher, float(_GRID[mid])) else (mid, hi)
    return float(_GRID[hi])
