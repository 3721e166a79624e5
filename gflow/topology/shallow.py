"""Topology of the invariant set of a shallow ReLU net (docs/theory.md §1, NeurIPS paper).

Along the gradient flow of ``f(x) = V relu(W x + b)`` every ``delta_k = ||w_k||^2 -
||v_k||^2`` is conserved, so ``theta`` stays in ``Q(delta)``, a product of one hyperquadric
per hidden neuron: ``S^{d-1} x R^e`` (delta_k > 0), ``R^d x S^{e-1}`` (delta_k < 0), a cone
(delta_k = 0). With ``n_+, n_-, n_0`` neurons of each kind (Theorem 1)

    P(t) = (1 + t^{d-1})^{n_+} (1 + t^{e-1})^{n_-},     b_0 = 2^{n_+ [d=1]} 2^{n_- [e=1]}.

With biases ``b_k`` is one more incoming weight, so ``d -> d+1`` (Appendix E).

Functions here take ``(in_size, out_size, delta, bias=False)`` or a :class:`ShallowReLU`
in place of ``in_size`` (then ``delta = conserved(model)``). A conserved value with
``|delta_k| <= tol * max(1, max_k |delta_k|)`` counts as zero (``tol`` default
:data:`gflow.topology.TOL` = ``1e-9``, the same tolerance as :func:`gflow.dag_components`, so the
shallow count is exactly the DAG count's special case: far above float64 round-off of
``conserved`` on weights of order one, far below any delta chosen on purpose). Every value
must be finite. The probability that a random initialization is obstructed (App. F) is
:func:`obstruction_probability`, with a Monte Carlo check :func:`obstruction_probability_mc`.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._custom_types import Delta, SchemeLike
from .._validate import finite_array
from ..invariants import conserved
from ..nets.schemes import Scheme, get_scheme, normal
from ..nets.shallow import ShallowReLU, require_shallow
from .dag import TOL, check_tol, zero_scale

__all__ = [
    "TOL",
    "neuron_counts",
    "poincare_polynomial",
    "betti_numbers",
    "n_components",
    "component_label",
    "n_effective_components",
    "effective_label",
    "obstruction_probability",
    "obstruction_probability_mc",
]


def _resolve(in_size, out_size=None, delta=None, bias=False):
    """``(d, e, delta)`` with ``d`` already shifted by one when biases are on."""
    if isinstance(in_size, ShallowReLU):
        model = in_size
        if out_size is not None or delta is not None:
            raise ValueError("give either a ShallowReLU or (in_size, out_size, delta), not both.")
        delta = np.asarray(conserved(model), dtype=float)
        if delta.ndim != 1:
            raise ValueError("give one network, not a batch (vmap-ed leading axes); component_label takes batches.")
        if not np.all(np.isfinite(delta)):
            raise ValueError("the network's conserved values must be finite; its weights hold NaN or inf.")
        return model.in_size + int(model.bias), model.out_size, delta
    if isinstance(in_size, eqx.Module):
        raise ValueError(
            f"the first argument must be a ShallowReLU or an integer in_size, got {type(in_size).__name__}; "
            "use gflow.dag_components for MLP and DAG networks."
        )
    d, e = _positive_int("in_size", in_size), _positive_int("out_size", out_size)
    if delta is None:
        raise ValueError("delta (one conserved value per hidden neuron) is required with in_size, out_size.")
    delta = np.atleast_1d(np.asarray(finite_array(delta, "delta"), dtype=float))
    if delta.ndim != 1:
        raise ValueError("delta must be a finite 1-D vector with one conserved value per neuron.")
    return d + int(bool(bias)), e, delta


def _positive_int(name: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def neuron_counts(
    in_size: int | ShallowReLU,
    out_size: int | None = None,
    delta: Delta | None = None,
    bias: bool = False,
    *,
    tol: float = TOL,
) -> tuple[int, int, int]:
    """``(n_+, n_-, n_0)``: neurons with ``delta_k > z``, ``< -z`` and ``|delta_k| <= z``, for
    ``z = tol * max(1, max_k |delta_k|)`` (:data:`gflow.topology.TOL`, shared with :func:`gflow.dag_components`)."""
    _, _, delta = _resolve(in_size, out_size, delta, bias)
    z = zero_scale(delta, check_tol(tol))
    pos, neg = int(np.sum(delta > z)), int(np.sum(delta < -z))
    return pos, neg, len(delta) - pos - neg


def poincare_polynomial(
    in_size: int | ShallowReLU,
    out_size: int | None = None,
    delta: Delta | None = None,
    bias: bool = False,
    *,
    tol: float = TOL,
) -> list[int]:
    """Coefficients of ``P(t) = (1 + t^{d-1})^{n_+} (1 + t^{e-1})^{n_-}`` (Theorem 1).

    **Returns:** a list of Python integers; entry ``j`` is the coefficient of ``t^j``, i.e.
    the ``j``-th Betti number of ``Q(delta)``. Its length is ``deg P + 1``. Exact for any
    size (binomial coefficients, no floating point).
    """
    d, e, _ = _resolve(in_size, out_size, delta, bias)
    pos, neg, _ = neuron_counts(in_size, out_size, delta, bias, tol=tol)
    coeffs = [0] * ((d - 1) * pos + (e - 1) * neg + 1)
    for i in range(pos + 1):
        for j in range(neg + 1):
            coeffs[(d - 1) * i + (e - 1) * j] += math.comb(pos, i) * math.comb(neg, j)
    return coeffs


def betti_numbers(
    in_size: int | ShallowReLU,
    out_size: int | None = None,
    delta: Delta | None = None,
    bias: bool = False,
    *,
    tol: float = TOL,
) -> list[int]:
    """Betti numbers ``b_0, b_1, ...`` of ``Q(delta)``: the coefficients of
    :func:`poincare_polynomial` (trailing zeros are impossible, the leading one is > 0)."""
    return poincare_polynomial(in_size, out_size, delta, bias, tol=tol)


def n_components(
    in_size: int | ShallowReLU,
    out_size: int | None = None,
    delta: Delta | None = None,
    bias: bool = False,
    *,
    tol: float = TOL,
) -> int:
    """Number of connected components ``b_0 = 2^{n_+ [d=1]} 2^{n_- [e=1]}`` (Corollary 1).

    ``delta_k`` counts as zero when ``|delta_k| <= tol * max(1, max_k |delta_k|)``, with the
    default ``tol`` = :data:`gflow.topology.TOL` = 1e-9: the tolerance of :func:`gflow.dag_components`,
    which gives the same count for every shallow net (the DAG count's special case)."""
    d, e, _ = _resolve(in_size, out_size, delta, bias)
    pos, neg, _ = neuron_counts(in_size, out_size, delta, bias, tol=tol)
    return 2 ** (pos * (d == 1) + neg * (e == 1))


def _main_case(d, e, what):
    if e != 1 or d < 2:
        raise ValueError(
            f"{what} is defined for out_size = 1 and d = in_size (+1 with bias) >= 2 (docs/theory.md §1, Prop. 3); "
            f"got d = {d}, out_size = {e}. Use gflow.dag_components otherwise."
        )


def n_effective_components(
    in_size: int | ShallowReLU,
    out_size: int | None = None,
    delta: Delta | None = None,
    bias: bool = False,
    *,
    tol: float = TOL,
) -> int:
    """Number of effective components ``n_- + 1`` (Corollary 3; e = 1, d > 1).

    Components related by rescaling and permutation of neurons are identified; what is
    left is the number of pathological neurons (``delta_k < 0``) with a negative output.
    """
    d, e, _ = _resolve(in_size, out_size, delta, bias)
    _main_case(d, e, "n_effective_components")
    return neuron_counts(in_size, out_size, delta, bias, tol=tol)[1] + 1


def component_label(model: ShallowReLU, *, tol: float = TOL) -> Array:
    """The component of ``Q(delta)`` holding ``model`` (Prop. 3; e = 1).

    Pathological neurons (``delta_k < -tol * max(1, max_k |delta_k|)``) can never change the sign of ``v_k``; the
    component is labelled by these signs. Returned embedded in a full-width vector:
    entry ``k`` is ``sign(v_k)`` for a pathological neuron and ``0`` for the others, so two
    points of the same ``Q(delta)`` lie in the same component iff their labels are equal.
    Works on a batch of models (leading axes on every array) and under ``jax.jit``.
    (For ``d = 1`` without bias the signs of ``w_k`` with ``delta_k > 0`` are fixed too;
    :func:`gflow.dag_components` gives that full label.)
    """
    require_shallow(model, "component_label", " (use gflow.dag_components for MLP and DAG networks)")
    if model.out_size != 1:
        raise ValueError(
            f"component_label needs out_size = 1 (Prop. 3), got {model.out_size}; "
            "use gflow.dag_components for out_size > 1."
        )
    delta = conserved(model)
    v = model.V[..., 0, :]
    z = check_tol(tol) * jnp.maximum(1.0, jnp.max(jnp.abs(delta), axis=-1, keepdims=True))
    return jnp.where(delta < -z, jnp.sign(v), 0).astype(jnp.int32)


def effective_label(model: ShallowReLU, *, tol: float = TOL) -> Array:
    """The effective component (Corollary 3): the number of pathological neurons with
    ``v_k < 0``, an integer in ``0..n_-``. Works on a batch of models."""
    model = require_shallow(model, "effective_label", " (use gflow.dag_components for MLP and DAG networks)")
    _main_case(model.in_size + int(model.bias), model.out_size, "effective_label")
    return jnp.sum(component_label(model, tol=tol) < 0, axis=-1)


def _variances(in_size: int, width: int, scheme) -> tuple[float, float]:
    if isinstance(scheme, tuple):
        if len(scheme) != 2:
            raise ValueError(f"scheme as a tuple must be (sigma_w, sigma_v), got {scheme!r}.")
        scheme = normal(*scheme)
    elif not isinstance(scheme, Scheme) and scheme not in ("kaiming", "xavier"):
        raise ValueError(f"scheme must be 'kaiming', 'xavier', a gflow Scheme or (sigma_w, sigma_v); got {scheme!r}.")
    return get_scheme(scheme).shallow_variances(in_size, width, 1)


def _check_sizes(in_size, width):
    for name, value in (("in_size", in_size), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def obstruction_probability(in_size: int, width: int, scheme: SchemeLike = "kaiming", *, bias: bool = False) -> float:
    """Probability that a random shallow net (out_size 1) starts in a disconnected ``Q``.

    With ``w_k ~ N(0, sigma_w^2 I_d)``, ``v_k ~ N(0, sigma_v^2)`` (``(sigma_w, sigma_v)`` from
    ``scheme``: ``"kaiming"`` fan-in ``2/d, 2/l``; ``"xavier"`` ``2/(d+l), 2/(l+1)``; a
    :class:`gflow.Scheme`; or a tuple ``(sigma_w, sigma_v)``) a neuron is pathological with
    probability (App. F)

        p = P(v^2 > ||w||^2) = 1 - F_{1,d}(d sigma_w^2 / sigma_v^2),

    ``F_{1,d}`` the Fisher–Snedecor CDF, and ``P(Q disconnected) = 1 - (1 - p)^l``. With
    ``bias=True`` the bias (same sigma as ``w``) is one more incoming weight: ``d -> d+1``.
    """
    _check_sizes(in_size, width)
    var_w, var_v = _variances(in_size, width, scheme)
    d = in_size + int(bool(bias))
    # deliberately lazy: scipy.stats takes 0.5 s to import, and `import gflow` should not pay it (issue 21)
    import scipy.stats

    p = scipy.stats.f.sf(d * var_w / var_v, 1, d)
    return float(-np.expm1(width * np.log1p(-p)))


def obstruction_probability_mc(
    in_size: int,
    width: int,
    scheme: SchemeLike = "kaiming",
    n: int = 100_000,
    key: PRNGKeyArray | None = None,
    *,
    bias: bool = False,
    chunk: int | None = None,
) -> tuple[float, float]:
    """Monte Carlo estimate of :func:`obstruction_probability`: draw ``n`` nets'
    weights ``W`` (width, in_size), ``b``, ``V`` (1, width) as :class:`ShallowReLU` does
    (i.i.d. Gaussians with the scheme's ``std``) and count the nets with some
    ``delta_k = ||w_k||^2 + b_k^2 - v_k^2 < 0``.

    **Returns:** ``(estimate, standard error)`` with ``se = sqrt(P(1 - P) / n)``. Runs in
    chunks of about ``4e6`` weights, so a large ``n * width * in_size`` fits in memory.
    """
    _check_sizes(in_size, width)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n (number of Monte Carlo samples) must be a positive integer, got {n!r}.")
    var_w, var_v = _variances(in_size, width, scheme)
    key = jr.PRNGKey(0) if key is None else key
    d = in_size + int(bool(bias))
    chunk = int(chunk or max(1, min(n, 4_000_000 // (width * (d + 1)))))
    n_chunks = -(-int(n) // chunk)
    dtype = jnp.result_type(float)
    std_w, std_v = jnp.asarray(math.sqrt(var_w), dtype), jnp.asarray(math.sqrt(var_v), dtype)
    count = 0
    for i, k in enumerate(jr.split(key, n_chunks)):
        count += int(_mc_chunk(k, std_w, std_v, jnp.asarray(min(chunk, n - i * chunk)), d, width, chunk))
    est = count / n
    return est, math.sqrt(max(est * (1 - est), 0.0) / n)


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _mc_chunk(key, std_w, std_v, n_valid, d, width, chunk):
    """Number of obstructed nets among the first ``n_valid`` of ``chunk`` drawn with ``key``."""
    z = jr.normal(key, (chunk, width, d + 1), std_w.dtype)  # d incoming weights, then v
    w_sq = std_w**2 * jnp.sum(z[..., :d] ** 2, axis=-1)
    v_sq = std_v**2 * z[..., d] ** 2
    hit = jnp.any(w_sq < v_sq, axis=-1)
    return jnp.sum(hit & (jnp.arange(chunk) < n_valid))
