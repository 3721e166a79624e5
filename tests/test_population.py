"""Gaussian population loss (gflow.population): closed form vs Monte Carlo, derivatives vs finite
differences, the finite-sample loss converging to it, and the non-smooth points."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gflow as gf
from gflow.population import arccos_kernel, gaussian_population, population_loss, toy_population, toy_teacher

N_MC = 10**6


def _net(W, V):
    """A bias-free ShallowReLU with the given weights (W (l, d), V (e, l))."""
    W, V = jnp.asarray(W, float), jnp.atleast_2d(jnp.asarray(V, float))
    shell = gf.ShallowReLU(W.shape[1], W.shape[0], V.shape[0], key=jr.PRNGKey(0))
    return eqx.tree_at(lambda m: (m.W, m.V), shell, (W, V))


def _random_pair(i):
    """Pair i of the issue's 50: student and teacher widths 1-8, d = 2-10, 1 or 2 outputs."""
    rng = np.random.default_rng(1000 + i)
    d, ls, lt = int(rng.integers(2, 11)), int(rng.integers(1, 9)), int(rng.integers(1, 9))
    e = 1 if i % 5 else 2
    student = _net(rng.normal(size=(ls, d)) / np.sqrt(d), rng.normal(size=(e, ls)) / np.sqrt(ls))
    teacher = _net(rng.normal(size=(lt, d)) / np.sqrt(d), rng.normal(size=(e, lt)) / np.sqrt(lt))
    return student, teacher


def _mc(student, teacher, seed):
    """Mean and standard error of 1/2 ||f(x) - g(x)||^2 over N_MC Gaussian draws (NumPy: an
    independent implementation of the networks, and no compilation per shape)."""
    x = np.random.default_rng(seed).standard_normal((N_MC, student.in_size))

    def net(m):
        return np.maximum(x @ np.asarray(m.W).T, 0.0) @ np.asarray(m.V).T

    ell = 0.5 * np.sum((net(student) - net(teacher)) ** 2, axis=1)
    return ell.mean(), ell.std() / np.sqrt(N_MC)


def _check_mc(student, teacher, seed):
    mean, se = _mc(student, teacher, seed)
    closed = _loss(student, teacher)
    # the sample mean of 10^6 i.i.d. losses is normal to high accuracy: 4 standard errors fail
    # with probability ~6e-5 per pair (the draws are fixed by the key, so the test is deterministic)
    assert abs(float(closed - mean)) <= 4 * float(se), (float(closed), float(mean), float(se))


@pytest.mark.parametrize("i", range(10))
def test_closed_form_vs_monte_carlo(i):
    _check_mc(*_random_pair(i), i)


@pytest.mark.slow
@pytest.mark.parametrize("i", range(10, 50))
def test_closed_form_vs_monte_carlo_all_50(i):
    _check_mc(*_random_pair(i), i)


def test_monte_carlo_degenerate_pairs():
    """Collinear, antiparallel and zero neurons: the closed form still equals the expectation."""
    u = np.array([0.6, -0.8, 0.3])
    student = _net([2 * u, -u, np.zeros(3), [0.1, 0.2, -0.5]], [[0.5, 1.0, 3.0, -0.7]])
    teacher = _net([u, [0.0, 0.0, 1.0]], [[1.0, -1.0]])
    _check_mc(student, teacher, 99)


def test_kernel_special_values():
    """K(w, w) = ||w||^2/2, K(w, -w) = 0, K(w, u) = 1/(2 pi) for orthonormal w, u, K(0, u) = 0."""
    w = jnp.array([0.3, -1.2, 0.7])
    assert jnp.allclose(arccos_kernel(w, w), 0.5 * w @ w, rtol=1e-15)
    assert jnp.allclose(arccos_kernel(w, 3 * w), 1.5 * w @ w, rtol=1e-15)
    assert abs(float(arccos_kernel(w, -2 * w))) < 1e-16
    e1, e2 = jnp.eye(3)[0], jnp.eye(3)[1]
    assert jnp.allclose(arccos_kernel(e1, e2), 1 / (2 * np.pi), rtol=1e-15)
    assert float(arccos_kernel(jnp.zeros(3), w)) == 0.0


def _flat_loss(student, teacher):
    params, static = eqx.partition(student, eqx.is_inexact_array)
    theta, unravel = ravel_pytree(params)
    return theta, lambda t: population_loss(eqx.combine(unravel(t), static), teacher)


# module-level compiled helpers: one compilation per shape, shared by the tests
_loss = jax.jit(population_loss)
_grad = jax.jit(jax.grad(population_loss))


@jax.jit
def _grad_and_fd(student, teacher, h):
    """(grad L, central differences of L with step h along every parameter), flattened."""
    theta, f = _flat_loss(student, teacher)
    fd = jax.vmap(lambda e: (f(theta + e) - f(theta - e)) / (2 * h))(h * jnp.eye(theta.size))
    return jax.grad(f)(theta), fd


@jax.jit
def _hessian_and_fd(student, teacher, h):
    """(Hessian of L, central differences of grad L with step h), flattened."""
    theta, f = _flat_loss(student, teacher)
    g = jax.grad(f)
    fd = jax.vmap(lambda e: (g(theta + e) - g(theta - e)) / (2 * h))(h * jnp.eye(theta.size))
    return jax.hessian(f)(theta), fd


def _collinear_pair(d):
    """Student neurons 2u and -u against a teacher neuron u: exactly collinear / antiparallel."""
    u = np.array([0.6, -0.8, 0.0][:d])
    student = _net([2 * u, -u, [0.3, 0.9, 0.1][:d]], [[0.5, 1.0, -0.2]])
    teacher = _net([u, [0.0, 1.0, 0.5][:d]], [[1.0, -1.0]])
    return student, teacher


@pytest.mark.parametrize("i", range(3))
def test_gradient_vs_finite_differences(i):
    """Autodiff through the closed form (custom JVP) vs central differences, 1e-7 relative.

    Step h = 1e-4: truncation h^2 |L'''| / 6 ~ 1e-9 and rounding eps |L| / h ~ 1e-12, both far
    below 1e-7 of the gradient norm (which is O(0.1-1) here)."""
    g, fd = _grad_and_fd(*_random_pair(i), 1e-4)
    assert float(jnp.linalg.norm(g - fd)) <= 1e-7 * float(jnp.linalg.norm(g))


def test_gradient_at_collinear_pairs():
    """At exactly collinear and antiparallel student-teacher pairs (where autodiff of the naive
    arccos formula gives NaN) the gradient is finite and matches central differences (K is C^2
    there, so the central difference still has error O(h^2))."""
    g, fd = _grad_and_fd(*_collinear_pair(2), 1e-4)
    assert np.all(np.isfinite(g))
    assert float(jnp.linalg.norm(g - fd)) <= 1e-7 * float(jnp.linalg.norm(g))


@pytest.mark.parametrize("collinear", [False, True])
def test_hessian_vs_finite_differences_of_gradient(collinear):
    """jax.hessian through the custom JVP vs central differences of the gradient (h = 1e-5: error
    h^2 |L''''| ~ 1e-10 at a generic point; at a collinear pair L is only C^2 and the difference
    has error O(h) ~ 1e-5 at most, so the tolerance there is 1e-4 relative)."""
    H, fd = _hessian_and_fd(*(_collinear_pair(3) if collinear else _random_pair(1)), 1e-5)
    assert np.all(np.isfinite(H))
    tol = 1e-4 if collinear else 1e-7
    assert float(jnp.linalg.norm(H - fd)) <= tol * float(jnp.linalg.norm(H))


def test_no_nan_at_zero_neuron():
    """A neuron with w = 0: value as without it, finite gradient and Hessian, and the w-gradient
    of that neuron is 0 (what autodiff of a finite-sample loss gives with relu'(0) = 0)."""
    teacher = toy_teacher()
    student = _net([[0.0, 0.0], [1.0, 0.2]], [[0.7, -0.4]])
    alone = _net([[1.0, 0.2]], [[-0.4]])
    assert jnp.allclose(_loss(student, teacher), _loss(alone, teacher), rtol=1e-15)
    g = _grad(student, teacher)
    assert np.all(np.isfinite(g.W)) and np.all(np.isfinite(g.V))
    assert np.all(g.W[0] == 0.0) and g.V[0, 0] == 0.0
    assert np.all(np.isfinite(_hessian_and_fd(student, teacher, 1e-5)[0]))


def test_conservation_identity():
    """<w_k, dL/dw_k> = <v_k, dL/dv_k> for every neuron (so the population flow conserves
    delta_k = ||w_k||^2 - ||v_k||^2, the theory page section 1)."""
    for i in range(3):
        student, teacher = _random_pair(i)
        g = _grad(student, teacher)
        lhs = jnp.sum(student.W * g.W, axis=1)
        rhs = jnp.sum(student.V * g.V, axis=0)
        assert jnp.allclose(lhs, rhs, rtol=0, atol=1e-14)


def _per_sample_se(model, data):
    ell = 0.5 * jnp.sum((jax.vmap(model)(data.x_train) - data.y_train) ** 2, axis=1)
    return float(jnp.std(ell) / jnp.sqrt(ell.size))


@pytest.mark.parametrize("n", [10**3, 10**4, 10**5, 10**6])
def test_finite_sample_loss_converges(n):
    """gf.mse on gf.teacher_student(teacher, n, key, noise) (via .sample) is within 4 standard
    errors of the population loss for growing n (its error shrinks like n^-1/2)."""
    student, teacher = _random_pair(7)
    pop = gaussian_population(teacher, noise=0.1)
    data = pop.sample(n, jr.PRNGKey(n))
    ref = gf.teacher_student(teacher, n, jr.PRNGKey(n), noise=0.1, n_test=0)
    assert jnp.array_equal(data.x_train, ref.x_train) and jnp.array_equal(data.y_train, ref.y_train)
    finite = gf.mse(jax.vmap(student)(data.x_train), data.y_train)
    assert abs(float(finite - pop.loss(student))) <= 4 * _per_sample_se(student, data)


def test_finite_sample_gradient_converges():
    """Every component of the finite-sample gradient (n = 2 10^5) is within 4.5 standard errors
    of the population gradient (per-sample gradients give the SE; 4.5 SE over <= 30 components
    fails with probability ~2e-4)."""
    student, teacher = _random_pair(2)
    pop = gaussian_population(teacher)
    data = pop.sample(200_000, jr.PRNGKey(5))

    def one(m, x, y):
        return 0.5 * jnp.sum((m(x) - y) ** 2)

    per = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(student, data.x_train, data.y_train)
    g = _grad(student, pop.teacher)
    for a, b in ((per.W, g.W), (per.V, g.V)):
        mean, se = jnp.mean(a, axis=0), jnp.std(a, axis=0) / np.sqrt(a.shape[0])
        assert np.all(np.abs(mean - b) <= 4.5 * se)


def test_toy_population_is_the_toy_problem():
    """gf.toy's 8000-point data are draws of toy_population: its loss on 10^6 toy points is
    within 4 SE of the closed form (and the teacher reproduces the toy targets exactly)."""
    data = gf.toy(N_MC, jr.PRNGKey(3), n_test=0)
    teacher = toy_teacher()
    assert jnp.allclose(jax.vmap(teacher)(data.x_train), data.y_train, rtol=0, atol=0)
    student = _net([[0.9, -0.3], [0.2, 1.1], [-0.5, 0.4]], [[0.8, -0.6, 0.3]])
    finite = gf.mse(jax.vmap(student)(data.x_train), data.y_train)
    assert abs(float(finite - toy_population().loss(student))) <= 4 * _per_sample_se(student, data)


def test_padding_and_noise():
    """d > teacher.in_size: the teacher reads the first coordinates; noise adds noise^2 e / 2."""
    teacher = toy_teacher()
    small = _net([[0.9, -0.3], [0.2, 1.1]], [[0.8, -0.6]])
    big = _net([[0.9, -0.3, 0.0, 0.0], [0.2, 1.1, 0.0, 0.0]], [[0.8, -0.6]])
    pop4 = gaussian_population(teacher, d=4, noise=0.2)
    assert pop4.in_size == 4 and pop4.out_size == 1 and not pop4.has_test
    base = toy_population().loss(small)
    assert jnp.allclose(pop4.loss(big), base + 0.5 * 0.2**2, rtol=1e-14)
    _check_mc(_net([[0.9, -0.3, 0.5, 0.0], [0.2, 1.1, 0.0, -0.7]], [[0.8, -0.6]]), pop4.teacher, 4)


def test_errors():
    biased = gf.ShallowReLU(2, 3, bias=True, key=jr.PRNGKey(0))
    student = gf.ShallowReLU(2, 3, key=jr.PRNGKey(1))
    with pytest.raises(ValueError, match="bias"):
        gaussian_population(biased)
    with pytest.raises(ValueError, match="bias"):
        toy_population().loss(biased)
    with pytest.raises(ValueError, match="mse"):
        toy_population().loss(student, gf.bce)
    with pytest.raises(ValueError, match="d must be"):
        gaussian_population(toy_teacher(), d=1)
    with pytest.raises(ValueError, match="inputs"):
        toy_population(3).loss(student)
    with pytest.raises(ValueError, match="out_size"):
        population_loss(gf.ShallowReLU(2, 3, 2, key=jr.PRNGKey(2)), toy_teacher())
