"""Where a flow ends: Newton polish to a critical point, the Hessian spectrum, a classification.

:func:`classify_endpoint` takes a network ``theta`` and a scalar objective ``L`` (any
``objective(model, args)``, e.g. :func:`data_objective` for a data set or a Gaussian
population) and

1. **polishes** ``theta`` to a critical point with Newton's method on ``grad L = 0``
   (``optimistix.Newton``; the linear solves use an SVD pseudo-inverse because the
   Hessian is singular along the rescaling symmetries, so each step is the minimum-norm
   Newton step and the iteration converges quadratically to the set of critical points);
   a failed polish (non-finite, no decrease of ``||grad L||``, or a move longer than
   ``max_move``) falls back to the unpolished point;
2. computes the full Hessian ``jax.hessian`` on the flattened parameters and its
   eigenvalues (``jnp.linalg.eigh``);
3. classifies: ``global_min`` (``L - min_loss <= loss_tol``), ``not_critical``
   (``||grad L|| > crit_tol``), ``saddle`` (an eigenvalue below ``-tol_eig``, or a descent
   direction out of a collapsed neuron), else ``local_min`` (a spurious one: second-order
   necessary conditions hold, higher-order degeneracy is not examined).

**Flat directions.** At a smooth critical point every live hidden unit gives a Hessian
null direction, its rescaling tangent ``(w_k, -v_k)``; so ``n_zero >= n_units`` (live
units). *Duplicated units* give more: when live units ``k in G`` have the same incoming
direction, ``w_k = s_k omega`` with ``s_k > 0``, the network is
``(sum_{k in G} s_k v_k) relu(omega.x) + ...``, so moving output mass between them
(``v_k -> v_k + t_k / s_k`` with ``sum_k t_k = 0``) leaves the function, hence ``L``,
unchanged to all orders: ``|G| - 1`` more exact null directions beyond the ``|G|``
rescalings. ``n_duplicate = sum_G (|G| - 1)`` counts them (units whose unit incoming vectors
agree to ``dup_tol``), and at a minimum whose only degeneracies are these symmetries
``n_zero = n_units + n_duplicate``. At a *global* minimum the direction perturbations
within a group (``sum_k v_k s_k delta omega_k = 0``) are flat too (zero residual kills the
second-order term), giving ``(|G| - 1) d`` beyond the rescalings instead; ``n_zero`` is
measured, not forced (the theory page, docs/theory.md, end points). A
:class:`gflow.FixedOutputReLU` (output weights fixed) has no rescaling symmetry: there the
rule reads ``n_zero = n_duplicate`` (moving ``s_k`` between copies, ``sum_k v_k s_k`` fixed).

**Collapsed neurons** (a :class:`gflow.ShallowReLU` unit whose incoming weights are
``<= collapse_tol`` relative to the largest unit): there ``L`` is not differentiable (it is
1-homogeneous in ``w_k``), so the unit is snapped to ``w_k = 0`` (and ``b_k = 0``) and
frozen with its ``v_k``; polish and Hessian act on the other parameters (the sub-network).
The one-sided slopes ``lim_{eps -> 0+} (L(w_k = eps omega) - L) / eps`` over ``n_escape``
random unit directions ``omega`` (and the coordinate directions) are reported as
``escape_min``; a negative one is a descent direction: the point is a saddle. Sampled
directions can miss a narrow descent cone: ``escape_min >= 0`` is evidence, not proof.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optimistix as optx
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray, PyTree, Scalar

from ._jit import jit
from .conservation import conservation_of
from .invariants import conserved, rescale
from .losses import get_loss
from .nets import FixedOutputReLU, ShallowReLU

__all__ = ["Endpoint", "classify_endpoint", "data_objective", "KINDS"]

KINDS = ("global_min", "local_min", "saddle", "not_critical")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """The result of :func:`classify_endpoint`.

    **Fields:**
    - ``model``: the polished network (the input network, collapsed units snapped to 0, if
      the polish was skipped or failed).
    - ``loss``, ``grad_norm`` (Euclidean norm of ``grad L`` on the free parameters).
    - ``eigenvalues``: the Hessian's eigenvalues on the free parameters, ascending.
    - ``hess_min``: the smallest eigenvalue; ``tol_eig``: the threshold used for zero.
    - ``n_negative``: eigenvalues ``< -tol_eig``; ``n_zero``: ``|lambda| <= tol_eig``.
    - ``n_units``: live hidden units (each gives one flat direction), ``n_duplicate``: live
      units whose incoming direction repeats another's (each gives one more, module
      docstring), ``n_collapsed``:
      collapsed units (``ShallowReLU`` and ``FixedOutputReLU`` only), ``escape_min``: the smallest one-sided slope
      out of a collapsed unit (``nan`` when none is collapsed).
    - ``critical``: ``grad_norm <= crit_tol``; ``kind``: one of :data:`KINDS`.
    - ``polished``: whether the Newton point was accepted; ``newton_steps``; ``moved``:
      ``||theta_polished - theta_start||``.
    """

    model: Any
    loss: float
    grad_norm: float
    eigenvalues: np.ndarray
    hess_min: float
    tol_eig: float
    n_negative: int
    n_zero: int
    n_units: int
    n_duplicate: int
    n_collapsed: int
    escape_min: float
    critical: bool
    kind: str
    polished: bool
    newton_steps: int
    moved: float

    def columns(self) -> dict:
        """Plain-Python values for a sweep row (everything but the model and the spectrum)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del out["model"], out["eigenvalues"]
        return out


_OBJECTIVES: dict = {}


def data_objective(loss: str | Callable = "mse") -> Callable[[Any, Any], Scalar]:
    """The objective ``(model, data) -> L`` of a data object, for :func:`classify_endpoint`.

    ``data.loss(model, loss_fn)``: the full-batch loss of a :class:`gflow.Dataset`, the
    closed-form expectation of a :class:`gflow.GaussianPopulation`. One function per loss, so
    repeated calls reuse compiled code.
    """
    loss_fn = get_loss(loss)
    if loss_fn not in _OBJECTIVES:

        def objective(model, data):
            return data.loss(model, loss_fn)

        _OBJECTIVES[loss_fn] = objective
    return _OBJECTIVES[loss_fn]


# --- the objective on the free coordinates z: theta = theta0 with theta0[free] = z ------------


def _restricted(objective, args, model, free):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    theta0, unravel = ravel_pytree(params)

    def f(z):
        return objective(eqx.combine(unravel(theta0.at[free].set(z)), static), args)

    return f, theta0


@jit
def _value_grad(objective, args, model, free):
    f, theta0 = _restricted(objective, args, model, free)
    return jax.value_and_grad(f)(theta0[free])


@jit
def _hessian(objective, args, model, free):
    f, theta0 = _restricted(objective, args, model, free)
    return jax.hessian(f)(theta0[free])


@jit
def _newton(objective, args, model, free, gauge, rtol, atol, rcond, max_steps):
    """Newton on ``F(z) = grad f(z) + Q Q^T (z - z0)``, ``Q`` an orthonormal basis of the rescaling
    tangents at ``z0``. ``Q^T grad f = 0`` nowhere fails (the conservation identity), so a root of
    ``F`` is a critical point with no net move along the orbits; ``DF = H + Q Q^T`` is regular at
    a critical point whose only degeneracy is the symmetry."""
    f, theta0 = _restricted(objective, args, model, free)
    z0 = theta0[free]

    def F(z, _):
        return jax.grad(f)(z) + gauge @ (gauge.T @ (z - z0))

    solver = optx.Newton(rtol=rtol, atol=atol, linear_solver=lx.SVD(rcond=rcond))
    sol = optx.root_find(F, solver, z0, max_steps=max_steps, throw=False)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    _, unravel = ravel_pytree(params)
    return eqx.combine(unravel(theta0.at[free].set(sol.value)), static), sol.stats["num_steps"]


def _gauge(model, free):
    """Orthonormal basis (columns) of the rescaling tangents ``d/d alpha rescale(model, alpha)`` at
    ``alpha = 1``, restricted to the free coordinates (units with zero tangent drop out); none for
    a network without rescaling symmetry (no conserved quantities, e.g. FixedOutputReLU)."""
    if not conservation_of(model).available:
        return jnp.zeros((free.size, 0), _dtype(model))
    T = np.asarray(_tangents(model))[np.asarray(free)]
    U, sv, _ = np.linalg.svd(T, full_matrices=False)
    keep = sv > 1e-8 * max(sv.max(initial=0.0), 1e-300)
    return jnp.asarray(U[:, keep])


@jit
def _tangents(model):
    n = conserved(model).shape[-1]

    def flat(alphas):
        return ravel_pytree(eqx.filter(rescale(model, alphas), eqx.is_inexact_array))[0]

    return jax.jacfwd(flat)(jnp.ones(n, _dtype(model)))


def _dtype(model):
    return jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))[0].dtype


@jit
def _escape_slopes(objective, args, model, k, directions, eps):
    """Richardson one-sided slopes ``(4 L(eps w) - L(2 eps w) - 3 L(0)) / (2 eps)`` of unit ``k``."""

    def at(scale, omega):
        W = model.W.at[k].set(scale * omega[: model.in_size])
        if model.b is None:
            return objective(eqx.tree_at(lambda m: m.W, model, W), args)
        b = model.b.at[k].set(scale * omega[-1])
        return objective(eqx.tree_at(lambda m: (m.W, m.b), model, (W, b)), args)

    l0 = at(0.0, directions[0])
    l1 = jax.vmap(lambda o: at(eps, o))(directions)
    l2 = jax.vmap(lambda o: at(2 * eps, o))(directions)
    return (4 * l1 - l2 - 3 * l0) / (2 * eps)


# --- collapsed units (ShallowReLU) ---------------------------------------------------------


_SHALLOW = (ShallowReLU, FixedOutputReLU)


def _outgoing_norms(model) -> np.ndarray:
    if isinstance(model, FixedOutputReLU):
        return np.abs(np.asarray(model.v))
    return np.linalg.norm(np.asarray(model.V), axis=0)


def _incoming(model: ShallowReLU | FixedOutputReLU):
    w = model.W if model.b is None else jnp.concatenate([model.W, model.b[:, None]], axis=1)
    return w


def _collapse(model, collapse_tol):
    """Snap the collapsed units of a ShallowReLU to w_k = 0; their indices (none for other nets)."""
    # collapsed-unit detection reads W and V of one hidden layer
    if not isinstance(model, _SHALLOW):
        return model, np.zeros(0, int)
    w_in = np.linalg.norm(np.asarray(_incoming(model)), axis=1)
    size = np.sqrt(w_in**2 + _outgoing_norms(model) ** 2)
    collapsed = np.flatnonzero(w_in <= collapse_tol * max(1.0, float(size.max())))
    if collapsed.size:
        W = model.W.at[collapsed].set(0.0)
        if model.b is None:
            model = eqx.tree_at(lambda m: m.W, model, W)
        else:
            model = eqx.tree_at(lambda m: (m.W, m.b), model, (W, model.b.at[collapsed].set(0.0)))
    return model, collapsed


def _duplicates(model, collapsed, dup_tol: float) -> int:
    """``sum_G (|G| - 1)`` over groups ``G`` of live units of a ShallowReLU with the same incoming
    direction: unit vectors ``w_k / ||w_k||`` within ``dup_tol`` (Euclidean) of a group's first."""
    if not isinstance(model, _SHALLOW):
        return 0
    w = np.asarray(_incoming(model), float)
    live = np.setdiff1d(np.arange(w.shape[0]), collapsed)
    units = w[live] / np.linalg.norm(w[live], axis=1, keepdims=True)
    heads: list[np.ndarray] = []
    for u in units:
        if not any(np.linalg.norm(u - h) <= dup_tol for h in heads):
            heads.append(u)
    return int(len(units) - len(heads))


def _free_indices(model, collapsed):
    """Flat indices of the parameters not frozen (all but the collapsed units' w_k, b_k, v_k)."""
    params, _ = eqx.partition(model, eqx.is_inexact_array)
    mask = jax.tree_util.tree_map(lambda x: np.ones(x.shape, bool), params)
    if collapsed.size:  # numpy leaves: set in place
        mask.W[collapsed] = False
        if isinstance(model, ShallowReLU):
            mask.V[:, collapsed] = False
        if mask.b is not None:
            mask.b[collapsed] = False
    flat = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(mask)])
    return jnp.asarray(np.flatnonzero(flat))


def _escape_directions(model, n, key):
    dim = model.in_size + (model.b is not None)
    eye = np.eye(dim)
    rand = np.array(jr.normal(key, (n, dim)))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    return jnp.asarray(np.concatenate([eye, -eye, rand]), model.W.dtype)


def classify_endpoint(
    model: ShallowReLU,
    objective: Callable[[Any, Any], Scalar],
    args: PyTree = None,
    *,
    min_loss: float = 0.0,
    loss_tol: float = 1e-10,
    crit_tol: float = 1e-8,
    zero_tol: float = 1e-7,
    polish: bool = True,
    newton_tol: float = 1e-13,
    newton_steps: int = 50,
    rcond: float = 1e-10,
    max_move: float = 0.1,
    collapse_tol: float = 1e-6,
    dup_tol: float = 1e-6,
    n_escape: int = 256,
    key: PRNGKeyArray | None = None,
) -> Endpoint:
    """Polish ``model`` to a critical point of ``L = objective(model, args)`` and classify it.

    See the module docstring for the method. Tolerances:

    **Arguments:**
    - ``objective``: ``(model, args) -> scalar`` (the Optimistix convention); a fixed
      function (module level, or :func:`data_objective`) compiles once for many calls.
    - ``min_loss``, ``loss_tol``: the point is a ``global_min`` when
      ``L - min_loss <= loss_tol`` (``min_loss`` is the known global minimum value: 0 for
      a realizable teacher, ``noise^2 e / 2`` for a noisy population). The default ``1e-10``
      sits far above the rounding of ``L`` near 0 (``~1e-16`` times its O(1) terms).
    - ``crit_tol``: ``critical`` iff ``||grad L||_2 <= crit_tol`` (Newton reaches
      ``1e-13`` or below on the population losses; an unpolished flow end sits at its
      ``gtol``).
    - ``zero_tol``: an eigenvalue is zero when ``|lambda| <= tol_eig = zero_tol max(1,
      max|lambda|) + 10 ||grad L||`` (along a symmetry orbit ``t^T H t = -grad L . c`` with
      ``c`` the orbit's curvature, so away from a critical point the flat directions carry
      eigenvalues of order ``||grad L||``).
    - ``polish``: run Newton (``newton_tol``: its ``rtol = atol``; ``newton_steps``: at
      most this many steps; ``rcond``: singular values below ``rcond * max`` are treated
      as zero in the pseudo-inverse; ``max_move``: reject a polished point farther than
      ``max_move * max(1, ||theta||)`` from the start).
    - ``collapse_tol``, ``n_escape``, ``key``: collapsed-unit handling (module docstring).
    - ``dup_tol``: two live units are duplicates when their unit incoming vectors are within
      ``dup_tol`` (``n_duplicate``, module docstring).

    **Returns:** an :class:`Endpoint`.
    """
    key = jr.PRNGKey(0) if key is None else key
    model, collapsed = _collapse(model, collapse_tol)
    free = _free_indices(model, collapsed)
    loss0, g0 = _value_grad(objective, args, model, free)
    gnorm0 = float(jnp.linalg.norm(g0))

    polished, steps, moved = False, 0, 0.0
    if polish and free.size:
        gauge = _gauge(model, free)
        cand, steps = _newton(objective, args, model, free, gauge, newton_tol, newton_tol, rcond, int(newton_steps))
        loss1, g1 = _value_grad(objective, args, cand, free)
        gnorm1 = float(jnp.linalg.norm(g1))
        theta0 = ravel_pytree(eqx.filter(model, eqx.is_inexact_array))[0]
        theta1 = ravel_pytree(eqx.filter(cand, eqx.is_inexact_array))[0]
        moved = float(jnp.linalg.norm(theta1 - theta0))
        ok = np.isfinite(gnorm1) and np.isfinite(float(loss1)) and gnorm1 <= max(gnorm0, newton_tol)
        ok = ok and moved <= max_move * max(1.0, float(jnp.linalg.norm(theta0)))
        if ok:
            model, loss0, gnorm0, polished = cand, loss1, gnorm1, True
        else:
            moved = 0.0
        steps = int(steps)

    loss, gnorm = float(loss0), gnorm0
    if free.size:
        eig = np.asarray(jnp.linalg.eigh(_hessian(objective, args, model, free))[0])
    else:
        eig = np.zeros(0)
    scale = max(1.0, float(np.abs(eig).max())) if eig.size else 1.0
    tol_eig = zero_tol * scale + 10 * gnorm
    n_negative = int(np.sum(eig < -tol_eig))
    n_zero = int(np.sum(np.abs(eig) <= tol_eig))

    escape_min = float("nan")
    if collapsed.size:
        dirs = _escape_directions(model, n_escape, key)
        eps = 1e-6 * max(1.0, float(jnp.max(jnp.abs(model.W))))
        slopes = [_escape_slopes(objective, args, model, int(k), dirs, eps) for k in collapsed]
        escape_min = float(jnp.min(jnp.stack(slopes)))

    if isinstance(model, FixedOutputReLU):
        n_units = model.width - int(collapsed.size)
    else:
        n_units = int(np.asarray(conserved(model)).shape[-1]) - int(collapsed.size)
    critical = gnorm <= crit_tol
    if loss - min_loss <= loss_tol:
        kind = "global_min"
    elif not critical:
        kind = "not_critical"
    elif n_negative > 0 or escape_min < -max(crit_tol, 1e-6 * abs(loss)):
        kind = "saddle"
    else:
        kind = "local_min"
    return Endpoint(
        model=model,
        loss=loss,
        grad_norm=gnorm,
        eigenvalues=eig,
        hess_min=float(eig[0]) if eig.size else float("nan"),
        tol_eig=float(tol_eig),
        n_negative=n_negative,
        n_zero=n_zero,
        n_units=n_units,
        n_duplicate=_duplicates(model, collapsed, dup_tol),
        n_collapsed=int(collapsed.size),
        escape_min=escape_min,
        critical=bool(critical),
        kind=kind,
        polished=polished,
        newton_steps=steps,
        moved=moved,
    )
