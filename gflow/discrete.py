"""Discrete optimizers (Optax) on the same footing as the flow: one jitted ``lax.scan``.

Time is ``t = lr * step`` so a run shares its time axis with :func:`gflow.gradient_flow`:
GD with step ``lr`` is the explicit Euler method for the flow with step ``lr``.
One GD/SGD step changes each conserved quantity by exactly
``eta^2 (||g_w||^2 - ||g_v||^2)`` (docs/theory.md §1).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._jit import jit
from .conservation import conservation_of, warn_if_absent
from .losses import full_batch_loss, get_loss
from .trajectory import Status, Trajectory, evaluate

if TYPE_CHECKING:  # Optax is imported where an optimizer is built: not at ``import gflow``
    import optax

__all__ = ["train", "OPTIMIZERS", "make_optimizer"]

OPTIMIZERS = ("gd", "sgd", "momentum", "adam")


def make_optimizer(optimizer, lr, momentum: float = 0.9) -> optax.GradientTransformation:
    """``gd``/``sgd``: ``theta -= lr g``; ``momentum``: heavy ball (``optax.sgd(lr, momentum)``);
    ``adam``: ``optax.adam(lr)``; an ``optax.GradientTransformation`` is used as given."""
    import optax

    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if optimizer in ("gd", "sgd"):
        return optax.sgd(lr)
    if optimizer == "momentum":
        return optax.sgd(lr, momentum=momentum)
    if optimizer == "adam":
        return optax.adam(lr)
    raise ValueError(
        f"optimizer must be one of {', '.join(OPTIMIZERS)} or an optax.GradientTransformation; got {optimizer!r}."
    )


def _save_slots(steps: int, n_save: int) -> tuple[np.ndarray, np.ndarray]:
    """Saved steps (evenly spaced, rounded, unique) and, per step 0..steps, its buffer slot
    (``len(saved)`` = a scratch slot for steps that are not saved)."""
    saved = np.unique(np.round(np.linspace(0, steps, n_save)).astype(np.int64))
    slot = np.full(steps + 1, len(saved), dtype=np.int32)
    slot[saved] = np.arange(len(saved), dtype=np.int32)
    return saved, slot


@jit
def run_optimizer(
    model, data, loss_fn, optimizer, lr, slot, key, *, batch_size: int | None, n_saved: int, momentum: float = 0.9
):
    """Jitted core of :func:`train`: returns the saved models (leading axis ``n_saved``)."""
    import optax

    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = make_optimizer(optimizer, lr, momentum)
    steps = slot.shape[0] - 1

    def batch_loss(p, step):
        model = eqx.combine(p, static)
        if batch_size is None:
            return data.loss(model, loss_fn)
        if data.is_population:  # online SGD: a fresh draw from the population at every step
            return data.sample(batch_size, jr.fold_in(key, step)).loss(model, loss_fn)
        n = data.x_train.shape[0]
        per_epoch = n // batch_size
        perm = jr.permutation(jr.fold_in(key, step // per_epoch), n)
        idx = jax.lax.dynamic_slice_in_dim(perm, (step % per_epoch) * batch_size, batch_size)
        return full_batch_loss(model, data.x_train[idx], data.y_train[idx], loss_fn)

    buffer = jax.tree_util.tree_map(lambda x: jnp.zeros((n_saved + 1, *x.shape), x.dtype).at[0].set(x), params)

    def body(carry, step):
        p, state, buf = carry
        g = jax.grad(batch_loss)(p, step)
        # Optax's own arithmetic (e.g. Adam's bias correction, a float to the power of its int32
        # step count) relies on JAX's standard promotion; gflow's code does not
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(g, state, p)
        p = optax.apply_updates(p, updates)
        buf = jax.tree_util.tree_map(lambda b, x: b.at[slot[step + 1]].set(x), buf, p)
        return (p, state, buf), None

    (_, _, buffer), _ = jax.lax.scan(body, (params, opt.init(params), buffer), jnp.arange(steps))
    saved = jax.tree_util.tree_map(lambda b: b[:n_saved], buffer)
    return eqx.combine(saved, static)


def train(
    model,
    data,
    loss,
    optimizer="gd",
    lr: float = 1e-2,
    steps: int = 1000,
    *,
    batch_size: int | None = None,
    key=None,
    n_save: int = 101,
    momentum: float = 0.9,
    conserved=None,
) -> Trajectory:
    """Train ``model`` with a discrete optimizer and record a :class:`Trajectory`.

    **Arguments:**
    - ``data``: a :class:`gflow.Dataset` or a :class:`gflow.GaussianPopulation` (full-batch
      steps then follow the exact gradient of the expected loss; SGD draws a fresh sample of
      ``batch_size`` from the population at every step: online SGD).
    - ``optimizer``: ``gd`` (full batch), ``sgd`` (minibatches of ``batch_size``, default
      32, drawn by reshuffling the training set every epoch with ``key``), ``momentum``
      (heavy ball, coefficient ``momentum``), ``adam``, or any ``optax.GradientTransformation``
      (then ``lr`` only sets the time axis).
    - ``steps``: number of updates; ``n_save`` evenly spaced steps (rounded) are saved at
      times ``t = lr * step``.
    - ``conserved``: a callable ``model -> array`` of conserved quantities (as in
      :func:`gflow.gradient_flow`); ``model`` can be any ``eqx.Module``, and without known
      conserved quantities the trajectory's ``conserved`` is ``None`` (one
      :class:`gflow.NoConservedQuantities` warning says why).

    **Returns:** a :class:`Trajectory`; ``stats["grad_evals"]`` counts gradient evaluations
    (of a minibatch for SGD). A run that blows up ends with status ``nonfinite``.
    """
    opt_name = optimizer if isinstance(optimizer, str) else None
    make_optimizer(optimizer, 1.0)  # validates the name
    if not (isinstance(lr, (int, float, np.integer, np.floating)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if not isinstance(n_save, (int, np.integer)) or n_save < 2:
        raise ValueError(f"n_save must be an integer >= 2, got {n_save!r}.")
    n = None if data.is_population else data.x_train.shape[0]
    if opt_name == "sgd" and batch_size is None:
        batch_size = 32 if n is None else min(32, n)
    if batch_size is not None and not (
        isinstance(batch_size, (int, np.integer)) and 1 <= batch_size and (n is None or batch_size <= n)
    ):
        limit = "a positive integer" if n is None else f"an integer in [1, {n}] (the training set size)"
        raise ValueError(f"batch_size must be {limit}, got {batch_size!r}.")
    key = jr.PRNGKey(0) if key is None else key
    loss_fn = get_loss(loss)
    laws = conservation_of(model, conserved)
    warn_if_absent(laws, model)
    saved, slot = _save_slots(int(steps), int(n_save))
    dtype = jnp.result_type(float)
    start = time.perf_counter()
    models = run_optimizer(
        model,
        data,
        loss_fn,
        optimizer,
        jnp.asarray(lr, dtype),
        jnp.asarray(slot),
        key,
        batch_size=None if batch_size is None else int(batch_size),
        n_saved=len(saved),
        momentum=float(momentum),
    )
    ts = jnp.asarray(saved, dtype) * lr
    stats = dict(
        steps=jnp.asarray(steps),
        accepted=jnp.asarray(steps),
        rejected=jnp.asarray(0),
        grad_evals=jnp.asarray(steps),
        wall_time=jnp.zeros((), dtype),
    )
    traj = jax.block_until_ready(_evaluate(ts, models, data, loss_fn, stats, laws))
    return eqx.tree_at(lambda t: t.stats["wall_time"], traj, jnp.asarray(time.perf_counter() - start, dtype))


@jit
def _evaluate(ts, models, data, loss_fn, stats, laws):
    return evaluate(ts, models, data, loss_fn, stats, Status.successful, laws)
