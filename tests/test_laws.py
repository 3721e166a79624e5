"""``count_conservation_laws``: D - dim Lie(V)(theta) against known counts and an independent computation.

Known counts and the conditions under which they hold (Marcotte, Gribonval & Peyre, NeurIPS 2023):

- ReLU networks: one law per hidden unit, ``||w_in||^2 - ||w_out||^2`` (a bias is an incoming weight).
  These laws exist at every point, so the count is at least the number of hidden units wherever their
  gradients are independent (all weights nonzero). The count equals it only when the data see every
  parameter direction the rescalings allow: here checked as the precondition that the output Jacobian
  ``(d f(x_i) / d theta)`` already has rank ``D - #hidden`` (then ``V`` alone has that rank and the count
  is squeezed to ``#hidden``). Random small deep nets often fail it: a unit active on one sample, a unit
  of layer 2 active only where a unit of layer 1 is off (its weight is invisible) give more laws; the
  tests then pick seeds that satisfy it and say so.
- The linear factorization ``x -> U V^T x`` (``U``: n x r, ``V``: m x r): r(r+1)/2 laws (the entries of
  ``U^T U - V^T V``) where ``(U; V)`` has rank r and the inputs span R^m (so the per-sample fields span
  those of every entry of ``U V^T``). Here ``V`` alone has rank ``r(n + m - r)`` (the dimension of the
  rank-r matrices), and the brackets add the remaining ``r(r-1)/2``: the one known case where level 1
  is not enough.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gflow as gf
from gflow.laws import count_conservation_laws

# Every rank decision below separates singular values >= 1e-5 (relative) from round-off <= 1e-14: the
# default min_gap = 1e3 is met by many orders of magnitude (asserted through the default, which raises).


class LowRank(eqx.Module):
    """``x -> U V^T x``."""

    U: jax.Array
    V: jax.Array

    def __call__(self, x):
        return self.U @ (self.V.T @ x)


class Twist(eqx.Module):
    """``f(x; a, b, c) = x_0 a + x_1 (b + a c)``: V = span{e_1, (c, 1, a)} has rank 2 at every point, and
    ``[e_1, (c, 1, a)] = d/da (c, 1, a) = e_3``: Lie(V) = R^3, no law; level 1 alone would say one."""

    p: jax.Array

    def __call__(self, x):
        a, b, c = self.p
        return x[0] * a + x[1] * (b + a * c)


def _theta_outputs(model, x):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    theta, unravel = ravel_pytree(params)
    return theta, unravel, lambda t: jax.vmap(eqx.combine(unravel(t), static))(x).reshape(-1)


def _jacobian_rank(model, x) -> int:
    """Rank of the output Jacobian (forward mode, NumPy's default rank tolerance): dim V(theta)."""
    theta, _, outputs = _theta_outputs(model, x)
    return int(np.linalg.matrix_rank(np.asarray(jax.jacfwd(outputs)(theta))))


def _law_gradients(laws, model) -> np.ndarray:
    """Rows: gradients in theta of the known laws ``laws(model) -> (k,)``."""
    theta, unravel, _ = _theta_outputs(model, jnp.zeros((1, 1)))
    _, static = eqx.partition(model, eqx.is_inexact_array)
    return np.asarray(jax.jacfwd(lambda t: laws(eqx.combine(unravel(t), static)))(theta))


def _check_orthogonal(info, grads):
    """Every kept field is orthogonal to every known law's gradient (the laws are conserved by Lie(V));
    cosines of round-off size, 1e-10 being far below the smallest kept singular value (>= 1e-5)."""
    assert np.linalg.matrix_rank(grads) == len(grads)  # the known laws are independent here
    sv = np.linalg.svd(info.basis, compute_uv=False)
    assert len(info.basis) == info.rank and sv[-1] > 1e-9 * sv[0]  # the kept fields are independent
    b = info.basis / np.linalg.norm(info.basis, axis=1, keepdims=True)
    g = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    assert np.max(np.abs(b @ g.T)) < 1e-10


def _eqx_mlp_laws(mlp):
    """``||incoming||^2 - ||outgoing||^2`` per hidden unit of a bias-free ``eqx.nn.MLP``."""
    ws = [layer.weight for layer in mlp.layers]
    return jnp.concatenate(
        [jnp.sum(a**2, axis=1) - jnp.sum(b**2, axis=0) for a, b in zip(ws[:-1], ws[1:], strict=True)]
    )


def _low_rank_laws(model):
    i, j = jnp.triu_indices(model.U.shape[1])
    return (model.U.T @ model.U - model.V.T @ model.V)[i, j]


def _naive_ranks(model, x, depth, rtol=1e-9) -> list[int]:
    """An independent computation of dim V_k(theta), k = 1..depth: ALL right-nested brackets of ALL
    generators, no pruning, with dense Jacobians by ``jax.jacfwd`` (``F_{k+1}[a, w] = DF_k[w] chi_a -
    D chi_a F_k[w]``), rows scaled like the library's (by ``|DY X| + |DX Y|``)."""
    theta, _, outputs = _theta_outputs(model, x)
    F1 = jax.jacrev(outputs)

    def next_level(Fk):
        def F(t):
            A, JA, B, JB = F1(t), jax.jacfwd(F1)(t), Fk(t), jax.jacfwd(Fk)(t)
            t1 = jnp.einsum("wij,aj->awi", JB, A).reshape(-1, t.size)
            t2 = jnp.einsum("aij,wj->awi", JA, B).reshape(-1, t.size)
            return t1 - t2, jnp.linalg.norm(t1, axis=1) + jnp.linalg.norm(t2, axis=1)

        return F

    v = np.asarray(F1(theta))
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    rows = [np.where(norms > 0, v / np.where(norms > 0, norms, 1.0), 0.0)]
    Fk = F1
    for _ in range(depth - 1):
        G = next_level(Fk)
        v, s = map(np.asarray, G(theta))
        rows.append(np.where(s[:, None] > 0, v / np.where(s > 0, s, 1.0)[:, None], 0.0))
        Fk = lambda t, G=G: G(t)[0]  # noqa: B023
    ranks = []
    for k in range(1, depth + 1):
        sv = np.linalg.svd(np.concatenate(rows[:k]), compute_uv=False)
        ranks.append(int(np.sum(sv > rtol * sv[0])))
    return ranks


@pytest.mark.parametrize("bias", [False, True])
def test_shallow_relu_one_law_per_neuron(bias):
    # d = 3, width 4, 40 Gaussian samples >= width * (d + 1): every unit active on a share of them
    d, width = 3, 4
    model = gf.ShallowReLU(d, width, bias=bias, key=jr.PRNGKey(0))
    x = jr.normal(jr.PRNGKey(1), (40, d))
    D = width * (d + 1 + bias)
    assert _jacobian_rank(model, x) == D - width  # precondition: the data see every direction
    count, info = count_conservation_laws(model, x, return_info=True)
    assert count == width and info.n_params == D
    assert info.levels[-1]["added"] == 0 and info.depth == 2  # the brackets add nothing here
    _check_orthogonal(info, _law_gradients(gf.conserved, model))


@pytest.mark.parametrize("bias, seed, n", [(False, 2, 60), pytest.param(True, 7, 300, marks=pytest.mark.slow)])
def test_deep_relu_one_law_per_hidden_neuron(bias, seed, n):
    # seeds whose data see every direction (see the module docstring; other seeds give more laws). With
    # biases, 60 samples met the precondition for 1 seed in 10 and 300 samples for 6 in 10.
    model = gf.MLP(4, (3, 2), bias=bias, key=jr.PRNGKey(seed))
    x = jr.normal(jr.PRNGKey(100 + seed), (n, 4))
    D = sum(w.size for w in model.weights) + (5 if bias else 0)
    assert _jacobian_rank(model, x) == D - 5
    count, info = count_conservation_laws(model, x, return_info=True)
    assert count == 3 + 2
    _check_orthogonal(info, _law_gradients(gf.conserved, model))


def test_eqx_mlp_relu_one_law_per_hidden_neuron():
    model = eqx.nn.MLP(4, 1, 3, 2, activation=jax.nn.relu, use_bias=False, use_final_bias=False, key=jr.PRNGKey(2))
    x = jr.normal(jr.PRNGKey(102), (60, 4))
    assert _jacobian_rank(model, x) == 24 - 6  # D = 12 + 9 + 3
    count, info = count_conservation_laws(model, x, return_info=True)
    assert count == 6
    _check_orthogonal(info, _law_gradients(_eqx_mlp_laws, model))


@pytest.mark.parametrize(
    "n, m, r", [pytest.param(3, 2, 2, marks=pytest.mark.slow), (4, 3, 2), pytest.param(3, 3, 3, marks=pytest.mark.slow)]
)
def test_linear_factorization_r_r_plus_1_over_2(n, m, r):
    kU, kV, kx = jr.split(jr.PRNGKey(n * 100 + m * 10 + r), 3)
    model = LowRank(jr.normal(kU, (n, r)), jr.normal(kV, (m, r)))
    x = jr.normal(kx, (m + 2, m))  # rank m
    count, info = count_conservation_laws(model, x, return_info=True)
    D = r * (n + m)
    assert info.levels[0]["rank"] == r * (n + m - r)  # V alone: the tangent space of rank-r matrices
    assert count == r * (r + 1) // 2
    assert info.rank - info.levels[0]["rank"] == r * (r - 1) // 2  # what the brackets add
    assert info.n_params == D
    _check_orthogonal(info, _law_gradients(_low_rank_laws, model))


def test_brackets_needed_closed_form():
    model = Twist(jnp.array([0.7, -0.3, 1.1]))
    x = jr.normal(jr.PRNGKey(0), (4, 2))
    count, info = count_conservation_laws(model, x, return_info=True)
    assert info.levels[0]["rank"] == 2 and count == 0


def test_one_sample_leaves_all_but_one_direction():
    # a single nonzero field X: Lie(V) = span{X} ([X, X] = 0), so D - 1 laws
    model = gf.ShallowReLU(3, 4, key=jr.PRNGKey(0))
    x = jnp.array([[0.3, -1.2, 0.8]])
    theta, _, outputs = _theta_outputs(model, x)
    assert np.linalg.norm(jax.jacrev(outputs)(theta)) > 0
    assert count_conservation_laws(model, x) == 16 - 1


def test_dead_unit_is_non_generic():
    # a unit off on every sample (bias -100): its d + 2 weights (w, b, v) have zero gradient in every
    # field, so each one is conserved: d + 2 laws where a live unit has 1
    d, width = 3, 4
    model = gf.ShallowReLU(d, width, bias=True, key=jr.PRNGKey(0))
    model = eqx.tree_at(lambda m: m.b, model, model.b.at[0].set(-100.0))
    x = jr.normal(jr.PRNGKey(1), (40, d))
    assert np.all(x @ model.W[0] + model.b[0] < 0)
    live = (width - 1) * (d + 2)
    assert _jacobian_rank(model, x) == live - (width - 1)  # the live units are seen in full
    assert count_conservation_laws(model, x) == (width - 1) + (d + 2)


@pytest.mark.parametrize(
    "make, n, d",
    [
        pytest.param(
            lambda: eqx.nn.MLP(2, 1, 3, 1, activation=jnp.tanh, key=jr.PRNGKey(0)), 3, 2, marks=pytest.mark.slow
        ),
        pytest.param(lambda: gf.MLP(4, (3, 2), key=jr.PRNGKey(5)), 8, 4, marks=pytest.mark.slow),
        (lambda: LowRank(jr.normal(jr.PRNGKey(1), (3, 2)), jr.normal(jr.PRNGKey(2), (2, 2))), 2, 2),
    ],
)
def test_pruned_levels_match_full_enumeration(make, n, d):
    model = make()
    x = jr.normal(jr.PRNGKey(7), (n, d))
    _, info = count_conservation_laws(model, x, return_info=True)
    naive = _naive_ranks(model, x, info.depth)
    assert [lev["rank"] for lev in info.levels] == naive


def test_tanh_has_no_law():
    # tanh is not positively homogeneous: with as many samples as parameters the output Jacobian has full
    # rank D, so V(theta) = R^D and no function is conserved for every loss
    model = eqx.nn.MLP(2, 1, 3, 1, activation=jnp.tanh, key=jr.PRNGKey(0))
    x = jr.normal(jr.PRNGKey(1), (40, 2))
    assert _jacobian_rank(model, x) == 13
    count, info = count_conservation_laws(model, x, return_info=True)
    assert count == 0 and info.depth == 1


@pytest.mark.slow
def test_tanh_few_samples_brackets_fill_everything():
    # with 3 samples V has rank 3, and the brackets reach R^13 at level 3 (the same ranks as the full
    # enumeration in test_pruned_levels_match_full_enumeration): no law for these data either
    model = eqx.nn.MLP(2, 1, 3, 1, activation=jnp.tanh, key=jr.PRNGKey(0))
    x = jr.normal(jr.PRNGKey(1), (3, 2))
    count, info = count_conservation_laws(model, x, return_info=True)
    assert count == 0 and [lev["rank"] for lev in info.levels] == [3, 6, 13]


def test_float32_model_is_counted_in_float64():
    U, V = jr.normal(jr.PRNGKey(1), (4, 2)), jr.normal(jr.PRNGKey(2), (3, 2))
    x = jr.normal(jr.PRNGKey(3), (5, 3))
    c64 = count_conservation_laws(LowRank(U, V), x)
    c32 = count_conservation_laws(LowRank(U.astype(jnp.float32), V.astype(jnp.float32)), x.astype(jnp.float32))
    assert c64 == c32 == 3


def test_unclear_gap_raises_and_is_reported():
    model = LowRank(jr.normal(jr.PRNGKey(1), (4, 2)), jr.normal(jr.PRNGKey(2), (3, 2)))
    x = jr.normal(jr.PRNGKey(3), (5, 3))
    # a cut placed among the level-1 singular values themselves (all of them are >= 1e-2 here)
    with pytest.raises(ValueError, match="not clear"):
        count_conservation_laws(model, x, rtol=0.3)
    count, info = count_conservation_laws(model, x, rtol=0.3, min_gap=None, return_info=True)
    assert info.min_gap < 1e3 and count > 3


def test_max_depth_too_small_raises():
    model = LowRank(jr.normal(jr.PRNGKey(1), (4, 2)), jr.normal(jr.PRNGKey(2), (3, 2)))
    x = jr.normal(jr.PRNGKey(3), (5, 3))
    for depth in (1, 2):  # level 2 still adds the bracket of the two columns
        with pytest.raises(ValueError, match="max_depth"):
            count_conservation_laws(model, x, max_depth=depth)
    assert count_conservation_laws(model, x, max_depth=3) == 3


@pytest.mark.slow
@pytest.mark.parametrize("case", ["shallow", "linear"])
def test_about_200_parameters(case):
    if case == "shallow":  # D = 18 * (9 + 1) = 180, 400 samples >= 2 * width * d
        model = gf.ShallowReLU(9, 18, key=jr.PRNGKey(0))
        x, expected, D = jr.normal(jr.PRNGKey(1), (400, 9)), 18, 180
        assert _jacobian_rank(model, x) == D - 18
    else:  # D = 5 * (20 + 20) = 200
        model = LowRank(jr.normal(jr.PRNGKey(1), (20, 5)), jr.normal(jr.PRNGKey(2), (20, 5)))
        x, expected, D = jr.normal(jr.PRNGKey(3), (25, 20)), 15, 200
    count, info = count_conservation_laws(model, x, return_info=True)
    assert count == expected and info.n_params == D
