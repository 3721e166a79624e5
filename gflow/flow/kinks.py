r"""Exact flow through ReLU kinks: collapsed neurons and activation-pattern diagnostics.

**Collapsed neurons.** Take hidden neuron k of a shallow net with incoming weights
``w`` (``b_k`` appended when biases are on, inputs ``z_i = x_i`` or ``(x_i, 1)``) and
outgoing weights ``v``. Let ``g_i = v . dL/df(x_i)`` (the loss's gradient with respect to
the prediction on point i, seen through ``v``). Because relu is positively homogeneous,
conservation (THEORY.md §1) gives ``<w, dL/dw> = <v, dL/dv> = sum_i g_i relu(w . z_i)``,
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

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .wrappers import ForwardingSolver
from ..nets.models import MLP, DAGNet, ShallowReLU

__all__ = [
    "EscapeOracle",
    "escape_oracle",
    "Pinning",
    "make_pinning",
    "PinnedSolver",
    "sliding_field",
    "hidden_preactivations",
    "activation_stats",
    "SLIDING_FLIPS",
]

_MAX_ORACLE_ENTRIES = 4_000_000
SLIDING_FLIPS = 4


class EscapeOracle(eqx.Module):
    """``phi(u) = sum_i g_i relu(u . z_i)`` at the finite set of rays that decides its sign.

    Build with :func:`escape_oracle`. ``rays`` (R, D) are unit vectors; ``phi(g)`` returns
    ``(R, k)`` values for ``g`` of shape ``(n, k)`` (one column per neuron).
    """

    rays: Float[Array, "R D"]
    z_norm: Float[Array, " n"]
    # plane case (m == 2): data sorted by angle, doubled; ray r sums entries [lo_r, hi_r)
    order: Int[Array, " n"] | None
    zs2: Float[Array, "n2 2"] | None
    rays2: Float[Array, "R 2"] | None
    lo: Int[Array, " R"] | None
    hi: Int[Array, " R"] | None
    # general case: relu(rays @ z.T)
    act: Float[Array, "R n"] | None
    kind: str = eqx.field(static=True)

    def phi(self, g: Float[Array, "n k"]) -> Float[Array, "R k"]:
        if self.kind == "plane":
            gz = g[self.order][:, :, None] * self.zs2[:, None, :]  # (n, k, 2)
            gz = jnp.concatenate([gz, gz], axis=0)
            prefix = jnp.concatenate([jnp.zeros_like(gz[:1]), jnp.cumsum(gz, axis=0)], axis=0)
            sums = prefix[self.hi] - prefix[self.lo]  # (R, k, 2)
            return jnp.einsum("rkc,rc->rk", sums, self.rays2)
        if self.kind == "zero":
            return jnp.zeros((1, g.shape[1]), g.dtype)
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
    none = dict(order=None, zs2=None, rays2=None, lo=None, hi=None, act=None)
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
        lo = np.searchsorted(doubled, starts, side="right")
        hi = np.searchsorted(doubled, starts + np.pi, side="left")
        return EscapeOracle(
            rays=jnp.asarray(rays2 @ basis.T, dtype),
            z_norm=z_norm,
            order=jnp.asarray(order),
            zs2=jnp.asarray(zm[order], dtype),
            rays2=jnp.asarray(rays2, dtype),
            lo=jnp.asarray(lo),
            hi=jnp.asarray(hi),
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
    loss_fn: object = eqx.field(static=True)

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


def cond_any(pred, true_fn, false_fn, *operands):
    """``lax.cond(pred, true_fn, false_fn, *operands)`` that stays a branch under ``vmap``.

    ``vmap`` turns a ``lax.cond`` with a batched predicate into a ``select`` that runs both
    branches for every member. Here the batched version runs ``vmap(false_fn)`` for the
    batch and ``vmap(true_fn)`` only for the members whose predicate holds, gathered ``k``
    at a time (``k`` = 1/8 of the batch), so it costs what those members' own conds cost.
    """

    @jax.custom_batching.custom_vmap
    def run(pred, *ops):
        return jax.lax.cond(pred, true_fn, false_fn, *ops)

    @run.def_vmap
    def _rule(axis_size, in_batched, pred, *ops):
        def batch(tree, batched):
            return jax.tree_util.tree_map(
                lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)), tree, batched
            )

        ops = tuple(batch(o, b) for o, b in zip(ops, in_batched[1:]))
        pred = jnp.broadcast_to(pred, (axis_size,))
        k = max(1, axis_size // 8)
        # members whose predicate holds, then padding (axis_size: dropped when scattering)
        which = jnp.nonzero(pred, size=axis_size + k, fill_value=axis_size)[0]

        def group(g, out):
            sel = jax.lax.dynamic_slice(which, (g * k,), (k,))
            sub = jax.tree_util.tree_map(lambda x: x[jnp.minimum(sel, axis_size - 1)], ops)
            res = jax.vmap(true_fn)(*sub)
            return jax.tree_util.tree_map(lambda o, r: o.at[sel].set(r, mode="drop"), out, res)

        n_groups = (jnp.sum(pred) + k - 1) // k
        out = jax.lax.fori_loop(0, n_groups, group, jax.vmap(false_fn)(*ops))
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return run(pred, *operands)


def make_pinning(model, data, loss_fn, rtol, atol, pin_tol=None, esc_tol=None) -> Pinning:
    """:class:`Pinning` for ``model`` (a :class:`ShallowReLU`) on ``data``'s training set.

    ``pin_tol`` defaults to ``sqrt(max(rtol, atol))``, ``esc_tol`` to ``max(rtol, atol)``.
    Raises ``ValueError`` for other models or when the exact check is too large.
    """
    if not isinstance(model, ShallowReLU):
        raise ValueError(f"kinks='pin' supports ShallowReLU models only, got {type(model).__name__}.")
    from ..invariants import conserved

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


# ---------------------------------------------------------------- activation patterns


def hidden_preactivations(model, x: Float[Array, " in"]) -> Float[Array, " hidden"]:
    """All hidden pre-activations of ``model`` at one input (hidden units in ``conserved`` order)."""
    if isinstance(model, ShallowReLU):
        z = model.W @ x
        return z if model.b is None else z + model.b
    if isinstance(model, MLP):
        out, a = [], x
        for W, b in zip(model.weights[:-1], model.biases, strict=True):
            z = W @ a if b is None else W @ a + b
            out.append(z)
            a = jax.nn.relu(z)
        return jnp.concatenate(out)
    if isinstance(model, DAGNet):
        from ..nets.dag import _level_edges

        g = model.graph
        n_act = 1 + g.n_in + g.n_hidden
        a = jnp.zeros(n_act, model.weights.dtype).at[0].set(1.0).at[1 : 1 + g.n_in].set(x)
        pre = jnp.zeros(n_act, model.weights.dtype)
        for level, (nodes, eids, src, dst) in zip(g.levels, _level_edges(g), strict=True):
            if level[0] >= n_act:  # the output level
                break
            M = jnp.zeros((n_act, len(nodes)), model.weights.dtype).at[src, dst].add(model.weights[eids])
            z = a @ M
            pre = pre.at[np.asarray(nodes)].set(z)
            a = a.at[np.asarray(nodes)].set(jax.nn.relu(z))
        return pre[1 + g.n_in :]
    raise ValueError(f"model must be a ShallowReLU, MLP or DAGNet, got {type(model).__name__}.")


def activation_stats(models, x: Float[Array, "n d"]) -> dict:
    """Activation-pattern diagnostics over saved models (leading time axis).

    - ``pattern_changes``: number of (saved interval, hidden unit, data point) with a change
      of ``1[pre-activation > 0]`` between consecutive saved times.
    - ``max_flips``: the largest number of pattern changes of one (unit, point) pair.
    - ``sliding``: ``max_flips >= SLIDING_FLIPS`` -- a pre-activation that goes back and forth
      across its kink is held near zero: a sliding mode, or a solver chattering on a kink.
    """
    pattern = lambda m: jax.vmap(lambda xi: hidden_preactivations(m, xi) > 0)(x)
    first = jax.tree_util.tree_map(lambda a: a[0], models)
    rest = jax.tree_util.tree_map(lambda a: a[1:], models)

    def body(carry, m):
        prev, flips = carry
        cur = pattern(m)
        return (cur, flips + (cur != prev).astype(jnp.int32)), None

    p0 = pattern(first)
    (_, flips), _ = jax.lax.scan(body, (p0, jnp.zeros(p0.shape, jnp.int32)), rest)
    max_flips = jnp.max(flips)
    return dict(pattern_changes=jnp.sum(flips), max_flips=max_flips, sliding=max_flips >= SLIDING_FLIPS)


# ---------------------------------------------------------------- sliding modes


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
    ``S``, satisfies the conservation identity, so ``delta_k`` is still conserved. Per
    neuron, the nearest attractive kink (smallest ``|h| / |z_j|``) with
    ``|h| <= slide_tol (atol + rtol ||w_k||) |z_j|`` (the band the solver's accepted states
    reach) slides. Inside the band the field keeps ``h`` fixed, so an explicit
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
        near = jnp.abs(H) <= (slide_tol * (atol + rtol * jnp.sqrt(jnp.sum(Wf**2, axis=1))))[:, None] * z_norm
        g_in = jnp.where(act, G, 0.0)
        a = FW @ z.T + g_in * z_sq  # z_j . F_in (point j inactive)
        attractive = near & (a > 0) & (a < G * z_sq)
        # remove F_in's component along z_j: coef_j = g_in - a / |z_j|^2; several attractive kinks
        # of one neuron within the band (nearly parallel z_j) share the correction equally
        coef = jnp.where(attractive, g_in - a * inv_sq, 0.0)
        count = jnp.maximum(jnp.sum(attractive, axis=1), 1)
        FW = FW + (coef @ z) / count[:, None]
        if b is None:
            return eqx.tree_at(lambda p: (p.W, p.V), params, (FW, FV))
        return eqx.tree_at(lambda p: (p.W, p.b, p.V), params, (FW[:, :-1], FW[:, -1], FV))

    return field
