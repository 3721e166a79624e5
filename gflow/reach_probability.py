"""Probability that a random initialization cannot reach a teacher (the theory page, docs/theory.md).

A teacher ``g(x) = sum_j a_j relu(u_j . x)`` (``e = 1``, ``d >= 2``, no bias, pairwise
non-parallel ``u_j``) has ``a_+`` convex kinks (``a_j > 0``) and ``a_-`` concave ones
(``a_j < 0``). A student of width ``l`` with ``P`` pathological neurons of output sign
``+``, ``M`` of sign ``-`` and ``F`` non-pathological neurons holds a representative of
``g`` in its component of ``Q(delta)`` iff ``max(0, a_+ - P) + max(0, a_- - M) <= F``
(:func:`gflow.reachable`). Under an i.i.d. Gaussian initialization the neurons are
independent and ``(P, M, F)`` is multinomial, so the probability of the complement is a
finite sum: :func:`unreachable_probability`.
"""

from __future__ import annotations

import numpy as np

from ._custom_types import SchemeLike
from .nets.shallow import ShallowReLU
from .topology.shallow import _check_sizes, _variances

__all__ = ["unreachable_probability"]


def _teacher_kinks(teacher: ShallowReLU, tol: float) -> tuple[int, int]:
    """``(a_+, a_-)``: the teacher's numbers of positive and negative output weights, over
    neurons with ``|a_j| > tol`` and ``||u_j|| > tol`` (as :func:`gflow.reachable` counts)."""
    if not isinstance(teacher, ShallowReLU) or teacher.out_size != 1 or teacher.in_size < 2 or teacher.bias:
        raise ValueError("the teacher must be a ShallowReLU with out_size 1, in_size >= 2 and no bias.")
    U, a = np.asarray(teacher.W, dtype=float), np.asarray(teacher.V, dtype=float)
    if U.ndim != 2:
        raise ValueError("the teacher must be one network, not a batch (vmap-ed leading axes).")
    a = a[0]
    live = (np.abs(a) > tol) & (np.linalg.norm(U, axis=1) > tol)
    U, a = U[live], a[live]
    N = U / np.linalg.norm(U, axis=1, keepdims=True)
    if np.any(np.abs(N @ N.T) - np.eye(len(N)) > 1 - 1e-12):
        raise ValueError("the teacher's incoming weights u_j must be pairwise non-parallel.")
    return int(np.sum(a > 0)), int(np.sum(a < 0))


def unreachable_probability(
    teacher: ShallowReLU, width: int, scheme: SchemeLike = "kaiming", *, tol: float = 1e-10
) -> float:
    """The probability that a student drawn as ``gflow.ShallowReLU(d, width, init=scheme,
    key=...)`` (no relocation) cannot reach ``teacher``: its component of ``Q(delta)`` holds
    no representative of the teacher's function (:func:`gflow.reachable` is ``False``).

    Each student neuron has ``w_k ~ N(0, sigma_w^2 I_d)`` and ``v_k ~ N(0, sigma_v^2)``,
    independently. It is pathological (``delta_k = ||w_k||^2 - v_k^2 < 0``) with probability

        p = P(v_k^2 > ||w_k||^2) = 1 - F_{1,d}(d sigma_w^2 / sigma_v^2)

    (``F_{1,d}`` the Fisher–Snedecor CDF; the ``p`` of :func:`gflow.obstruction_probability`),
    and the sign of ``v_k`` is ``+`` or ``-`` with probability 1/2 each, independently of
    ``|v_k|``, hence of being pathological. So the counts ``(P, M, F)`` of pathological
    neurons with ``v > 0``, with ``v < 0`` and of the others are
    ``Multinomial(l; p/2, p/2, 1 - p)``, and with ``a_+``, ``a_-`` the teacher's numbers of
    positive and negative output weights

        P(unreachable) = sum over P + M + F = l with max(0, a_+ - P) + max(0, a_- - M) > F of
                         l! / (P! M! F!) (p/2)^(P+M) (1 - p)^F.

    The deficit on the left is at most ``a_+ + a_-``, so only ``F < a_+ + a_-`` contributes:
    the sum is ``P(F = f) P(P = j | F = f)`` with ``F ~ Binomial(l, 1 - p)`` and, given
    ``F = f``, ``P ~ Binomial(l - f, 1/2)``, summed over the unreachable ``(f, j)``; every
    term is positive, so a small probability keeps its relative accuracy. Examples: with
    ``a_+ + a_- > l`` the answer is 1; with ``a_+ = a_- = 1`` and ``l >= 2`` it is
    ``2 (p/2)^l`` (all neurons pathological, one sign).

    ``gflow.reachable`` counts a neuron as pathological when ``delta_k < -tol``; the
    formula uses ``delta_k < 0``, which differs on an event of probability ``O(tol)``.

    **Arguments:**
    - ``teacher``: a :class:`gflow.ShallowReLU` with ``out_size = 1``, ``in_size = d >= 2``,
      no bias, pairwise non-parallel incoming weights; neurons with ``|a_j| <= tol`` or
      ``||u_j|| <= tol`` are ignored, as in :func:`gflow.reachable`.
    - ``width``: the student's width ``l``.
    - ``scheme``: ``"kaiming"`` (``sigma_w^2 = 2/d``, ``sigma_v^2 = 2/l``), ``"xavier"``
      (``2/(d+l)``, ``2/(l+1)``), a :class:`gflow.Scheme` or a tuple ``(sigma_w, sigma_v)``.
    - ``tol``: the tolerance with which the teacher's neurons are counted.

    **Returns:** the probability, a float in ``[0, 1]``.
    """
    if not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}.")
    a_pos, a_neg = _teacher_kinks(teacher, float(tol))
    _check_sizes(teacher.in_size, width)
    d, width = teacher.in_size, int(width)
    var_w, var_v = _variances(d, width, scheme)
    # deliberately lazy: scipy.stats takes 0.5 s to import, and `import gflow` should not pay it (issue 21)
    import scipy.stats

    p = float(scipy.stats.f.sf(d * var_w / var_v, 1, d))
    total = 0.0
    for f in range(min(a_pos + a_neg - 1, width) + 1):  # F = f free neurons; F >= a_+ + a_- is always reachable
        n = width - f
        j = np.arange(n + 1)  # P = j, M = n - j
        bad = j[np.maximum(0, a_pos - j) + np.maximum(0, a_neg - (n - j)) > f]
        if len(bad):
            total += scipy.stats.binom.pmf(f, width, 1.0 - p) * float(np.sum(scipy.stats.binom.pmf(bad, n, 0.5)))
    return float(min(max(total, 0.0), 1.0))
