"""Symmetries and function equivalence of shallow ReLU nets (docs/theory.md §1, §3).

Rescaling a neuron ``(w_k, b_k, v_k) -> (a w_k, a b_k, v_k / a)``, ``a > 0``, and permuting
neurons leave ``f(x) = V relu(W x + b)`` unchanged; so do orientation flips with a
compensating linear term (``v relu(-z) = v relu(z) - v z``) and splitting a neuron into
several on the same hyperplane. :func:`canonical_form` removes all of these: two shallow
nets compute the same function iff their canonical forms agree (:func:`equivalent`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..invariants import conserved, rescale
from ..nets.base import require_relu_net
from ..nets.shallow import ShallowReLU, require_shallow

__all__ = [
    "rescale",
    "permute",
    "CanonicalForm",
    "canonical_form",
    "equivalent",
    "reachable",
    "recovered",
    "data_resolution",
    "teacher_geometry",
]

TOL = 1e-8
"""Default tolerance of :func:`canonical_form` and :func:`equivalent` (absolute, on unit
hyperplane normals and on coefficients)."""


def permute(model, perm):
    """Reorder hidden neurons: neuron ``i`` of the result is neuron ``perm[i]`` of ``model``.

    For a :class:`ShallowReLU` ``perm`` is one permutation of ``range(width)``; for an
    :class:`MLP` a sequence with one permutation per hidden layer. The function is unchanged.
    """
    return require_relu_net(model).permute_units(perm)


class CanonicalForm(NamedTuple):
    """``f(x) = sum_j coefficients[j] relu(hyperplanes[j] . [x, 1]) + affine @ [x, 1]``.

    - ``hyperplanes`` (m, d+1): unit normals ``(w, b)``, first non-zero entry of ``w``
      positive, pairwise distinct, sorted lexicographically (``b = 0`` without bias).
    - ``coefficients`` (m, e): non-zero.
    - ``affine`` (e, d+1): the linear part and (last column) the constant.
    """

    hyperplanes: np.ndarray
    coefficients: np.ndarray
    affine: np.ndarray

    def __call__(self, x):
        """Evaluate on inputs ``x`` of shape ``(..., d)``; returns ``(..., e)``."""
        x = np.asarray(x, dtype=float)
        xt = np.concatenate([x, np.ones(x.shape[:-1] + (1,))], axis=-1)
        return np.maximum(xt @ self.hyperplanes.T, 0.0) @ self.coefficients + xt @ self.affine.T

    @property
    def n_neurons(self) -> int:
        return len(self.hyperplanes)


def _shallow_arrays(model):
    require_shallow(model, "a canonical form")
    W = np.asarray(model.W, dtype=float)
    if W.ndim != 2:
        raise ValueError("canonical_form takes one network, not a batch (vmap-ed leading axes).")
    b = np.zeros(len(W)) if model.b is None else np.asarray(model.b, dtype=float)
    return np.concatenate([W, b[:, None]], axis=1), np.asarray(model.V, dtype=float).T


def canonical_form(model: ShallowReLU, tol: float = TOL) -> CanonicalForm:
    """The canonical minimal form of a shallow net (docs/theory.md §3), biases and any ``e``.

    Steps, per neuron ``k`` with ``z_k = (w_k, b_k)`` and output ``v_k``:
    drop it if ``||v_k|| ||z_k|| <= tol``; if ``||w_k|| <= tol`` it is the constant
    ``v_k relu(b_k)``, added to the affine part; otherwise ``h = z_k/||z_k||``,
    ``c = ||z_k|| v_k``, and if the first entry of ``w`` with ``|.| > tol`` is negative,
    ``c relu(h.x) = c relu(-h.x) + c (h.x)`` flips ``h`` and adds ``c h^T`` to the affine part.
    Neurons whose oriented ``h`` agree within ``tol`` merge (coefficients add); merged
    coefficients with ``||c|| <= tol`` are dropped; the rest are sorted by ``h``.
    """
    Z, V = _shallow_arrays(model)
    d1, e = Z.shape[1], V.shape[1]
    affine = np.zeros((e, d1))
    planes, coeffs = [], []
    for z, v in zip(Z, V, strict=True):
        scale = np.linalg.norm(z)
        if np.linalg.norm(v) * scale <= tol:
            continue
        if np.linalg.norm(z[:-1]) <= tol:
            affine[:, -1] += v * max(z[-1], 0.0)
            continue
        h, c = z / scale, v * scale
        big = np.flatnonzero(np.abs(h[:-1]) > tol)  # orient by the first clearly non-zero entry of w
        lead = h[big[0]] if len(big) else h[np.argmax(np.abs(h[:-1]))]
        if lead < 0:
            affine += np.outer(c, h)
            h = -h
        for j, p in enumerate(planes):
            if np.max(np.abs(p - h)) <= tol:
                coeffs[j] = coeffs[j] + c
                break
        else:
            planes.append(h)
            coeffs.append(c)
    keep = [j for j, c in enumerate(coeffs) if np.linalg.norm(c) > tol]
    H = np.array([planes[j] for j in keep]).reshape(-1, d1)
    C = np.array([coeffs[j] for j in keep]).reshape(-1, e)
    decimals = int(np.clip(-np.floor(np.log10(tol)), 0, 15)) if tol > 0 else 15
    order = np.lexsort(np.round(H, decimals).T[::-1])  # lexicographic, first column first
    return CanonicalForm(H[order], C[order], affine)


def _match(a: CanonicalForm, b: CanonicalForm, tol: float) -> bool:
    if a.hyperplanes.shape != b.hyperplanes.shape or a.coefficients.shape != b.coefficients.shape:
        return False
    if a.affine.shape != b.affine.shape or np.max(np.abs(a.affine - b.affine), initial=0.0) > tol:
        return False
    unused = list(range(len(b.hyperplanes)))
    for h, c in zip(a.hyperplanes, a.coefficients, strict=True):
        for i in unused:
            if np.max(np.abs(b.hyperplanes[i] - h)) <= tol and np.max(np.abs(b.coefficients[i] - c)) <= tol:
                unused.remove(i)
                break
        else:
            return False
    return True


def equivalent(model_a: ShallowReLU, model_b: ShallowReLU, tol: float = TOL) -> bool:
    """Whether two shallow nets compute the same function: their canonical forms have the
    same hyperplanes, coefficients and affine part within ``tol`` (absolute). Sizes of the
    hidden layers may differ; input and output sizes must match."""
    if (model_a.in_size, model_a.out_size) != (model_b.in_size, model_b.out_size):
        return False
    return _match(canonical_form(model_a, tol), canonical_form(model_b, tol), tol)


def data_resolution(x) -> float:
    r"""The angular resolution of 2-d inputs ``x`` (shape ``(n, 2)``): the largest gap, in
    radians, between consecutive directions ``atan2(x_2, x_1) mod pi`` (on the half circle,
    wrapping around). A kink line ``{x: w.x = 0}`` of a net without biases can turn anywhere
    inside such a gap without changing any prediction on ``x``, so canonical forms that agree
    within this tolerance (unit normals ``h``, whose distance is about the angle) cannot be
    told apart by the data."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ValueError(f"data_resolution needs 2-d inputs of shape (n, 2) with n >= 1, got shape {x.shape}.")
    angles = np.sort(np.mod(np.arctan2(x[:, 1], x[:, 0]), np.pi))
    return float(np.diff(np.concatenate([angles, [angles[0] + np.pi]])).max())


def teacher_geometry(teacher: ShallowReLU) -> dict:
    r"""What decides how hard a teacher ``sum_j a_j relu(u_j . x)`` (``e = 1``, no biases) is to
    learn and to recognize: ``a_plus``/``a_minus``, its convex and concave kinks (``a_j > 0``,
    ``a_j < 0``; the counts :func:`reachable` compares with the student's pathological neurons);
    ``min_strength = min_j |a_j| ||u_j||``, the size of its weakest kink (the jump of the
    gradient across it); ``min_angle``, the smallest angle in degrees between two kink lines
    ``{x: u_j . x = 0}`` (modulo 180; 180 for one neuron). A kink of strength near 0 is nearly
    absent from the data, two kinks a few degrees apart are hard to tell apart from a finite
    sample: :func:`recovered` and :func:`reachable` then judge a teacher the data barely show."""
    U, a = np.asarray(teacher.W, dtype=float), np.asarray(teacher.V[0], dtype=float)
    norms = np.linalg.norm(U, axis=1)
    N = U / np.maximum(norms, np.finfo(float).tiny)[:, None]
    cos = np.clip(np.abs(N @ N.T), 0.0, 1.0)[~np.eye(len(a), dtype=bool)]
    return dict(
        a_plus=int(np.sum(a > 0)),
        a_minus=int(np.sum(a < 0)),
        min_strength=float(np.min(np.abs(a) * norms)),
        min_angle=float(np.degrees(np.arccos(np.max(cos)))) if cos.size else 180.0,
    )


def recovered(student: ShallowReLU, teacher: ShallowReLU, tol: float | str = 1e-3, x=None) -> bool:
    """Did a trained ``student`` reach the ``teacher``'s function up to symmetry?

    Canonical forms agree within ``tol`` after dropping near-zero neurons (those with
    ``||v_k|| ||(w_k, b_k)|| <= tol``, e.g. pathological neurons switched off by the flow).
    The default ``tol`` suits a flow run to a small loss; :func:`equivalent` is the exact test.
    ``tol="data"`` with the training inputs ``x`` (shape ``(n, 2)``) judges at the data's
    resolution, :func:`data_resolution`: what the data cannot tell apart counts as equal.
    """
    if isinstance(tol, str):
        if tol != "data" or x is None:
            raise ValueError(f"tol must be a positive number, or 'data' with the inputs x; got {tol!r}.")
        tol = data_resolution(x)
    return equivalent(student, teacher, tol)


def reachable(teacher: ShallowReLU, student: ShallowReLU, *, tol: float = 1e-10) -> bool:
    """Whether the student's component of ``Q(delta)`` holds a representative of the
    teacher's function (docs/theory.md §1, ours; ``e = 1``, ``d > 1``, no biases).

    The teacher ``sum_j a_j relu(u_j . x)`` has pairwise non-parallel ``u_j`` (neurons with
    ``a_j = 0`` or ``u_j = 0`` are ignored). Each convex kink (``a_j > 0``) needs its own
    student neuron with ``v > 0`` on that hyperplane, each concave one a neuron with
    ``v < 0``. Pathological student neurons (``delta_k < -tol``) keep the sign of ``v_k``
    (``P`` with ``v > 0``, ``M`` with ``v < 0``); the ``F`` others can take either sign, and
    any neuron can be switched off. So the answer is
    ``max(0, a_+ - P) + max(0, a_- - M) <= F``.
    """
    for name, m in (("teacher", teacher), ("student", student)):
        if require_shallow(m, "reachable").out_size != 1 or m.in_size < 2 or m.bias:
            raise ValueError(
                f"reachable needs {name} to be a ShallowReLU with out_size 1, in_size >= 2 and no bias "
                "(docs/theory.md §1)."
            )
    if teacher.in_size != student.in_size:
        raise ValueError("teacher and student must have the same in_size.")
    U, a = np.asarray(teacher.W, dtype=float), np.asarray(teacher.V[0], dtype=float)
    live = (np.abs(a) > tol) & (np.linalg.norm(U, axis=1) > tol)
    U, a = U[live], a[live]
    N = U / np.linalg.norm(U, axis=1, keepdims=True)
    cos = np.abs(N @ N.T) - np.eye(len(N))
    if np.any(cos > 1 - 1e-12):
        raise ValueError("reachable needs a teacher with pairwise non-parallel incoming weights u_j.")
    delta = np.asarray(conserved(student), dtype=float)
    v = np.asarray(student.V[0], dtype=float)
    path = delta < -tol
    P, M = int(np.sum(path & (v > 0))), int(np.sum(path & (v < 0)))
    F = len(delta) - int(np.sum(path))
    a_pos, a_neg = int(np.sum(a > 0)), int(np.sum(a < 0))
    return max(0, a_pos - P) + max(0, a_neg - M) <= F
