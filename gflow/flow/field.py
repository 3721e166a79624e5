"""The vector fields of the flow: the plain ``-grad L``, the field of one smooth piece
(a fixed activation pattern) and the Filippov sliding field.

Every field here takes Diffrax's ``args`` as the activation pattern of the piece being
integrated: ``None`` means the pattern of the state itself (``relu``, ``relu'(0) = 0``), an
array of shape ``(units, n)`` (0/1 in the parameters' dtype) fixes which (unit, point) pairs
are active, so the field is smooth (polynomial in the weights) across the kinks
``z_kj = 0``. :mod:`gflow.flow.locate` integrates piece by piece that way.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .batching import cond_any

__all__ = ["flow_field", "pattern_field", "sliding_field", "dense_sliding_field"]


def flow_field(static, data, loss_fn):
    """The vector field ``(t, params, args) -> -grad L(params)`` for Diffrax (``args`` ignored),
    ``L = data.loss(model, loss_fn)`` (a finite sample's full-batch loss or a population's
    closed-form expectation)."""

    def field(t, params, args):
        g = jax.grad(lambda p: data.loss(eqx.combine(p, static), loss_fn))(params)
        return jax.tree_util.tree_map(jnp.negative, g)

    return field


def pattern_field(static, data, loss_fn):
    """``-grad L`` of any :class:`gflow.AbstractReLUNet`, with its activation pattern fixed to
    ``args`` (``(units, n)``; ``None``: the plain field) through ``masked_forward``."""
    x, y = data.x_train, data.y_train

    def loss(p, pattern):
        model = eqx.combine(p, static)
        if pattern is None:
            pred = jax.vmap(lambda xi: model.masked_forward(xi)[0])(x)
        else:
            pred = jax.vmap(lambda xi, pi: model.masked_forward(xi, pi)[0])(x, pattern.T)
        return loss_fn(pred, y)

    def field(t, params, args):
        return jax.tree_util.tree_map(jnp.negative, jax.grad(loss)(params, args))

    return field


def _shallow_parts(params, x, y, loss_fn, pattern):
    """Pre-activations ``H`` (width, n), activity, the ``g_kj`` matrix ``G`` and the one-sided
    field blocks ``FW`` (width, D), ``FV`` of a shallow net (``z_j`` with the 1 of a bias)."""
    W, b, V = params.W, params.b, params.V
    Wf = W if b is None else jnp.concatenate([W, b[:, None]], axis=1)
    z = x if b is None else jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
    H = Wf @ z.T  # (width, n): the long data axis last, as the fast matmuls want it
    act = H > 0 if pattern is None else pattern > 0
    A = jnp.where(act, H, 0.0)
    pred = (V @ A).T
    r = jax.grad(loss_fn)(pred, y).reshape(pred.shape).T  # (out, n)
    G = V.T @ r  # (width, n): g_kj = v_k . dL/df(x_j)
    g_in = jnp.where(act, G, 0.0)
    return Wf, z, H, G, g_in, -g_in @ z, -r @ A.T


def _pack(params, FW, FV):
    if params.b is None:
        return eqx.tree_at(lambda p: (p.W, p.V), params, (FW, FV))
    return eqx.tree_at(lambda p: (p.W, p.b, p.V), params, (FW[:, :-1], FW[:, -1], FV))


def sliding_field(static, data, loss_fn, slide_tol, rtol, atol, gated: bool = True):
    r"""The Filippov vector field of a :class:`ShallowReLU` flow, sliding on attractive kinks.

    On the kink ``S = {w_k . z_j = 0}`` the two one-sided fields differ only in neuron k's
    incoming block, by ``g_jk z_j`` (``g_jk = v_k . dL/df(x_j)``): every other term of the
    gradient is continuous across ``S``. With ``a = z_j . F_in`` (``F_in``: point j inactive),
    ``h = w_k . z_j`` moves up at rate ``a`` below ``S`` and at ``a - g_jk |z_j|^2`` above it.
    When ``0 < a < g_jk |z_j|^2`` both sides push into ``S`` (an *attractive* kink) and
    Filippov's solution slides on it with the convex combination of the two fields that
    keeps ``dh/dt = 0``:

        F_slide = F_in - (a / |z_j|^2) z_j     (in neuron k's incoming block),

    the one-sided field with its component along ``z_j`` removed. It joins the one-sided
    field continuously where sliding ends (``a -> 0`` or ``a -> g_jk |z_j|^2``) and, on
    ``S``, satisfies the conservation identity, so ``delta_k`` is still conserved. The
    kinks that slide are the attractive ones within the band
    ``|h| <= slide_tol (atol + rtol ||w_k||) |z_j|`` (the band the solver's accepted states
    reach); when one neuron has several (nearly parallel ``z_j``), the corrections of all
    of them are averaged (each weighted 1 / their number). Inside the band the field keeps
    ``h`` fixed, so an explicit solver follows the sliding mode with smooth steps instead of
    chattering across ``S``. Away from attractive kinks this is exactly ``-grad L`` (with
    ``relu'(0) = 0``), or the field of the activation pattern ``args`` when one is given.

    ``slide_tol=None``: no sliding (the one-sided field only). The band test is one
    comparison per (neuron, point); the correction (two more products over all pairs) runs
    only when some pair is in the band, which at tight tolerances is a small fraction of the
    evaluations (``benchmarks/kinks_field_cost.py``); under ``vmap`` only for the members
    that have one (:func:`gflow.flow.batching.cond_any`: in a 64-slot sweep of the toy about
    9 members per evaluation, ``benchmarks/sweep_throughput.py``).
    ``gated=False`` always corrects over every pair (:func:`dense_sliding_field`, the previous
    implementation, kept as the reference).
    """
    x, y = data.x_train, data.y_train
    z_sq = jnp.sum(x**2, axis=1) + (0.0 if static.b is None else 1.0)
    inv_sq = jnp.where(z_sq > 0, 1.0 / jnp.where(z_sq > 0, z_sq, 1.0), 0.0)
    z_norm = jnp.sqrt(z_sq)

    def field(t, params, args):
        Wf, z, H, G, g_in, FW, FV = _shallow_parts(params, x, y, loss_fn, args)
        if slide_tol is None:
            return _pack(params, FW, FV)
        w_norm = jnp.sqrt(jnp.sum(Wf**2, axis=1))
        band = slide_tol * (atol + rtol * w_norm)
        # a pinned neuron (w_k = 0) is inactive on every point: a = 0, never attractive, no correction
        near = (jnp.abs(H) <= band[:, None] * z_norm[None, :]) & (w_norm > 0)[:, None]
        ops = (FW, G, g_in, near, z, inv_sq)
        if not gated:
            return _pack(params, _dense_correction(*ops), FV)
        # corrected only where a pair is in the band; under vmap only the members that have one
        # (cond_any: a few members per evaluation in sweeps, measured in benchmarks/sweep_throughput.py)
        FW = cond_any(jnp.any(near), _dense_correction, _uncorrected, *ops)
        return _pack(params, FW, FV)

    return field


def _uncorrected(FW, *_):
    return FW


def _attractive_coef(a, g_in, G, zsq, isq, near):
    # remove F_in's component along z_j: coef = g_in - a / |z_j|^2 on attractive kinks
    attractive = near & (a > 0) & (a < G * zsq)
    return attractive, jnp.where(attractive, g_in - a * isq, 0.0)


def _dense_correction(FW, G, g_in, near, z, inv_sq):
    z_sq = jnp.sum(z**2, axis=1)
    a = FW @ z.T + g_in * z_sq[None, :]  # z_j . F_in (point j inactive)
    attractive, coef = _attractive_coef(a, g_in, G, z_sq[None, :], inv_sq[None, :], near)
    count = jnp.maximum(jnp.sum(attractive, axis=1, dtype=FW.dtype), 1.0)
    return FW + (coef @ z) / count[:, None]


def dense_sliding_field(static, data, loss_fn, slide_tol, rtol, atol):
    """:func:`sliding_field` with the correction computed over every (neuron, point) pair:
    the reference the sparse path is tested and benchmarked against."""
    return sliding_field(static, data, loss_fn, slide_tol, rtol, atol, gated=False)
