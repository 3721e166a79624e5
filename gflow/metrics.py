"""Per-trajectory metrics of a sweep (docs/theory.md §4), accumulated at saved times.

The same accumulator serves the exact flow (updated online inside the solver loop, so a
sweep keeps no trajectory in memory) and discrete optimizers (folded over saved models).

Component label (docs/theory.md Prop. 3, shallow nets with e = 1): the signs of the output
weights ``v_k`` of the pathological neurons (``delta_k < 0`` at the start). The exact flow
never changes it; a discrete optimizer can, and ``label_changes`` counts how many saved
times differ from the previous one.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .conservation import Conservation, conservation_of
from .losses import full_batch_loss
from .nets.shallow import ShallowReLU


def output_signs(model, laws: Conservation | None = None):
    """Signs of the output weights per hidden neuron (shallow, e = 1), else an empty vector."""
    # component labels (Prop. 3) are the shallow, single-output formula: it reads V directly
    if isinstance(model, ShallowReLU) and model.out_size == 1:
        return jnp.sign(model.V[..., 0, :])
    laws = conservation_of(model) if laws is None else laws
    return jnp.zeros(laws.values(model).shape[:-1] + (0,))


def start(model, laws: Conservation | None = None) -> dict:
    """Accumulator at t = 0. ``laws``: where the conserved quantities come from (default
    :func:`gflow.conservation.conservation_of`); without any, drift is NaN and labels empty."""
    laws = conservation_of(model) if laws is None else laws
    c0 = laws.values(model)
    signs = output_signs(model, laws)
    pathological = (c0[..., : signs.shape[-1]] < 0) if signs.shape[-1] else jnp.zeros(signs.shape, bool)
    return dict(
        c0=c0,
        scale=laws.scale(model),
        drift=jnp.zeros((), c0.dtype) if laws.available else jnp.full((), jnp.nan, c0.dtype),
        pathological=pathological,
        label0=signs,
        label=signs,
        label_changes=jnp.zeros((), jnp.int32),
    )


def observe(acc: dict, model, laws: Conservation | None = None) -> dict:
    """Fold in the model at one more saved time (``laws`` as in :func:`start`)."""
    laws = conservation_of(model) if laws is None else laws
    drift = acc["drift"]
    if laws.available:
        drift = jnp.maximum(drift, jnp.max(jnp.abs(laws.values(model) - acc["c0"])))
    signs = output_signs(model, laws)
    changed = jnp.any((signs != acc["label"]) & acc["pathological"])
    return dict(acc, drift=drift, label=signs, label_changes=acc["label_changes"] + changed.astype(jnp.int32))


def label_string(signs: np.ndarray, pathological: np.ndarray) -> str:
    """``"+-"``-style label over the pathological neurons (``""`` when there are none)."""
    return "".join("+" if s > 0 else "-" for s, p in zip(signs, pathological, strict=True) if p)


def summarize(acc: dict) -> dict:
    """Scalars for a row: drift (absolute and relative), labels, counts (jit/vmap friendly)."""
    neg0 = jnp.sum((acc["label0"] < 0) & acc["pathological"])
    neg1 = jnp.sum((acc["label"] < 0) & acc["pathological"])
    return dict(
        drift=acc["drift"],
        relative_drift=acc["drift"] / acc["scale"],
        n_pathological=jnp.sum(acc["pathological"]),
        effective_label_start=neg0,
        effective_label_end=neg1,
        label_changes=acc["label_changes"],
    )


def loss_columns(model0, model1, data, loss_fn) -> dict:
    """Initial and final full-batch train (and, if present, test) losses of a row; for a
    Gaussian population, the expected loss (``data.loss``)."""
    cols = dict(
        initial_loss=data.loss(model0, loss_fn),
        final_loss=data.loss(model1, loss_fn),
    )
    if data.has_test:
        cols["initial_test_loss"] = full_batch_loss(model0, data.x_test, data.y_test, loss_fn)
        cols["final_test_loss"] = full_batch_loss(model1, data.x_test, data.y_test, loss_fn)
    return cols
