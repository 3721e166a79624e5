"""Reading the saved trajectories of a sweep run with ``save_trajectories``."""

from __future__ import annotations

import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import store
from .config import SweepConfig
from .problems import _init_structure, dataset

__all__ = ["load_trajectory"]


def load_trajectory(out_dir: str, index: int):
    """``(ts, models)`` of initialization ``index`` of a sweep run with ``save_trajectories``:
    ``models`` is the network with a leading time axis (as ``Trajectory.models``), the saved
    state at each ``ts``; times a failed run did not reach are NaN."""

    with open(os.path.join(out_dir, store.MANIFEST)) as f:
        cfg = SweepConfig.from_dict(json.load(f)["config"])
    cfg.check_precision()
    if not 0 <= index < cfg.n_inits:
        raise ValueError(f"index must be in [0, {cfg.n_inits}) for this sweep, got {index}.")
    arrays = store.read_trajectories(out_dir, index // cfg.chunk_size)
    row = int(np.nonzero(arrays["index"] == index)[0][0])
    treedef, static = _init_structure(cfg, dataset(cfg)[0])
    leaves = [jnp.asarray(arrays[f"leaf_{k}"][row]) for k in range(treedef.num_leaves)]
    return arrays["ts"], eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
