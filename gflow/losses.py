"""Losses ``loss(pred, y) -> scalar`` averaged over the data set.

Normalization (it fixes the time scale of the flow; a factor 2 rescales time):

- ``mse(pred, y) = 1/(2n) sum_i ||pred_i - y_i||^2``: one point gives ``1/2 (f - y)^2``,
  the loss of the closed-form check in docs/theory.md §1.
- ``bce(logits, y) = 1/n sum_i [log(1 + e^{z_i}) - y_i z_i]``, labels in {0, 1}, stable for
  any logit.
- ``cross_entropy(logits, y) = 1/n sum_i [logsumexp(z_i) - z_{i, y_i}]``, ``y`` integer
  labels ``(n,)`` or one-hot / probabilities ``(n, classes)``.

Predictions have shape ``(n, out)``; targets ``(n,)`` are read as ``(n, 1)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Real

from ._custom_types import LossFn, LossLike, Scalar

__all__ = ["mse", "bce", "cross_entropy", "get_loss", "full_batch_loss", "LOSSES"]


def _match(pred, y):
    y = jnp.asarray(y, pred.dtype)
    return y.reshape(pred.shape) if y.size == pred.size else y


def mse(pred: Float[Array, " n *out"], y: Real[ArrayLike, " n *target"]) -> Scalar:
    """``1/(2n) sum_i ||pred_i - y_i||^2``."""
    return 0.5 * jnp.mean(jnp.sum((pred - _match(pred, y)) ** 2, axis=-1))


def bce(logits: Float[Array, " n *out"], y: Real[ArrayLike, " n *target"]) -> Scalar:
    """Binary cross-entropy with logits: ``mean(softplus(z) - y z)``."""
    y = _match(logits, y)
    return jnp.mean(jnp.sum(jnp.logaddexp(0.0, logits) - y * logits, axis=-1))


def cross_entropy(logits: Float[Array, " n classes"], y: Real[ArrayLike, " n *labels"]) -> Scalar:
    """Softmax cross-entropy: ``mean(logsumexp(z) - z_y)``."""
    y = jnp.asarray(y)
    if y.ndim == logits.ndim:
        return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.sum(y * logits, axis=-1))
    picked = jnp.take_along_axis(logits, y.astype(jnp.int32)[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


def full_batch_loss(model, x, y, loss_fn):
    """``L(theta) = loss(f_theta(x_i) for all i, y)`` over the whole data set."""
    return loss_fn(jax.vmap(model)(x), y)


LOSSES: dict[str, LossFn] = {"mse": mse, "bce": bce, "cross_entropy": cross_entropy}


def get_loss(loss: LossLike) -> LossFn:
    """Resolve a loss name (``mse``, ``bce``, ``cross_entropy``) or pass a callable through."""
    if callable(loss):
        return loss
    if loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"loss must be one of {', '.join(LOSSES)} or a callable (pred, y) -> scalar; got {loss!r}.")
