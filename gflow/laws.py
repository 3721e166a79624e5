"""How many conservation laws a gradient flow has: ``D - dim Lie(V)(theta)``, computed numerically.

For a network ``f(x; theta)`` with parameters ``theta`` in ``R^D`` (the inexact arrays of an Equinox
module) and data ``x_1, ..., x_n``, the gradient flow of any loss of the outputs moves ``theta`` along

    theta' = -sum_{i,j} (dl/df_j)(x_i) chi_ij(theta),    chi_ij(theta) = grad_theta f_j(x_i; theta),

so a function ``h`` is conserved for every loss exactly when ``grad h`` is orthogonal to every field of
``V = span{chi_ij}`` and hence to every field of the Lie algebra ``Lie(V)`` they generate under the
bracket ``[X, Y](theta) = DY(theta) X(theta) - DX(theta) Y(theta)``. Marcotte, Gribonval & Peyre
("Abide by the law and follow the flow: conservation laws for gradient flows", NeurIPS 2023) show
that near a point where ``dim Lie(V)(theta')`` is locally constant there are exactly
``D - dim Lie(V)(theta)`` independent conservation laws; see the theory page (docs/theory.md).

Their implementation is symbolic; this one is numerical and works on any Equinox module: fields are
evaluated at ``theta`` only, brackets by Jacobian-vector products (``jax.jvp`` over ``jax.vjp``), ranks
by singular values with an explicit relative tolerance and a reported gap.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from ._jit import jit

__all__ = ["count_conservation_laws", "LieRankInfo"]


@dataclasses.dataclass(frozen=True)
class LieRankInfo:
    """How :func:`count_conservation_laws` reached its answer.

    **Fields:**

    - `count`: the number of conservation laws, `n_params - rank`.
    - `n_params`: `D`, the number of scalar parameters (inexact-array entries of the module).
    - `rank`: `dim Lie(V)(theta)`, the number of basis fields kept.
    - `n_generators`: the number of gradient fields `chi_ij` (samples times output coordinates).
    - `n_evaluated`: the number of fields evaluated in all (generators and brackets).
    - `depth`: the last bracket level evaluated (1 = the generators alone).
    - `levels`: one dict per level: `depth`, `candidates` (fields evaluated), `added` (kept),
      `rank` (after the level), `gap` (`sigma_r / sigma_{r+1}` at that level's decision), `sigma_r`,
      `sigma_next` (the last kept and first cut singular values, relative to the largest; `sigma_next`
      is 0 when nothing was cut, and the gap then uses the round-off floor `max(rows, columns) * eps`
      in its place; a level with no candidate, or a zero rank, has gap `inf`).
    - `singular_values`: the singular values of the last level's matrix, divided by the largest.
    - `gap`: the last level's gap, the one that decided that the algebra stopped growing.
    - `min_gap`: the smallest gap over all levels (the least clear rank decision).
    - `basis`: the kept fields' values at `theta`, each divided by its scale, shape `(rank, D)`;
      the gradient of every conservation law is orthogonal to each row.
    """

    count: int
    n_params: int
    rank: int
    n_generators: int
    n_evaluated: int
    depth: int
    levels: tuple[dict, ...]
    singular_values: np.ndarray
    gap: float
    min_gap: float
    basis: np.ndarray


def _to_float64(model):
    def cast(a):
        if eqx.is_inexact_array(a):
            if jnp.issubdtype(a.dtype, jnp.complexfloating):
                raise ValueError("count_conservation_laws needs real parameters, got a complex array.")
            return a.astype(jnp.float64)
        return a

    return jtu.tree_map(cast, model)


def _outputs_fn(model, x):
    """``theta -> (f_j(x_i; theta))_{i,j}`` flattened (``a = i * n_out + j``), ``theta`` itself, and
    ``(theta, i) -> f(x_i; theta)`` on one sample."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    theta, unravel = ravel_pytree(params)

    def one_sample(th, i):
        return eqx.combine(unravel(th), static)(x[i]).reshape(-1)

    def outputs(th):
        net = eqx.combine(unravel(th), static)
        return jax.vmap(net)(x).reshape(-1)

    return outputs, theta, one_sample


@jit
def _generators(model, x):
    """Level 1: the values ``chi_a(theta)``, one row per output coordinate ``a = (i, j)``."""
    outputs, theta, _ = _outputs_fn(model, x)
    return jax.jacrev(outputs)(theta)


def _bracket_word(one_sample, n_out, word):
    """The field ``[chi_{a_1}, [chi_{a_2}, ... [chi_{a_{k-1}}, chi_{a_k}]]]`` for ``word = (a_1..a_k)``
    (``k >= 2``) as a function of theta returning ``(value, scale)``, where the scale is the size before
    the outer subtraction, ``|DY X| + |DX Y|``. Each generator evaluates the network on its own sample
    only, so a bracket of length k costs k samples' work, whatever the number of samples."""

    def generator(a):
        def chi(th):
            _, pullback = jax.vjp(lambda t: one_sample(t, a // n_out), th)
            return pullback(jax.nn.one_hot(a % n_out, n_out, dtype=th.dtype))[0]

        return chi

    def terms(X, Y, th):
        """``DY(th) X(th)`` and ``DX(th) Y(th)``, each by one JVP."""
        xv = X(th)
        yv, dy_x = jax.jvp(Y, (th,), (xv,))
        _, dx_y = jax.jvp(X, (th,), (yv,))
        return dy_x, dx_y

    def field(i):
        """The bracket of ``word[i:]``, as a function of theta."""
        if i == word.shape[0] - 1:
            return generator(word[i])
        X, Y = generator(word[i]), field(i + 1)
        return lambda th: jnp.subtract(*terms(X, Y, th))

    X, Y = generator(word[0]), field(1)

    def value_and_scale(th):
        dy_x, dx_y = terms(X, Y, th)
        return dy_x - dx_y, jnp.linalg.norm(dy_x) + jnp.linalg.norm(dx_y)

    return value_and_scale


@jit
def _brackets(model, x, words):
    """Values and scales at theta of the right-nested brackets listed in ``words`` (``(batch, k)``)."""
    _, theta, one_sample = _outputs_fn(model, x)
    n_out = jax.eval_shape(one_sample, theta, 0).shape[0]
    return jax.vmap(lambda w: _bracket_word(one_sample, n_out, w)(theta))(words)


def _evaluate(model, x, words: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_brackets` in fixed-size chunks (one compilation per depth); the last chunk is padded."""
    values, scales = [], []
    for start in range(0, len(words), chunk):
        block = words[start : start + chunk]
        pad = chunk - len(block)
        padded = np.concatenate([block, np.repeat(block[:1], pad, axis=0)]) if pad else block
        v, s = _brackets(model, x, jnp.asarray(padded))
        values.append(np.asarray(v)[: len(block)])
        scales.append(np.asarray(s)[: len(block)])
    return np.concatenate(values), np.concatenate(scales)


def _normalize(values: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Each value divided by its scale (a field whose scale is 0 is the zero field)."""
    safe = np.where(scales > 0, scales, 1.0)
    return np.where(scales[:, None] > 0, values / safe[:, None], 0.0)


def _decide(basis: np.ndarray, candidates: np.ndarray, rtol: float) -> tuple[int, np.ndarray, dict]:
    """Rank of ``[basis; candidates]`` (rows), which candidates to keep, and the cut's singular values."""
    stacked = np.concatenate([basis, candidates]) if len(basis) else candidates
    sigma = np.linalg.svd(stacked, compute_uv=False)
    top = sigma[0] if len(sigma) else 0.0
    rel = sigma / top if top > 0 else np.zeros_like(sigma)
    rank = int(np.sum(rel > rtol))
    # with nothing cut, the next singular value is taken at the round-off floor (NumPy's matrix_rank)
    floor = max(stacked.shape) * np.finfo(stacked.dtype).eps
    cut = dict(
        sigma_r=float(rel[rank - 1]) if rank > 0 else math.nan,
        sigma_next=float(rel[rank]) if rank < len(rel) else 0.0,
    )
    below = cut["sigma_next"] if rank < len(rel) else floor
    cut["gap"] = cut["sigma_r"] / below if rank > 0 and below > 0 else math.inf
    n_new = rank - len(basis)
    if n_new <= 0:
        return len(basis), np.zeros(0, dtype=int), dict(cut, singular_values=rel)
    # the candidates most independent of the basis: the first n_new steps of QR with column pivoting
    # on their parts orthogonal to it (take the largest residual, project it out of the others)
    residual = candidates.T.copy()
    if len(basis):
        q, _ = np.linalg.qr(basis.T)
        residual -= q @ (q.T @ residual)
    chosen = []
    for _ in range(n_new):
        j = int(np.argmax(np.sum(residual**2, axis=0)))
        chosen.append(j)
        u = residual[:, j] / np.linalg.norm(residual[:, j])
        residual -= np.outer(u, u @ residual)
    return rank, np.sort(np.array(chosen, dtype=int)), dict(cut, singular_values=rel)


def count_conservation_laws(
    model: eqx.Module,
    x: Float[Array, "n ..."],
    *,
    rtol: float = 1e-9,
    min_gap: float | None = 1e3,
    max_depth: int = 6,
    chunk: int = 256,
    return_info: bool = False,
) -> int | tuple[int, LieRankInfo]:
    """The number of independent conservation laws of the gradient flow of `model` near its parameters.

    With `theta` in `R^D` the inexact-array leaves of `model` (`eqx.partition(model,
    eqx.is_inexact_array)`, flattened by `jax.flatten_util.ravel_pytree`) and the gradient fields
    `chi_ij(theta) = grad_theta f_j(x_i; theta)` (every sample `i`, every output coordinate `j`), this
    returns

        D - dim Lie(V)(theta),    V = span{chi_ij},

    the number of functions of `theta` conserved by the gradient flow of every loss of the outputs on
    these inputs (Marcotte, Gribonval & Peyre, NeurIPS 2023; the theory page, docs/theory.md).

    **Algorithm.** Fields are kept as functions (right-nested brackets of generators) and evaluated at
    `theta` only. Level 1: the `chi_a`; keep a maximal set whose values at `theta` are independent.
    Level `k + 1`: the brackets `[chi_a, W]` of the kept generators with the fields kept at level `k`
    (`[chi_a, chi_b]` with `a < b` at level 2), each by two Jacobian-vector products,
    `[X, Y](theta) = DY(theta) X(theta) - DX(theta) Y(theta)`; keep those whose values raise the rank.
    Stop when a whole level adds nothing (or the rank reaches `D`). Each value is divided by its scale
    (the generator's norm; for a bracket `|DY X| + |DX Y|`, its size before the subtraction), so a
    bracket that vanishes up to round-off is round-off relative to 1. A level's rank is the number of
    singular values of the stacked kept and new values above `rtol` times the largest; its gap is
    `sigma_r / sigma_{r+1}` at that cut, with `sigma_{r+1}` raised to the round-off floor
    `max(rows, columns) * eps` (NumPy's `matrix_rank` tolerance) when nothing is cut.

    **Validity.** The criterion is pointwise and numerical. Pruning fields by their values at `theta`,
    and stopping when one level adds nothing, are exact at generic points, where every
    `dim V_k(theta')` (`V_k`: brackets of length at most `k`) is locally constant; at non-generic points
    (a ReLU kink: some `x_i` on the hyperplane of a hidden unit; a rank-deficient factor; a zero
    weight vector) the answer is that of the point, which may differ from the count at nearby generic
    points. The count is also that of these inputs, which may exceed the architecture's count
    for all data (Marcotte et al. count laws that hold for every data set): too few samples, a ReLU
    unit active on one sample or none, or a weight of a deep ReLU net that no sample sees (a unit of
    layer 2 active only where a unit of layer 1 is off) each add laws. Computed in float64 whatever the
    model's dtype (inside `jax.enable_x64(True)`).

    **Arguments:**

    - `model`: any Equinox module called on ONE input (`model(x[i])`); its inexact arrays are the
      parameters.
    - `x`: inputs, batched on the first axis.
    - `rtol`: singular values above `rtol * sigma_max` count towards the rank.
    - `min_gap`: raise `ValueError` if any level's gap `sigma_r / sigma_{r+1}` is below this; `None`
      accepts any gap (read it from `info`).
    - `max_depth`: the deepest bracket level; raise `ValueError` if the algebra still grows there.
    - `chunk`: brackets evaluated per compiled call (memory versus number of calls).
    - `return_info`: also return a :class:`LieRankInfo`.

    **Returns:**

    The number of conservation laws (an `int`), or `(count, info)` with `return_info=True`.
    """
    if max_depth < 1:
        raise ValueError(f"max_depth must be at least 1, got {max_depth}.")
    with jax.enable_x64(True):
        model = _to_float64(model)
        x = jnp.asarray(x, dtype=jnp.float64)
        gens = np.asarray(_generators(model, x))
        n_gen, n_params = gens.shape
        values = _normalize(gens, np.linalg.norm(gens, axis=1))
        rank, keep, cut = _decide(np.zeros((0, n_params)), values, rtol)
        basis = values[keep]
        kept_gens = keep  # output indices of the kept generators
        new_words = keep[:, None]
        levels: list[dict[str, Any]] = [dict(depth=1, candidates=n_gen, added=len(keep), rank=rank, **cut)]
        n_evaluated = n_gen
        while rank < n_params and levels[-1]["added"] > 0 and len(levels) < max_depth:
            depth = len(levels) + 1
            if depth == 2:  # [chi_a, chi_b] = -[chi_b, chi_a] and [chi_a, chi_a] = 0
                i, j = np.triu_indices(len(kept_gens), k=1)
                words = np.stack([kept_gens[i], kept_gens[j]], axis=1)
            else:
                words = np.concatenate([np.insert(new_words, 0, g, axis=1) for g in kept_gens])
            if len(words) == 0:
                levels.append(
                    dict(depth=depth, candidates=0, added=0, rank=rank, singular_values=np.zeros(0))
                    | dict(sigma_r=math.nan, sigma_next=0.0, gap=math.inf)
                )
                break
            vals, scales = _evaluate(model, x, words, chunk)
            n_evaluated += len(words)
            candidates = _normalize(vals, scales)
            rank, keep, cut = _decide(basis, candidates, rtol)
            basis = np.concatenate([basis, candidates[keep]])
            new_words = words[keep]
            levels.append(dict(depth=depth, candidates=len(words), added=len(keep), rank=rank, **cut))
    if rank < n_params and levels[-1]["added"] > 0:
        raise ValueError(
            f"The Lie algebra still grew at the last level evaluated, max_depth={max_depth} (rank {rank} of "
            f"{n_params}); raise max_depth."
        )
    gaps = [lev["gap"] for lev in levels]
    if min_gap is not None:
        for lev in levels:
            if lev["gap"] < min_gap:
                raise ValueError(
                    f"The rank decision at bracket level {lev['depth']} is not clear: sigma_r/sigma_(r+1) = "
                    f"{lev['gap']:.3g} < min_gap = {min_gap:g} (theta or the data may be non-generic; "
                    "pass min_gap=None to accept it)."
                )
    count = n_params - rank
    if not return_info:
        return count
    info = LieRankInfo(
        count=count,
        n_params=n_params,
        rank=rank,
        n_generators=n_gen,
        n_evaluated=n_evaluated,
        depth=len(levels),
        levels=tuple({k: v for k, v in lev.items() if k != "singular_values"} for lev in levels),
        singular_values=levels[-1]["singular_values"],
        gap=gaps[-1],
        min_gap=min(gaps),
        basis=basis,
    )
    return count, info
