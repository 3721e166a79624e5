"""FixedOutputReLU (gflow.nets.fixed_output): only W trains. Same function as its ShallowReLU, the
population gradient is the W-block of the ShallowReLU's, the flow leaves v alone and equals an
independent solve of dW/dt = -grad_W L, and end points are classified without rescaling
directions (Safran & Shamir's set-up)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import gflow as gf
from gflow.conservation import NoConservedQuantities
from gflow.endpoints import classify_endpoint, data_objective


def _teacher(k):
    shell = gf.ShallowReLU(k, k, key=jr.PRNGKey(0))
    return eqx.tree_at(lambda m: (m.W, m.V), shell, (jnp.eye(k), jnp.ones((1, k))))


def test_only_W_is_a_parameter_and_the_function_is_the_shallow_one():
    net = gf.ShallowReLU(4, 3, key=jr.PRNGKey(1))
    fixed = gf.fixed_output(net)
    leaves = jax.tree_util.tree_leaves(eqx.filter(fixed, eqx.is_inexact_array))
    assert len(leaves) == 1 and leaves[0].shape == (3, 4)
    x = jr.normal(jr.PRNGKey(2), (50, 4))
    assert np.allclose(jax.vmap(fixed)(x), jax.vmap(net)(x), rtol=0, atol=1e-14)
    assert fixed.v == tuple(float(a) for a in net.V[0])
    ones = gf.FixedOutputReLU(4, 3, key=jr.PRNGKey(1))
    assert ones.v == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="one per unit"):
        gf.FixedOutputReLU(4, 3, v=[1.0, 2.0], key=jr.PRNGKey(1))
    with pytest.raises(ValueError, match="finite"):
        gf.FixedOutputReLU(4, 3, v=float("nan"), key=jr.PRNGKey(1))
    with pytest.raises(ValueError, match="one output and no bias"):
        gf.fixed_output(gf.ShallowReLU(4, 3, 2, key=jr.PRNGKey(1)))


def test_population_gradient_is_the_W_block():
    """grad_W of the FixedOutputReLU's population loss = the W-block of the ShallowReLU's gradient
    (V fixed): the closed form differentiates W only."""
    pop = gf.gaussian_population(_teacher(4))
    fixed = gf.FixedOutputReLU(4, 4, init="xavier", key=jr.PRNGKey(3))
    g_fixed = jax.grad(lambda m: pop.loss(m))(fixed).W
    g_full = jax.grad(lambda m: pop.loss(m))(fixed.as_shallow())
    assert np.allclose(g_fixed, g_full.W, rtol=1e-13, atol=1e-15)
    assert float(pop.loss(fixed)) == float(pop.loss(fixed.as_shallow()))


def test_flow_moves_W_only_and_matches_an_independent_solve():
    """gf.gradient_flow on a FixedOutputReLU (warns: no conserved quantities, true here) vs a plain
    Diffrax solve of dW/dt = -grad_W L(ShallowReLU(W, V = 1)) at t = 2, both at 1e-10."""
    k = 3
    pop = gf.gaussian_population(_teacher(k))
    fixed = gf.FixedOutputReLU(k, k, init="xavier", key=jr.PRNGKey(5))
    with pytest.warns(NoConservedQuantities):
        traj = gf.gradient_flow(fixed, pop, "mse", 2.0, rtol=1e-10, atol=1e-10)
    final = traj.final
    assert final.v == fixed.v and not np.allclose(final.W, fixed.W)
    shell = fixed.as_shallow()

    def field(t, W, args):
        return -jax.grad(lambda w: pop.loss(eqx.tree_at(lambda m: m.W, shell, w)))(W)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Dopri8(),
        0.0,
        2.0,
        None,
        fixed.W,
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12),
    )
    assert sol.ys is not None
    assert np.allclose(final.W, sol.ys[-1], rtol=0, atol=1e-8)


def test_endpoint_of_the_orthonormal_teacher_has_no_flat_direction():
    """At W = a permutation of I (the teacher) the loss is 0 and the Hessian is the Gauss-Newton
    matrix E[J J^T], J_(k,i) = 1[x_k > 0] x_i: positive definite (no rescaling symmetry), so
    n_zero = 0; the loss is invariant under permuting units only."""
    k = 5
    pop = gf.gaussian_population(_teacher(k))
    fixed = eqx.tree_at(lambda m: m.W, gf.FixedOutputReLU(k, k, key=jr.PRNGKey(0)), jnp.eye(k)[::-1])
    e = classify_endpoint(fixed, data_objective("mse"), pop)
    assert e.kind == "global_min" and e.n_zero == 0 and e.n_units == k and e.n_duplicate == 0
    x = np.random.default_rng(0).standard_normal((400_000, k))
    J = ((x[:, ::-1] > 0)[:, :, None] * x[:, None, :]).reshape(len(x), -1)  # unit j has w_j = e_(k-1-j)
    gn = J.T @ J / len(x)
    H = np.asarray(jax.hessian(lambda W: pop.loss(eqx.tree_at(lambda m: m.W, fixed, W)))(fixed.W)).reshape(k * k, -1)
    se = np.sqrt(np.maximum((J**2).T @ J**2 / len(x) - gn**2, 0.0) / len(x))
    assert np.all(np.abs(H - gn) <= 5 * se + 1e-12)
