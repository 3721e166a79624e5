"""The vector fields of the flow: the plain ``-grad L`` and the Filippov sliding field."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..losses import full_batch_loss

__all__ = ["flow_field", "sliding_field"]


def flow_field(static, data, loss_fn):
    """The vector field ``(t, params, args) -> -grad L(params)`` for Diffrax."""

    def field(t, params, args):
        g = jax.grad(lambda p: full_batch_loss(eqx.combine(p, static), data.x_train, data.y_train, loss_fn))(params)
        return jax.tree_util.tree_map(jnp.negative, g)

    return field


def sliding_field(static, data, loss_fn, slide_tol, rtol, atol):
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
    of them are averaged (each weighted 1 / their number). Inside the band the field keeps ``h`` fixed, so an explicit
    solver follows the sliding mode with smooth steps instead of chattering across ``S``.
    Away from attractive kinks this is exactly ``-grad L`` (with ``relu'(0) = 0``).
    """
    x, y = data.x_train, data.y_train
    ones = jnp.ones((x.shape[0], 1), x.dtype)
    z_sq_x = jnp.sum(x**2, axis=1)
    z_sq_b = z_sq_x + 1.0

    def field(t, params, args):
        # layout (width, n): the long data axis last, as the fast matmuls want it
        W, b, V = params.W, params.b, params.V
        Wf = W if b is None else jnp.concatenate([W, b[:, None]], axis=1)
        z = x if b is None else jnp.concatenate([x, ones], axis=1)
        z_sq = z_sq_x if b is None else z_sq_b
        z_norm = jnp.sqrt(z_sq)
        inv_sq = jnp.where(z_sq > 0, 1.0 / jnp.where(z_sq > 0, z_sq, 1.0), 0.0)
        H = Wf @ z.T  # (width, n) pre-activations
        A = jax.nn.relu(H)
        pred = (V @ A).T
        r = jax.grad(loss_fn)(pred, y).reshape(pred.shape).T  # (out, n)
        G = V.T @ r  # (width, n): g_kj
        act = H > 0
        FW = -jnp.where(act, G, 0.0) @ z
        FV = -r @ A.T
        near = jnp.abs(H) <= (slide_tol * (atol + rtol * jnp.sqrt(jnp.sum(Wf**2, axis=1))))[:, None] * z_norm[None, :]
        g_in = jnp.where(act, G, 0.0)
        a = FW @ z.T + g_in * z_sq[None, :]  # z_j . F_in (point j inactive)
        attractive = near & (a > 0) & (a < G * z_sq[None, :])
        # remove F_in's component along z_j: coef_j = g_in - a / |z_j|^2; several attractive kinks
        # of one neuron within the band (nearly parallel z_j) share the correction equally
        coef = jnp.where(attractive, g_in - a * inv_sq[None, :], 0.0)
        count = jnp.maximum(jnp.sum(attractive, axis=1, dtype=x.dtype), 1.0)
        FW = FW + (coef @ z) / count[:, None]
        if b is None:
            return eqx.tree_at(lambda p: (p.W, p.V), params, (FW, FV))
        return eqx.tree_at(lambda p: (p.W, p.b, p.V), params, (FW[:, :-1], FW[:, -1], FV))

    return field
