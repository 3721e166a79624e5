"""End-point classification (gflow.endpoints): known global minima, a saddle with a closed-form
spectrum, Newton polish to machine precision, collapsed neurons, finite data sets."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gflow as gf
from gflow.endpoints import classify_endpoint, data_objective
from gflow.population import gaussian_population, toy_population

OBJ = data_objective("mse")
TOY = toy_population()


def _net(W, V):
    W, V = jnp.asarray(W, float), jnp.atleast_2d(jnp.asarray(V, float))
    shell = gf.ShallowReLU(W.shape[1], W.shape[0], V.shape[0], key=jr.PRNGKey(0))
    return eqx.tree_at(lambda m: (m.W, m.V), shell, (W, V))


def _perturb(model, size, seed):
    leaves = jax.tree_util.tree_leaves(model)
    keys = iter(jr.split(jr.PRNGKey(seed), len(leaves)))
    return jax.tree_util.tree_map(lambda x: x + size * jr.normal(next(keys), x.shape), model)


def _toy_global_min(a=1.7, b=0.6):
    """relu(x1) - relu(x2) by permuted, rescaled neurons: neuron 0 = (a e2, -1/a), 1 = (b e1, 1/b)."""
    return _net([[0.0, a], [b, 0.0]], [[-1 / a, 1 / b]])


def _toy_saddle(al=1.3, be=0.8):
    """v = 0 and w_1 = al (1,1)/sqrt2, w_2 = -be (1,1)/sqrt2 on the toy population.

    Critical: dL/dv_k = -E[g relu(w_k.x)] = -(K(w_k, e1) - K(w_k, e2)) = 0 because w_k is
    equiangular to e1 and e2; dL/dw_k carries a factor v_k = 0. Hessian (v_k = 0 kills the
    w-w block and the v_k-w_j cross terms for j != k; K(w_1, w_2) = 0 for antiparallel w): per
    neuron, d2L/dv_k^2 = K(w_k, w_k) = |w_k|^2/2 and d2L/dv_k dw_k = -grad_w(K(w,e1) - K(w,e2))
    = -c_k (e1 - e2), with c = (pi - theta)/(2 pi): 3/8 (theta = pi/4), 1/8 (theta = 3 pi/4).
    On (v_k, (e1-e2)/sqrt2) the block is [[A, -c sqrt2], [-c sqrt2, 0]], A = |w_k|^2/2, so the
    eigenvalues are (A +- sqrt(A^2 + 8 c^2)) / 2, and the radial direction of w_k gives 0:
    two negative eigenvalues, two zero (one per neuron), two positive. Loss E[g^2]/2 = (1 - 1/pi)/2.
    """
    s = 1 / np.sqrt(2)
    model = _net([[al * s, al * s], [-be * s, -be * s]], [[0.0, 0.0]])
    eig = []
    for c, norm in ((3 / 8, al), (1 / 8, be)):
        A = norm**2 / 2
        eig += [(A + np.sqrt(A * A + 8 * c * c)) / 2, (A - np.sqrt(A * A + 8 * c * c)) / 2, 0.0]
    return model, np.sort(eig)


def test_toy_global_minimum():
    e = classify_endpoint(_toy_global_min(), OBJ, TOY)
    assert e.kind == "global_min" and e.critical
    assert abs(e.loss) < 1e-15 and e.grad_norm < 1e-14
    # one flat direction per hidden neuron (rescaling), nothing negative
    assert e.n_zero == e.n_units == 2 and e.n_negative == 0


def test_toy_saddle_closed_form_spectrum():
    model, eig = _toy_saddle()
    e = classify_endpoint(model, OBJ, TOY)
    assert e.kind == "saddle" and e.critical and e.grad_norm < 1e-15
    assert e.n_negative == 2 and e.n_zero == 2
    assert np.allclose(e.loss, (1 - 1 / np.pi) / 2, rtol=1e-14)
    assert np.allclose(e.eigenvalues, eig, rtol=0, atol=1e-14)


@pytest.mark.parametrize("which", ["saddle", "global_min"])
def test_newton_polishes_to_machine_precision(which):
    """From a point 1e-3 away, Newton lands on a critical point with |grad L| ~ 1e-16 and the
    same class; a saddle stays a saddle with the closed-form spectrum at its polished scales."""
    start = _toy_saddle()[0] if which == "saddle" else _toy_global_min()
    e0 = classify_endpoint(_perturb(start, 1e-3, 1), OBJ, TOY, polish=False)
    assert not e0.critical and e0.grad_norm > 1e-6
    e = classify_endpoint(_perturb(start, 1e-3, 1), OBJ, TOY)
    assert e.polished and e.grad_norm < 1e-13 and e.kind == which
    assert e.moved < 1e-2 and e.newton_steps <= 10
    if which == "saddle":
        W = np.asarray(e.model.W)
        al, be = np.linalg.norm(W, axis=1)
        assert np.allclose(W[0], W[0].mean(), atol=1e-14) and np.allclose(W[1], W[1].mean(), atol=1e-14)
        assert np.allclose(e.eigenvalues, _toy_saddle(al, be)[1], rtol=0, atol=1e-12)


def _teacher_pair():
    rng = np.random.default_rng(3)
    U, a = rng.normal(size=(3, 5)), np.array([[1.0, -0.7, 0.5]])
    teacher = _net(U, a)
    perm, alpha = np.array([2, 0, 1]), np.array([0.5, 1.3, 2.0])
    student = _net(alpha[:, None] * U[perm], a[:, perm] / alpha)
    return teacher, student


def test_teacher_student_global_minimum_and_gauss_newton_hessian():
    """Student = teacher up to permutation and rescaling (d = 5, 3 neurons): a global minimum with
    exactly 3 flat directions. At f = g the Hessian is the Gauss-Newton matrix E[J J^T],
    J = grad_theta f(x): a Monte Carlo estimate of it (10^6 samples, NumPy) agrees entrywise
    within 5 standard errors (this checks the second derivatives of the closed form at exactly
    collinear student-teacher pairs)."""
    teacher, student = _teacher_pair()
    pop = gaussian_population(teacher)
    e = classify_endpoint(student, OBJ, pop)
    assert e.kind == "global_min" and e.n_zero == e.n_units == 3 and e.n_negative == 0

    params, static = eqx.partition(student, eqx.is_inexact_array)
    theta, unravel = ravel_pytree(params)
    H = np.asarray(jax.jit(jax.hessian(lambda t: pop.loss(eqx.combine(unravel(t), static))))(theta))
    assert np.allclose(np.linalg.eigvalsh(H), e.eigenvalues, rtol=0, atol=1e-13)

    W, V = np.asarray(student.W), np.asarray(student.V)[0]
    x = np.random.default_rng(0).standard_normal((10**6, 5))
    z = x @ W.T
    # parameter order of ravel_pytree: W row-major, then V
    J = np.concatenate([(((z > 0) * V)[:, :, None] * x[:, None, :]).reshape(len(x), -1), np.maximum(z, 0)], axis=1)
    gn = J.T @ J / len(x)
    se = np.sqrt(np.maximum((J**2).T @ J**2 / len(x) - gn**2, 0.0) / len(x))  # of each entry's mean
    assert np.all(np.abs(H - gn) <= 5 * se + 1e-12)


def test_collapsed_units_global_minimum():
    """The toy global minimum plus a third neuron collapsed (w = 1e-9 e1, v = 0.8): the unit is
    snapped to w = 0 and frozen; the rest is the 2-neuron global minimum."""
    gm = _toy_global_min()
    model = _net(np.vstack([gm.W, [1e-9, 0.0]]), np.hstack([gm.V, [[0.8]]]))
    e = classify_endpoint(model, OBJ, TOY)
    assert e.n_collapsed == 1 and e.n_units == 2 and e.n_zero == 2 and e.kind == "global_min"
    assert float(jnp.abs(e.model.W[2]).max()) == 0.0 and abs(e.escape_min) < 1e-8


def test_all_collapsed_is_a_saddle():
    """All neurons collapsed on the toy population: f = 0, the one-sided slope out of w_k = 0
    along a unit omega is v_k E[-g relu(omega.x)] = -v_k (K(omega, e1) - K(omega, e2)), which is
    negative for v_k > 0 at omega = e1: a descent direction, so a saddle. The reported minimum
    slope lies between the slope at e1 (a sampled direction) and the exact minimum over the
    circle (closed form on a fine grid)."""
    v = np.array([0.8, 0.5])
    e = classify_endpoint(_net(np.zeros((2, 2)), [v]), OBJ, TOY)
    assert e.n_collapsed == 2 and e.n_units == 0 and e.kind == "saddle"
    phi = np.linspace(0, 2 * np.pi, 100_001)

    def J(t):  # 2 pi K(omega, e) for unit vectors at angle t
        return np.sin(t) + (np.pi - t) * np.cos(t)

    ang1 = np.abs(np.angle(np.exp(1j * phi)))
    ang2 = np.abs(np.angle(np.exp(1j * (phi - np.pi / 2))))
    slope = -v.max() * (J(ang1) - J(ang2)) / (2 * np.pi)
    at_e1 = -v.max() * (np.pi - 1) / (2 * np.pi)
    assert slope.min() - 1e-9 <= e.escape_min <= at_e1 + 1e-9


def test_finite_data_global_minimum():
    """On a finite teacher-student sample (n = 300 > number of parameters) the teacher itself is
    a global minimum with one flat direction per neuron (the Gauss-Newton matrix J J^T / n has
    the rescaling kernel only)."""
    teacher, student = _teacher_pair()
    data = gf.teacher_student(teacher, 300, jr.PRNGKey(0), n_test=0)
    e = classify_endpoint(student, OBJ, data)
    assert e.kind == "global_min" and e.n_zero == 3 and e.n_negative == 0


def test_columns():
    e = classify_endpoint(_toy_saddle()[0], OBJ, TOY)
    cols = e.columns()
    assert {"grad_norm", "hess_min", "n_negative", "n_zero", "critical", "kind"} <= set(cols)
    assert "model" not in cols and "eigenvalues" not in cols


def test_duplicated_units_add_flat_directions():
    """A unit split in two on one direction, w_1 = s_1 w, w_2 = s_2 w (s_k > 0), with
    s_1 v_1 + s_2 v_2 = v, realizes the 1-unit function v relu(w.x): same loss, still critical,
    and moving output mass between the copies (v_1 + t/s_1, v_2 - t/s_2) leaves f unchanged, an
    exact Hessian null vector beyond the two rescalings.

    (a) At the spurious minimum of the 1-unit toy student (v > 0: one convex kink cannot fit
    relu(x1) - relu(x2); it is where the toy flows whose output weights share a sign end, loss
    0.18886) the copies give n_zero = n_units + n_duplicate = 3 and no negative eigenvalue.
    (b) At a global minimum (1-unit teacher, d = 3) the residual vanishes, so the Hessian is the
    Gauss-Newton matrix E[J J^T]: the first-order change of f spans only
    {relu'(w.x) x.a : a in R^d}, rank d out of 2 (d + 1) parameters, so n_zero = 2 (d + 1) - d
    = n_units + n_duplicate d = 5."""
    one = gf.gradient_flow(_net([[1.0, 0.3]], [[0.9]]), TOY, "mse", float("inf")).endpoint
    assert one.kind == "local_min" and one.n_zero == one.n_units == 1 and one.n_duplicate == 0
    w, v = np.asarray(one.model.W)[0], float(one.model.V[0, 0])
    for s1, s2 in ((1.0, 1.0), (0.5, 2.0)):
        two = _net([s1 * w, s2 * w], [[0.3 * v / s1, 0.7 * v / s2]])
        e = classify_endpoint(two, OBJ, TOY, polish=False)
        assert e.kind == "local_min" and abs(e.loss - one.loss) <= 1e-14
        assert (e.n_units, e.n_duplicate, e.n_zero, e.n_negative) == (2, 1, 3, 0)
        params, static = eqx.partition(two, eqx.is_inexact_array)
        theta, unravel = ravel_pytree(params)
        H = jax.hessian(lambda t, s=static, u=unravel: TOY.loss(eqx.combine(u(t), s)))(theta)
        transfer = jnp.zeros_like(theta).at[-2:].set(jnp.array([1 / s1, -1 / s2]))  # (W row-major, then V)
        assert float(jnp.linalg.norm(H @ transfer)) <= 1e-13 * float(jnp.abs(H).max())

    u = np.array([0.6, -0.8, 0.0])
    pop = gaussian_population(_net([u], [[1.3]]))
    e = classify_endpoint(_net([2 * u, 0.5 * u], [[0.4 * 1.3 / 2, 0.6 * 1.3 / 0.5]]), OBJ, pop)
    assert e.kind == "global_min" and (e.n_units, e.n_duplicate, e.n_zero) == (2, 1, 2 + 3)
