"""Conserved quantities of the gradient flow and exact projection onto the invariant set.

For every hidden unit h (docs/theory.md §1-2), with incoming weights ``w_in`` (a bias is an
incoming weight) and outgoing weights ``w_out``,

    c_h = ||w_in||^2 - ||w_out||^2

is constant along ``d theta/dt = -grad L(theta)`` for any loss that depends on theta only
through the network function (ReLU is positively homogeneous). For a shallow net this is
``delta_k = ||w_k||^2 - ||v_k||^2``.
"""

from __future__ import annotations

from typing import TypeVar, cast

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from ._jit import jit
from ._validate import Signs, fail, finite_array
from .nets.base import AbstractReLUNet, require_relu_net
from .nets.recognize import NotRecognized, auto_in_out_squares

__all__ = ["conserved", "unit_norms", "rescale", "project", "relocate", "drift"]


def _in_out_squares(model):
    """Per hidden unit: (sum of squared incoming weights, sum of squared outgoing weights):
    from the ReLU-network interface, or found in a recognized Equinox structure
    (:mod:`gflow.nets.recognize`)."""
    if isinstance(model, AbstractReLUNet):
        return model.in_out_squares()
    try:
        return auto_in_out_squares(model)
    except NotRecognized as err:
        raise ValueError(
            f"no conserved quantities are known for {type(model).__name__}: {err}; implement gflow.AbstractReLUNet "
            "or pass conserved=callable."
        ) from None


def conserved(model) -> Float[Array, "*batch hidden"]:
    """``c_h = ||w_in(h)||^2 - ||w_out(h)||^2`` for every hidden unit h.

    Order: neurons of a :class:`ShallowReLU`; hidden layers in order for an :class:`MLP`;
    hidden nodes ``h0, h1, ...`` for a :class:`DAGNet`; layer by layer (neurons or
    channels) for a recognized Equinox network (``eqx.nn.MLP`` with relu, ``eqx.nn.Sequential``
    of Linear/Conv and relu: :mod:`gflow.nets.recognize`). Works on a batch (leading axes).
    """
    w_in, w_out = _in_out_squares(model)
    return w_in - w_out


def unit_norms(model) -> Float[Array, "*batch hidden"]:
    """``||w_in(h)||^2 + ||w_out(h)||^2`` per hidden unit: the scale drift is measured against."""
    w_in, w_out = _in_out_squares(model)
    return w_in + w_out


def rescale(model, alphas: Real[ArrayLike, " hidden"]):
    """Rescale every hidden unit h by ``alpha_h > 0``: incoming weights times ``alpha_h``,
    outgoing weights divided by it. The network function is unchanged (ReLU is positively
    homogeneous); ``c_h`` becomes ``alpha_h^2 ||w_in||^2 - ||w_out||^2 / alpha_h^2`` for a
    shallow net (for deeper nets, neighbouring scales combine edge by edge).
    """
    alphas = finite_array(alphas, "alphas")
    if not isinstance(alphas, jax.core.Tracer) and not bool(np.all(np.asarray(alphas) > 0)):
        raise ValueError("alphas must be positive (one scale > 0 per hidden unit).")
    return require_relu_net(model).rescale(jnp.asarray(alphas))


def prop4_alpha(w_sq, v_sq, delta):
    """docs/theory.md Prop. 4: the alpha > 0 with alpha^2 w_sq - v_sq / alpha^2 = delta (1 where w_sq = 0).

    ``alpha^2 = (delta + s) / (2 w_sq)`` with ``s = sqrt(delta^2 + 4 w_sq v_sq)`` for
    ``delta >= 0``, and the same root in the cancellation-free form ``2 v_sq / (s - delta)``
    for ``delta < 0``, so that ``delta`` is hit to round-off even for a collapsing ``w``."""
    root = jnp.sqrt(delta**2 + 4 * w_sq * v_sq)
    safe_w = jnp.where(w_sq > 0, w_sq, 1.0)
    alpha_sq = jnp.where(
        delta >= 0, (delta + root) / (2 * safe_w), 2 * v_sq / jnp.where(root - delta > 0, root - delta, 1.0)
    )
    return jnp.where(w_sq > 0, jnp.sqrt(alpha_sq), 1.0)


def project(model, delta, *, max_iter: int = 100):
    """Exact projection onto ``Q(delta)`` by rescaling hidden units (function unchanged).

    Shallow nets: hidden units are decoupled and Prop. 4 of docs/theory.md gives, per neuron
    with ``w_k != 0``, ``alpha_k^2 = (delta_k + sqrt(delta_k^2 + 4||w_k||^2||v_k||^2)) /
    (2||w_k||^2)``.

    MLP and DAG nets: neighbouring scales interact. With log-scales ``s`` the map
    ``s -> c(rescale(model, e^s))`` is the gradient of the strictly convex
    ``F(s) = 1/2 ||theta(s)||^2 - <delta, s>``, so the unique solution of ``c = delta``
    is ``argmin F``, found by damped Newton iterations to round-off.
    """
    delta = finite_array(delta, "delta")
    _check_finite_model(model)
    return _project(model, jnp.asarray(delta, dtype=jnp.result_type(float)), max_iter=max_iter)


def _check_finite_model(model) -> None:
    """One sentence if the (concrete) network holds NaN or inf: rescaling it cannot be exact."""
    leaves = [x for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))]
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return
    if not all(bool(jnp.all(jnp.isfinite(x))) for x in leaves):
        raise ValueError("the network's weights must be finite to be rescaled; they hold NaN or inf.")


@jit  # eager, the Newton loop is re-traced and re-compiled on every call (seconds)
def _project(model, delta, *, max_iter: int):
    target = jnp.broadcast_to(delta, conserved(model).shape)
    if model.decoupled_units:  # one hidden layer: Prop. 4 in closed form, unit by unit
        w_in, w_out = _in_out_squares(model)
        return rescale(model, prop4_alpha(w_in, w_out, target))
    return rescale(model, jnp.exp(_newton_log_scales(model, target, max_iter)))


def _newton_log_scales(model, target, max_iter):
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def F(s):
        m = rescale(eqx.combine(params, static), jnp.exp(s))
        sq = sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(m))
        return 0.5 * sq - jnp.dot(target, s)

    grad, hess = jax.grad(F), jax.hessian(F)
    scale = jnp.max(unit_norms(model)) + jnp.max(jnp.abs(target))
    tol = 8 * jnp.finfo(target.dtype).eps * scale

    def newton_step(s):
        g = grad(s)
        step = -jnp.linalg.solve(hess(s), g)
        f0, slope = F(s), jnp.dot(g, step)
        # Near the solution the predicted decrease falls below the round-off of F itself;
        # without this slack the Armijo test then rejects every step and Newton stalls
        # (seen: |c - delta| ~ 1e-10 left on an MLP).
        slack = 64 * jnp.finfo(s.dtype).eps * (jnp.abs(f0) + 1)

        def shrink(t):
            return t * 0.5

        def keep_shrinking(t):
            return (F(s + t * step) > f0 + 0.25 * t * slope + slack) & (t > 1e-10)

        t = jax.lax.while_loop(keep_shrinking, shrink, jnp.asarray(1.0, s.dtype))
        return s + t * step

    def cond(carry):
        i, s, done = carry
        return (i < max_iter) & ~done

    def body(carry):
        i, s, _ = carry
        s = newton_step(s)
        return i + 1, s, jnp.max(jnp.abs(grad(s))) <= tol

    s0 = jnp.zeros_like(target)
    _, s, _ = jax.lax.while_loop(cond, body, (0, s0, jnp.max(jnp.abs(grad(s0))) <= tol))
    return s


_Net = TypeVar("_Net", bound=AbstractReLUNet)


def relocate(model: _Net, delta, signs=None) -> _Net:
    """Move every hidden unit to the conserved value ``delta`` (scalar or one per unit,
    finite: NaN or inf raises ``ValueError``).

    Uses the exact rescaling of :func:`gflow.project` (Prop. 4): the network function is
    unchanged and ``conserved(relocate(model, delta)) == delta`` to round-off.

    ``signs`` (optional, +1/-1, broadcast against the output weights ``V`` of a
    :class:`ShallowReLU` or the last weight matrix of an :class:`MLP`) then forces the
    signs of the output weights, ``v -> signs * |v|``. This picks the component of the
    invariant set (docs/theory.md Prop. 3) and, unlike the rescaling, changes the function;
    it leaves ``delta`` unchanged.
    """
    # rescaling and forcing output signs return a network of the class they were given
    relocated = cast(_Net, project(model, delta))
    if signs is None:
        return relocated
    if not isinstance(signs, jax.core.Tracer):
        arr = finite_array(signs, "signs", Signs.allowed)
        if not np.all(np.abs(arr) == 1):
            fail("signs", Signs.allowed, arr.tolist())
    signs = jnp.asarray(signs)
    return cast(_Net, require_relu_net(relocated).with_output_signs(signs))


def drift(conserved_ts: Float[Array, "time hidden"], norms0: Float[Array, " hidden"] | None = None):
    """Drift of the conserved quantities along a trajectory (docs/theory.md §4).

    Returns ``max_{t,h} |c_h(t) - c_h(0)|``, and, if ``norms0`` (``unit_norms`` at t=0) is
    given, also that value divided by ``max_h norms0``.
    """
    d = jnp.max(jnp.abs(conserved_ts - conserved_ts[..., :1, :]), axis=(-2, -1))
    if norms0 is None:
        return d
    return d, d / jnp.max(norms0, axis=-1)
