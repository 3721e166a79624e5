"""One row per trajectory: the values a run reduced to, as plain Python (and the teacher
flags of teacher-student sweeps)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np

from ..metrics import label_string
from ..topology.symmetry import reachable, recovered
from ..trajectory import status_name
from .config import SweepConfig


def _row(values: dict, j: int, cfg: SweepConfig, teacher, static) -> dict:
    row: dict[str, Any] = dict(index=int(values["index"][j]), seed=cfg.seed)
    if cfg.model_factory is not None:
        row["factory"] = cfg.factory_name
    for key in (
        "initial_loss",
        "final_loss",
        "initial_test_loss",
        "final_test_loss",
        "drift",
        "relative_drift",
        "t_reached",
    ):
        if key in values:
            row[key] = float(values[key][j])
    path = np.asarray(values["pathological"][j])
    row["label_start"] = label_string(np.asarray(values["label_start"][j]), path)
    row["label_end"] = label_string(np.asarray(values["label_end"][j]), path)
    for key in (
        "n_pathological",
        "effective_label_start",
        "effective_label_end",
        "label_changes",
        "steps",
        "accepted",
        "rejected",
        "grad_evals",
        "dtmin_steps",
        "pins",
        "unpins",
        "pinned",
    ):
        if key in values:
            row[key] = int(values[key][j])
    for key in values:
        if key == "event_time" or key.startswith("t_") and key != "t_reached":
            row[key] = float(values[key][j])
    if "event" in values:
        row["event"] = int(values["event"][j])
    row["status"] = status_name(values["status"][j])
    if teacher is not None and cfg.model == "shallow" and not cfg.bias:
        row.update(_teacher_flags(values, j, teacher, static, cfg.recover_tol))
    return row


def _teacher_flags(values, j, teacher, static, tol: float) -> dict:
    """``reachable``: docs/theory.md §1's predicate for the initial student's component;
    ``recovered``: the final student realizes the teacher's function (canonical forms within
    ``tol``, §3)."""

    def model(key):
        return eqx.combine(jax.tree_util.tree_map(lambda x: x[j], values[key]), static)

    student0, student1 = model("initial_params"), model("final_params")
    ok = np.isfinite(values["final_loss"][j])
    return dict(reachable=bool(reachable(teacher, student0)), recovered=bool(ok and recovered(student1, teacher, tol)))


def _rows_from(values: dict, which: np.ndarray, cfg, teacher, static, extra: dict) -> list[dict]:
    values = jax.tree_util.tree_map(np.asarray, values)
    states = jax.tree_util.tree_leaves(values["states"]) if "states" in values else None
    initial, final = (jax.tree_util.tree_leaves(values[k]) for k in ("initial_params", "final_params"))
    rows = []
    for j in which:
        row = _row(values, int(j), cfg, teacher, static)
        row["wall_time"] = float(extra["wall"][j])
        # split off into the chunk's network (and trajectory) files
        row["_networks"] = ([leaf[j] for leaf in initial], [leaf[j] for leaf in final])
        if states is not None:
            row["_states"] = [leaf[j] for leaf in states]
        rows.append(row)
    return rows
