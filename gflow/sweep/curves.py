"""Loss and gradient-norm curves of a sweep's runs at the saved times (``curves = true``)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._jit import jit
from ..losses import full_batch_loss, get_loss
from .config import SweepConfig
from .problems import _init_structure


def curve_columns(cfg: SweepConfig, data, ts, states: list[list]) -> list[dict]:
    r"""Per row, at the saved times ``ts``: ``curve_t`` (the times), ``curve_loss`` (the
    training loss :math:`L(\theta(t))`, for a Gaussian population its expected value),
    ``curve_grad_norm`` (:math:`\lVert\nabla L(\theta(t))\rVert_2` over all parameters) and,
    with test data, ``curve_test_loss``. ``states[r]`` holds row ``r``'s parameter leaves with
    a leading time axis; a time a failed run did not reach is NaN, and so are its values."""
    treedef, static = _init_structure(cfg, data)
    params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(np.stack(leaf)) for leaf in zip(*states, strict=True)])
    values = _curves(params, static, data, cfg.loss_name)
    values = jax.tree_util.tree_map(np.asarray, values)
    t = [float(v) for v in np.asarray(ts)]
    return [dict(curve_t=t, **{k: v[r].tolist() for k, v in values.items()}) for r in range(len(states))]


@jit
def _curves(params, static, data, loss_name: str) -> dict:
    loss_fn = get_loss(loss_name)

    def loss(p):
        return data.loss(eqx.combine(p, static), loss_fn)

    def at(p):
        value, grad = jax.value_and_grad(loss)(p)
        norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grad)))
        out = dict(curve_loss=value, curve_grad_norm=norm)
        if data.has_test:
            out["curve_test_loss"] = full_batch_loss(eqx.combine(p, static), data.x_test, data.y_test, loss_fn)
        return out

    return jax.vmap(jax.vmap(at))(params)
