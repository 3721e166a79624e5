r"""Exact flow through ReLU kinks: pinning of collapsed neurons.

**Collapsed neurons.** Take hidden neuron k of a shallow net with incoming weights
``w`` (``b_k`` appended when biases are on, inputs ``z_i = x_i`` or ``(x_i, 1)``) and
outgoing weights ``v``. Let ``g_i = v . dL/df(x_i)`` (the loss's gradient with respect to
the prediction on point i, seen through ``v``). Because relu is positively homogeneous,
conservation (docs/theory.md §1) gives ``<w, dL/dw> = <v, dL/dv> = sum_i g_i relu(w . z_i)``,
so along the flow

    d||w||/dt = -phi(w/||w||),    phi(u) = sum_i g_i relu(u . z_i)     (exactly).

A neuron with ``delta_k < 0`` keeps ``||v||^2 = ||w||^2 - delta_k >= -delta_k > 0``, so
when ``phi > 0`` around it, ``||w||`` reaches 0 in finite time while ``v`` stays away from
0. At ``w = 0`` the network no longer depends on the direction of ``w``, ``dv/dt = 0``,
and ``L(s u) = L(0) + s phi(u) + O(s^2)`` for unit ``u``, with ``g`` taken at ``w = 0``.

*Escape condition.* If ``phi(u) >= 0`` for every ``u``, then the Clarke directional
derivative of ``L`` in ``w`` at 0 is ``>= phi(u) >= 0`` in every direction, so
``0`` is in the Clarke subdifferential: ``(w, v) = (0, v)`` is a Clarke stationary point
for that neuron and the Clarke flow may stay there. If ``phi(u*) < 0`` for some
``u*``, then any flow started at ``w = s u*`` (``s > 0``) grows (``d||w||/dt > 0``): the
neuron escapes. (At ``w = 0`` exactly the Clarke flow is not unique; gflow takes the
escaping solution, the limit ``s -> 0`` of those started at ``s u*``.)

*A finite check.* ``phi`` only sees the component of ``u`` in ``S = span(z_i)`` (dimension
``m``). The hyperplanes ``{u : u . z_i = 0}`` cut ``S`` into polyhedral cones; on each the
active set ``{i : u . z_i > 0}`` is fixed, so ``phi`` is linear there. The ``z_i`` span
``S``, so every cone is pointed and each of its points is a non-negative combination
``u = sum_r lambda_r r`` of the cone's extreme rays; by linearity ``phi(u) = sum_r
lambda_r phi(r)``, so ``phi(u) < 0`` forces ``phi(r) < 0`` for one of them. An extreme ray
of such a cone lies on ``m - 1`` linearly independent hyperplanes. Hence

    escape  <=>  min over the rays r of phi(r) < 0,

with the rays ``±`` the unit vectors of S orthogonal to ``m - 1`` independent ``z_i``:
``m = 1``: ``±z/|z|``; ``m = 2`` (e.g. ``d = 2`` without bias): ``±`` the unit normal of
every ``z_j``, ``2n`` rays whose values all come from one angular sort of the data and
prefix sums (``O(n)`` per check); ``m >= 3``: ``2 C(n, m-1)`` rays, enumerated when that
is small (:func:`escape_oracle` refuses otherwise). ``phi`` is continuous, so cone
boundaries need no care. Tests: ``tests/test_kinks.py`` compares the ray minimum with a
dense sweep of unit vectors.

**Pinning** (:class:`Pinning`, used through ``gradient_flow(kinks="pin")``). After every
solver step, a neuron with ``delta_k < 0`` and ``||w_k|| <= pin_tol sqrt(-delta_k)`` (its
incoming weights numerically collapsed relative to its outgoing ones) is *pinned* when no
escape direction exists: ``w_k = 0`` and ``v_k`` rescaled to ``||v_k|| = sqrt(-delta_k)``,
the exact point the flow reaches (``delta_k`` is conserved). A pinned neuron is an exact
fixed point of the vector field (``relu'(0) = 0``, ``relu(0) = 0``), so the solver no longer
chatters around it. It is *unpinned* when ``min phi < -esc_tol sum_i |g_i| |z_i|``: ``w_k``
restarts at ``(pin_tol / 2) sqrt(-delta_k) u*`` along the best ray ``u*``, ``v_k`` rescaled
to keep ``delta_k``. Pinning at ``||w|| = eps`` instead of letting the flow reach 0 shifts
the other parameters by ``O(eps^2)`` (the neuron's ``O(eps)`` output would have vanished
within a time ``O(eps)``), so the default ``pin_tol = sqrt(max(rtol, atol))`` keeps the error
at the solver's tolerance.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..invariants import conserved
from .batching import cond_any
from .wrappers import ForwardingSolver

__all__ = ["EscapeOracle", "escape_oracle", "Pinning", "make_pinning", "PinnedSolver", "pin_stats"]

_MAX_ORACLE_ENTRIES = 4_000_000


class EscapeOracle(eqx.Module):
    """``phi(u) = sum_i g_i relu(u . z_i)`` at the finite set of rays that decides its sign.

    Build with :func:`escape_oracle`. ``rays`` (R, D) are unit vectors; ``phi(g)`` returns
    ``(R, k)`` values for ``g`` of shape ``(n, k)`` (one column per neuron).
    """

    rays: Float[Array, "R D"]
    z_norm: Float[Array, " n"]
    # plane case (m == 2): data sorted by angle; ray r sums the cyclic run of entries
    # [lo_r, hi_r) + wrap_r times all of them (prefix sums over the n sorted entries only)
    order: Int[Array, " n"] | None
    zs2: Float[Array, "n 2"] | None
    rays2: Float[Array, "R 2"] | None
    lo: Int[Array, " R"] | None
    hi: Int[Array, " R"] | None
    wrap: Float[Array, " R"] | None
    # general case: relu(rays @ z.T)
    act: Float[Array, "R n"] | None
    kind: str = eqx.field(static=True)

    def phi(self, g: Float[Array, "n k"]) -> Float[Array, "R k"]:
        if self.kind == "plane":
            assert self.order is not None and self.zs2 is not None  # set by escape_oracle for this kind
            assert self.wrap is not None
            gz = g[self.order][:, :, None] * self.zs2[:, None, :]  # (n, k, 2)
            # a log-depth scan: XLA's CPU cumsum is several times slower at these sizes
            prefix = jnp.concatenate([jnp.zeros_like(gz[:1]), jax.lax.associative_scan(jnp.add, gz, axis=0)])
            sums = prefix[self.hi] - prefix[self.lo] + self.wrap[:, None, None] * prefix[-1:]  # (R, k, 2)
            return jnp.einsum("rkc,rc->rk", sums, self.rays2)
        if self.kind == "zero":
            return jnp.zeros((1, g.shape[1]), g.dtype)
        assert self.act is not None  # set by escape_oracle for the general kind
        return self.act @ g


def escape_oracle(z, max_entries: int = _MAX_ORACLE_ENTRIES) -> EscapeOracle:
    """The rays of the module docstring for data ``z`` (n, D), computed once (NumPy).

    Raises ``ValueError`` when ``m = rank(z) >= 3`` and ``2 C(n, m-1) n`` exceeds
    ``max_entries``: then the exact check is too large to tabulate.
    """
    z = np.asarray(z, dtype=np.float64)
    n, D = z.shape
    dtype = jnp.result_type(float)
    z_norm = jnp.asarray(np.linalg.norm(z, axis=1), dtype)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    m = int(np.sum(s > max(n, D) * np.finfo(np.float64).eps * (s[0] if len(s) else 0.0)))
    none = dict(order=None, zs2=None, rays2=None, lo=None, hi=None, wrap=None, act=None)
    if m == 0:
        return EscapeOracle(rays=jnp.zeros((1, D), dtype), z_norm=z_norm, **none, kind="zero")
    basis = vt[:m].T  # (D, m), orthonormal
    zm = z @ basis
    if m == 2:
        theta = np.arctan2(zm[:, 1], zm[:, 0])
        order = np.argsort(theta, kind="stable")
        ts = theta[order]
        doubled = np.concatenate([ts, ts + 2 * np.pi])
        starts = np.concatenate([ts, ts + np.pi])  # active arcs (a, a + pi)
        rays2 = np.stack([np.cos(starts + np.pi / 2), np.sin(starts + np.pi / 2)], axis=1)
        lo = np.searchsorted(doubled, starts, side="right")  # entries [lo, hi) of the doubled list
        hi = np.searchsorted(doubled, starts + np.pi, side="left")
        # the doubled list's prefix sum at j is P[j] (j <= n) or P[n] + P[j - n]
        wrap = (hi > n).astype(np.float64) - (lo > n)
        lo, hi = np.where(lo > n, lo - n, lo), np.where(hi > n, hi - n, hi)
        return EscapeOracle(
            rays=jnp.asarray(rays2 @ basis.T, dtype),
            z_norm=z_norm,
            order=jnp.asarray(order),
            zs2=jnp.asarray(zm[order], dtype),
            rays2=jnp.asarray(rays2, dtype),
            lo=jnp.asarray(lo),
            hi=jnp.asarray(hi),
            wrap=jnp.asarray(wrap, dtype),
            act=None,
            kind="plane",
        )
    if m == 1:
        rays_m = np.array([[1.0], [-1.0]])
    else:
        count = 2 * math.comb(n, m - 1)
        if count * n > max_entries:
            raise ValueError(
                f"the exact escape check for data of rank {m} with n={n} points needs {count} rays; "
                f"pinning supports rank <= 2, or 2*C(n, rank-1)*n <= {max_entries}."
            )
        rays = []
        for idx in itertools.combinations(range(n), m - 1):
            # the unit vector orthogonal to the chosen z's: last right-singular vector
            _, sv, vv = np.linalg.svd(zm[list(idx)], full_matrices=True)
            if np.sum(sv > m * np.finfo(np.float64).eps * max(sv[0], 1e-300)) == m - 1:
                rays.append(vv[-1])
        rays_m = np.asarray(rays).reshape(-1, m)
        rays_m = np.unique(np.round(np.concatenate([rays_m, -rays_m]), 12), axis=0)
        rays_m /= np.linalg.norm(rays_m, axis=1, keepdims=True)
    act = np.maximum(rays_m @ zm.T, 0.0)
    fields = {**none, "act": jnp.asarray(act, dtype)}
    return EscapeOracle(rays=jnp.asarray(rays_m @ basis.T, dtype), z_norm=z_norm, **fields, kind="general")


def _inputs(model, x):
    """The neuron inputs ``z_i``: ``x_i``, with a 1 appended when the model has biases."""
    x = np.asarray(x)
    return np.concatenate([x, np.ones((len(x), 1))], axis=1) if model.b is not None else x


class Pinning(eqx.Module):
    """Pins collapsed neurons of a :class:`ShallowReLU` (see the module docstring).

    **Fields:** ``oracle`` (:func:`escape_oracle` of the neuron inputs), ``x``, ``y`` (training
    data), ``delta`` (conserved values), ``pin_tol``, ``esc_tol``, ``loss_fn`` (static).
    """

    oracle: EscapeOracle
    x: Float[Array, "n d"]
    y: Array
    delta: Float[Array, " width"]
    pin_tol: Float[Array, ""]
    esc_tol: Float[Array, ""]
    loss_fn: Callable[..., Array] = eqx.field(static=True)

    def with_delta(self, delta) -> "Pinning":
        """The same pinning for a network with conserved values ``delta`` (the escape oracle
        depends on the data only, so one pinning serves every initialization of a sweep)."""
        return eqx.tree_at(lambda p: p.delta, self, delta)

    def escape(self, W, b, V):
        """Per neuron: ``(min_r phi(r), argmin ray, scale sum_i |g_i| |z_i|)`` at these weights."""
        pre = self.x @ W.T + (0.0 if b is None else b)
        pred = jax.nn.relu(pre) @ V.T
        dpred = jax.grad(self.loss_fn)(pred, self.y)
        g = dpred.reshape(pred.shape) @ V  # (n, width)
        phi = self.oracle.phi(g)
        i = jnp.argmin(phi, axis=0)
        scale = jnp.abs(g).T @ self.oracle.z_norm
        return jnp.min(phi, axis=0), self.oracle.rays[i], scale

    def apply(self, params, allow_unpin: bool = True):
        """``(params', pinned_now, unpinned_now)``: pin (and unpin) neurons as described above.

        The escape check runs only when some neuron is a candidate (:func:`cond_any`: also
        under ``vmap``, where it runs only for the members that have one)."""
        return cond_any(
            jnp.any(self._candidates(params)[0]), lambda pin, p: pin._act(p, allow_unpin), _unchanged, self, params
        )

    def _candidates(self, params):
        w_sq = jnp.sum(params.W**2, axis=1) + (0.0 if params.b is None else params.b**2)
        neg = self.delta < 0
        target = jnp.sqrt(jnp.where(neg, -self.delta, 1.0))
        return neg & (w_sq <= (self.pin_tol * target) ** 2), w_sq, target

    def _act(self, params, allow_unpin):
        # Leaves params bitwise unchanged where no neuron is a candidate (cond_any's contract).
        W, b, V = params.W, params.b, params.V
        cand, w_sq, target = self._candidates(params)
        Wc = jnp.where(cand[:, None], 0.0, W)
        bc = None if b is None else jnp.where(cand, 0.0, b)
        v_norm = jnp.linalg.norm(V, axis=0)
        Vc = jnp.where(cand[None, :], V * (target / jnp.where(v_norm > 0, v_norm, 1.0))[None, :], V)
        min_phi, ray, scale = self.escape(Wc, bc, Vc)
        escape = min_phi < -self.esc_tol * scale
        was_pinned = cand & (w_sq == 0)
        pin = cand & ~escape
        unpin = was_pinned & escape & allow_unpin
        seed = 0.5 * self.pin_tol * target
        d_in = W.shape[1]
        Wn = jnp.where(pin[:, None], 0.0, W)
        Wn = jnp.where(unpin[:, None], seed[:, None] * ray[:, :d_in], Wn)
        bn = None
        if b is not None:
            bn = jnp.where(pin, 0.0, jnp.where(unpin, seed * ray[:, d_in], b))
        v_target = jnp.where(unpin, jnp.sqrt(seed**2 + target**2), target)
        Vn = jnp.where((pin | unpin)[None, :], V * (v_target / jnp.where(v_norm > 0, v_norm, 1.0))[None, :], V)
        new = eqx.tree_at(lambda p: (p.W, p.b, p.V), params, (Wn, bn, Vn), is_leaf=lambda v: v is None)
        return new, pin & (w_sq > 0), unpin


def _unchanged(pinning, params):
    falses = jnp.zeros(pinning.delta.shape, bool)
    return params, falses, falses


def make_pinning(model, data, loss_fn, rtol, atol, pin_tol=None, esc_tol=None) -> Pinning:
    """:class:`Pinning` for ``model`` (a :class:`ShallowReLU`) on ``data``'s training set.

    ``pin_tol`` defaults to ``sqrt(max(rtol, atol))``, ``esc_tol`` to ``max(rtol, atol)``.
    Raises ``ValueError`` for other models or when the exact check is too large.
    """
    if not getattr(model, "kink_handling", False):
        raise ValueError(f"kinks='pin' supports ShallowReLU models only, got {type(model).__name__}.")

    dtype = jnp.result_type(float)
    tol = max(float(rtol), float(atol))
    pin_tol = math.sqrt(tol) if pin_tol is None else float(pin_tol)
    esc_tol = tol if esc_tol is None else float(esc_tol)
    return Pinning(
        oracle=escape_oracle(_inputs(model, data.x_train)),
        x=data.x_train,
        y=data.y_train,
        delta=conserved(model),
        pin_tol=jnp.asarray(pin_tol, dtype),
        esc_tol=jnp.asarray(esc_tol, dtype),
        loss_fn=loss_fn,
    )


class PinnedSolver(ForwardingSolver):
    """Wraps a solver: after every step, apply :meth:`Pinning.apply` to ``y1``.

    The solver state is ``(inner state, (pins, unpins, first pin time))``; Diffrax keeps it
    only on accepted steps, so the counters count accepted pin/unpin events.
    """

    solver: diffrax.AbstractSolver
    pinning: Pinning
    static: object = eqx.field(static=True)

    def init(self, terms, t0, t1, y0, args):
        dtype = jnp.result_type(t0)
        counters = (jnp.array(0, jnp.int32), jnp.array(0, jnp.int32), jnp.array(jnp.inf, dtype))
        return self.solver.init(terms, t0, t1, y0, args), counters

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner_state, (pins, unpins, first_pin) = solver_state
        y1, y_error, dense_info, inner_state, result = self.solver.step(terms, t0, t1, y0, args, inner_state, made_jump)
        y1, pinned_now, unpinned_now = self.pinning.apply(y1)
        changed = jnp.any(pinned_now) | jnp.any(unpinned_now)
        if isinstance(inner_state, tuple) and len(inner_state) == 2:  # first-same-as-last: refresh
            inner_state = (inner_state[0] | changed, inner_state[1])
        pins = pins + jnp.sum(pinned_now, dtype=jnp.int32)
        unpins = unpins + jnp.sum(unpinned_now, dtype=jnp.int32)
        first_pin = jnp.where(jnp.any(pinned_now) & ~jnp.isfinite(first_pin), t1, first_pin)
        return y1, y_error, dense_info, (inner_state, (pins, unpins, first_pin)), result


def pin_stats(solver_state, final_params, delta) -> dict:
    """``pins``, ``unpins``, ``first_pin_time`` from a final :class:`PinnedSolver` state and
    ``pinned`` (neurons with ``delta < 0`` and ``w = 0`` at the end) from the final params."""
    _, (pins, unpins, first_pin) = solver_state
    w_sq = jnp.sum(final_params.W**2, axis=-1)
    if final_params.b is not None:
        w_sq = w_sq + final_params.b**2
    return dict(
        pins=pins, unpins=unpins, first_pin_time=first_pin, pinned=jnp.sum((delta < 0) & (w_sq == 0), dtype=jnp.int32)
    )
