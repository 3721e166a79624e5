"""Topology of shallow invariant sets (THEORY.md §1): Theorem 1, Corollaries 1-3, App. F."""

import itertools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from topo_nets import mlp, shallow, shallow_batch, shallow_with_delta

import gflow as gf
from gflow.topology import shallow as tp


def neuron_poincare(d, e, sign):
    """Poincaré polynomial (coefficients, lowest degree first) of one neuron's quadric.

    delta > 0: S^{d-1} x R^e; delta < 0: R^d x S^{e-1}; delta = 0: a cone (contractible).
    H_*(S^0) = Z^2 in degree 0; H_*(S^k) = Z in degrees 0 and k for k >= 1.
    """

    def sphere(k):
        if k == 0:
            return np.array([2])
        p = np.zeros(k + 1, dtype=np.int64)
        p[0] = p[k] = 1
        return p

    return {1: sphere(d - 1), -1: sphere(e - 1), 0: np.array([1])}[sign]


def betti_by_kunneth(d, e, signs):
    """Künneth: the Poincaré polynomial of a product is the product of the factors'."""
    p = np.array([1], dtype=np.int64)
    for s in signs:
        p = np.polymul(p[::-1], neuron_poincare(d, e, s)[::-1])[::-1]  # polymul wants highest first
    return [int(x) for x in p]


@pytest.mark.parametrize("d,e,bias", list(itertools.product((1, 2, 3), (1, 2, 3), (False, True))))
def test_betti_numbers_theorem1(d, e, bias):
    rng = np.random.default_rng(100 * d + 10 * e + bias)
    n_cases = 0
    for n_pos, n_neg, n_zero in itertools.product(range(7), repeat=3):
        if n_pos + n_neg + n_zero > 6:
            continue
        signs = [1] * n_pos + [-1] * n_neg + [0] * n_zero
        rng.shuffle(signs)
        delta = np.array(signs, dtype=float) * rng.uniform(0.1, 3.0, len(signs))
        dd = d + bias  # Appendix E: a bias is one more incoming weight
        expected = betti_by_kunneth(dd, e, signs)
        assert tp.betti_numbers(d, e, delta, bias) == expected, (d, e, bias, signs)
        assert tp.poincare_polynomial(d, e, delta, bias=bias) == expected
        assert tp.n_components(d, e, delta, bias) == expected[0]
        assert tp.neuron_counts(d, e, delta, bias) == (n_pos, n_neg, n_zero)
        n_cases += 1
    assert n_cases == 84


def test_closed_form_examples():
    # d=2, e=1: P = (1+t)^{n+} * 2^{n-}
    assert tp.betti_numbers(2, 1, [1.0, 1.0, -1.0]) == [2, 4, 2]
    # d=1, e=1: every non-zero neuron doubles b0
    assert tp.betti_numbers(1, 1, [1.0, -1.0, 0.0]) == [4]
    assert tp.n_components(1, 1, [1.0, 2.0], bias=True) == 1  # d -> 2: circles, connected
    assert tp.betti_numbers(3, 2, [1.0, -1.0]) == [1, 1, 1, 1]
    assert tp.betti_numbers(2, 1, []) == [1]


def test_tolerance_classifies_near_zero():
    assert tp.neuron_counts(2, 1, [1e-13, -1e-13, 1.0]) == (1, 0, 2)
    assert tp.neuron_counts(2, 1, [1e-13, -1e-13, 1.0], tol=0.0) == (2, 1, 0)


def test_model_input_matches_sizes():
    model = shallow_with_delta(np.random.default_rng(0), 3, 5, 2, [1.0, -2.0, 0.0, 0.5, -1.0], bias=True)
    delta = np.asarray(gf.conserved(model))
    assert tp.betti_numbers(model) == tp.betti_numbers(3, 2, delta, True)
    assert tp.n_components(model) == tp.n_components(3, 2, delta, bias=True) == 1
    assert tp.neuron_counts(model) == (2, 2, 1)
    with pytest.raises(ValueError, match="ShallowReLU"):
        tp.betti_numbers(mlp([np.ones((3, 2)), np.ones((1, 3))], [None]))
    with pytest.raises(ValueError, match="in_size"):
        tp.betti_numbers(0, 1, [1.0])
    with pytest.raises(ValueError, match="delta"):
        tp.betti_numbers(2, 1)


def test_labels():
    rng = np.random.default_rng(1)
    model = shallow_with_delta(rng, 2, 5, 1, [-1.0, -1.0, 1.0, -2.0, 0.0])
    model = shallow(model.W, None, np.abs(np.asarray(model.V)) * np.array([[1, -1, -1, -1, 1]]))
    np.testing.assert_array_equal(tp.component_label(model), [1, -1, 0, -1, 0])
    assert int(tp.effective_label(model)) == 2
    assert tp.n_effective_components(model) == 4  # n_- + 1 with n_- = 3
    assert tp.n_components(model) == 8
    # batched (leading axis, as in Trajectory.models) and jit-able
    batch = shallow_batch(np.stack([model.W, -model.W]), None, np.stack([model.V, -model.V]))
    labels = jax.jit(tp.component_label)(batch)
    np.testing.assert_array_equal(labels, [[1, -1, 0, -1, 0], [-1, 1, 0, 1, 0]])
    np.testing.assert_array_equal(tp.effective_label(batch), [2, 1])
    with pytest.raises(ValueError, match="out_size"):
        tp.component_label(shallow(np.ones((3, 2)), None, np.ones((2, 3))))
    with pytest.raises(ValueError, match="d = in_size"):
        tp.n_effective_components(1, 1, [1.0, -1.0])
    assert tp.n_effective_components(1, 1, [1.0, -1.0], bias=True) == 2


@pytest.mark.parametrize("d,width,expected", [(2, 2, 0.50), (2, 16, 0.61), (256, 16, 0.0013)])
def test_obstruction_probability_theory_numbers(d, width, expected):
    p = gf.obstruction_probability(d, width, "kaiming")
    assert round(p, 2 if expected > 0.01 else 4) == expected


def test_obstruction_probability_trends():
    # THEORY.md §1 / Fig. 5: large d -> P falls with width; small d -> P grows with width; the
    # high-obstruction region is much larger for Xavier.
    ds, ls = [2**i for i in range(9)], [2**i for i in range(11)]
    P = {(s, d, w): gf.obstruction_probability(d, w, s) for s in ("kaiming", "xavier") for d in ds for w in ls}
    for s in ("kaiming", "xavier"):
        assert P[s, 2, 2] < P[s, 2, 8] < P[s, 2, 32]
        assert P[s, 64, 2] > P[s, 64, 8] > P[s, 64, 32]
        assert P[s, 1, 1] == pytest.approx(0.5)  # v^2 > w^2 with equal variances
    high = {s: sum(P[s, d, w] > 0.5 for d in ds for w in ls) for s in ("kaiming", "xavier")}
    assert high["xavier"] > 1.5 * high["kaiming"]


MC_GRID = [(1, 1), (2, 2), (2, 16), (8, 4), (3, 8)]
MC_GRID_SLOW = [(d, w) for d in (1, 2, 3, 4, 8, 32, 256) for w in (1, 2, 4, 8, 16, 64) if d * w <= 4096]


def _check_mc(d, width, scheme, key, bias=False):
    exact = gf.obstruction_probability(d, width, scheme, bias=bias)
    est, se = gf.obstruction_probability_mc(d, width, scheme, 100_000, key, bias=bias)
    assert abs(est - exact) <= 4 * max(se, 1e-5), (d, width, scheme, exact, est, se)


@pytest.mark.parametrize("d,width", MC_GRID)
def test_obstruction_probability_monte_carlo(d, width, getkey):
    for scheme in ("kaiming", "xavier"):
        _check_mc(d, width, scheme, getkey())


@pytest.mark.slow
@pytest.mark.parametrize("d,width", MC_GRID_SLOW)
def test_obstruction_probability_monte_carlo_grid(d, width, getkey):
    for scheme in ("kaiming", "xavier"):
        _check_mc(d, width, scheme, getkey())


def test_obstruction_probability_other_schemes(getkey):
    _check_mc(2, 2, (1.0, 2.0), getkey())
    _check_mc(2, 2, gf.normal(0.5, 0.3), getkey())
    _check_mc(2, 2, "kaiming", getkey(), bias=True)
    assert gf.obstruction_probability(3, 4, (1.0, 1.0)) == pytest.approx(
        gf.obstruction_probability(3, 4, gf.normal(1.0, 1.0))
    )


def test_obstruction_probability_matches_model_initializer(getkey):
    # The fan convention of the formula is the one ShallowReLU uses to draw weights (Xavier,
    # whose fans are the easier to get wrong; Kaiming is the same code path).
    d, width, n = 2, 4, 5_000
    keys = jr.split(getkey(), n)
    for scheme in ("xavier",):
        nets = jax.vmap(lambda k, s=scheme: gf.ShallowReLU(d, width, 1, init=s, key=k))(keys)
        est = float(jnp.mean(jnp.any(gf.conserved(nets) < 0, axis=-1)))
        exact = gf.obstruction_probability(d, width, scheme)
        assert abs(est - exact) <= 4 * np.sqrt(exact * (1 - exact) / n)


def test_obstruction_probability_errors():
    with pytest.raises(ValueError, match="scheme"):
        gf.obstruction_probability(2, 2, "he")
    with pytest.raises(ValueError, match="sigma_w, sigma_v"):
        gf.obstruction_probability(2, 2, (1.0,))
    with pytest.raises(ValueError, match="width"):
        gf.obstruction_probability(2, 0)
    with pytest.raises(ValueError, match="n "):
        gf.obstruction_probability_mc(2, 2, n=0)
