"""``unreachable_probability`` (issue 23, must-show 3): closed forms derived by hand, and
agreement with Monte Carlo over students drawn exactly as ``gf.ShallowReLU`` draws them.

The Monte Carlo side does not use the formula nor gflow's scheme code: the standard
deviations are written out here, the weights are drawn with the same key splitting as
``ShallowReLU.__init__`` (checked against it bit for bit), and the reachability predicate
``max(0, a_+ - P) + max(0, a_- - M) <= F`` is evaluated on the drawn arrays with numpy,
with ``a_+``, ``a_-`` known from how the teacher is built. A few hundred draws per case are
also run through ``gf.reachable`` itself.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import gflow as gf
from gflow.reach_probability import unreachable_probability

# ------------------------------------------------------------------ helpers


def make_teacher(d, a, key):
    """``sum_j a_j relu(u_j . x)`` with random (pairwise non-parallel, almost surely) ``u_j``."""
    t = gf.ShallowReLU(d, len(a), key=key)
    return eqx.tree_at(lambda t: t.V, t, jnp.asarray([a], dtype=float))


def stds(scheme, d, width):
    """``(sigma_w, sigma_v)`` of a shallow net ``d -> width -> 1``, written out independently
    of gflow's scheme code: Kaiming fan-in ``2/fan_in``, Xavier ``2/(fan_in + fan_out)``."""
    if scheme == "kaiming":
        return math.sqrt(2 / d), math.sqrt(2 / width)
    if scheme == "xavier":
        return math.sqrt(2 / (d + width)), math.sqrt(2 / (width + 1))
    return scheme  # (sigma_w, sigma_v)


def as_gflow_scheme(scheme):
    return gf.normal(*scheme) if isinstance(scheme, tuple) else scheme


def draw(keys, d, width, sw, sv):
    """``W`` (n, width, d), ``V`` (n, 1, width) as ``ShallowReLU(d, width, key=keys[i])`` draws
    them: ``kw, kb, kv = split(key, 3)``, ``W = sw N(kw)``, ``V = sv N(kv)``."""

    def one(k):
        kw, _, kv = jr.split(k, 3)
        return sw * jr.normal(kw, (width, d), float), sv * jr.normal(kv, (1, width), float)

    W, V = jax.vmap(one)(keys)  # not jitted: fused under jit, sw * N can differ from ShallowReLU by 1 ulp
    return np.asarray(W), np.asarray(V)


def unreachable_mc(W, V, a_pos, a_neg):
    """The reachability predicate on each drawn student, vectorized (``delta_k < 0``)."""
    v = V[:, 0, :]
    path = np.sum(W**2, axis=-1) - v**2 < 0
    P, M = np.sum(path & (v > 0), axis=-1), np.sum(path & (v < 0), axis=-1)
    F = W.shape[1] - np.sum(path, axis=-1)
    return np.maximum(0, a_pos - P) + np.maximum(0, a_neg - M) > F


def check_case(d, a, width, scheme, n, n_reachable, seed):
    """Monte Carlo with ``n`` students against the exact value, within 4 standard errors
    ``sqrt(q (1 - q) / n)`` of the exact ``q`` (a binomial count; the cases keep ``n q``
    large enough for the normal approximation, or ``q`` is exactly 0 or 1, where the count
    must be exact). The first ``n_reachable`` draws are also rebuilt as ``gf.ShallowReLU``
    and run through ``gf.reachable``."""
    teacher = make_teacher(d, a, jr.PRNGKey(1000 + seed))
    a_pos, a_neg = sum(x > 0 for x in a), sum(x < 0 for x in a)
    q = unreachable_probability(teacher, width, as_gflow_scheme(scheme))
    keys = jr.split(jr.PRNGKey(seed), n)
    sw, sv = stds(scheme, d, width)
    W, V = draw(keys, d, width, sw, sv)
    hit = unreachable_mc(W, V, a_pos, a_neg)
    for i in range(n_reachable):
        student = gf.ShallowReLU(d, width, init=as_gflow_scheme(scheme), key=keys[i])
        if i < 3:  # the vectorized draw is ShallowReLU's draw, bit for bit
            np.testing.assert_array_equal(W[i], student.W)
            np.testing.assert_array_equal(V[i], student.V)
        assert gf.reachable(teacher, student) == (not hit[i]), i
    est = float(np.mean(hit))
    se = math.sqrt(q * (1 - q) / n)
    assert abs(est - q) <= 4 * se + 1e-15, (d, a, width, scheme, est, q, se)
    return q, est, se


# 20 (d, teacher output weights, width, scheme) cases: Kaiming, Xavier and fixed sigmas,
# d from 2 to 10, widths 1 to 16, teachers with one kink, both kinds, a dead neuron (a_j = 0,
# ignored) and more kinks than the width. Probabilities from 6.6e-4 to 1 (n q >= 66 at n = 1e5,
# where the 4-SE normal criterion is sound), except the theory page's example 1.4e-4 (n q = 14:
# a 4-SE band of +-15 counts, still a binomial tail below 1e-3).
CASES = [
    (2, (1.0, -1.0), 2, "kaiming"),
    (2, (1.0, -1.0), 4, "kaiming"),  # the theory page's example: 2 (p/2)^4 = 1.4e-4
    (2, (1.0, 2.0), 2, "kaiming"),
    (2, (-1.0, -0.5), 3, "xavier"),
    (2, (1.0, 0.7, -1.0), 3, "xavier"),
    (3, (1.0, -1.0), 3, "kaiming"),
    (3, (1.0, 1.0, -1.0, -1.0), 4, "xavier"),
    (3, (1.0, 1.0, 1.0), 5, (0.3, 1.0)),
    (5, (1.0, 1.0, -1.0), 4, (0.5, 1.5)),
    (2, (1.0,), 1, "kaiming"),  # p/2
    (2, (1.0, -1.0), 1, "kaiming"),  # 1
    (4, (1.0, 1.0, 1.0, -1.0, -1.0), 4, "kaiming"),  # more kinks than neurons: 1
    (10, (1.0, 1.0, -1.0, -1.0), 4, "xavier"),
    (2, (1.0, 1.0, -1.0, -1.0), 6, "xavier"),
    (3, (1.0, -1.0, -1.0), 6, (0.4, 1.0)),
    (2, (1.0, 1.0, 1.0, -1.0, -1.0, -1.0), 10, (0.5, 1.0)),
    (5, (1.0, -1.0), 3, (0.2, 1.0)),
    (2, (1.0, 1.0, 1.0, 1.0, -1.0), 16, (0.2, 1.0)),
    (8, (1.0, 1.0, -1.0), 3, "kaiming"),
    (2, (1.0, 0.0, -1.0), 2, "xavier"),  # a dead teacher neuron is ignored
]


@pytest.mark.parametrize("case", [0, 4, 7, 10, 19])
def test_matches_monte_carlo_quick(case):
    """Five of the cases with 2e4 students each (same 4-SE criterion)."""
    d, a, width, scheme = CASES[case]
    check_case(d, a, width, scheme, n=20_000, n_reachable=60, seed=case)


@pytest.mark.slow
def test_matches_monte_carlo_full():
    """Must-show 3: all 20 cases, 1e5 students each, within 4 standard errors; 300 draws per
    case through ``gf.reachable``."""
    for case, (d, a, width, scheme) in enumerate(CASES):
        q, est, se = check_case(d, a, width, scheme, n=100_000, n_reachable=300, seed=100 + case)
        print(f"case {case:2d} d={d:2d} a={a} l={width:2d} {scheme}: exact {q:.6g}, MC {est:.6g} +- {se:.2g}")


# ------------------------------------------------------------- closed forms


def p_single(d, width, scheme):
    """The per-neuron ``p``, recovered from ``gf.obstruction_probability`` = ``1 - (1 - p)^l``."""
    return -math.expm1(math.log1p(-gf.obstruction_probability(d, width, scheme)) / width)


@pytest.mark.parametrize("scheme", ["kaiming", "xavier", (0.5, 1.0)])
def test_closed_forms(scheme, getkey):
    """Derived by hand from the predicate ``max(0, a_+ - P) + max(0, a_- - M) <= F``, with
    ``(P, M, F) ~ Multinomial(l; p/2, p/2, 1 - p)``:

    - one neuron, one convex kink: unreachable iff the neuron is pathological with ``v < 0``: ``p/2``;
    - ``a_+ = a_- = 1``, ``l >= 2``: needs ``F = 0`` and ``P = 0`` or ``M = 0``: ``2 (p/2)^l``;
    - ``a_+ = k``, ``a_- = 0``, ``l = k``: reachable iff ``M = 0``: ``1 - (1 - p/2)^k``;
    - ``a_+ = k``, ``a_- = 0``, ``l = k + 1``: unreachable iff ``M >= 2``, ``M ~ Binomial(l, p/2)``;
    - ``a_+ + a_- > l``: 1; a teacher with no live neuron: 0.

    ``p`` comes from ``gf.obstruction_probability``, so this also checks that both use the
    same ``p``. Tolerance 1e-13 relative: a handful of float operations either way."""
    s = as_gflow_scheme(scheme)
    d = 3
    for width, a, expected in [
        (1, (1.0,), lambda p: p / 2),
        (1, (-2.0,), lambda p: p / 2),
        (2, (1.0, -1.0), lambda p: 2 * (p / 2) ** 2),
        (5, (0.3, -1.0), lambda p: 2 * (p / 2) ** 5),
        (3, (1.0, 1.0, 1.0), lambda p: 1 - (1 - p / 2) ** 3),
        (4, (-1.0, -1.0, -1.0, -1.0), lambda p: 1 - (1 - p / 2) ** 4),
        (4, (1.0, 1.0, 1.0), lambda p: 1 - (1 - p / 2) ** 4 - 4 * (p / 2) * (1 - p / 2) ** 3),
    ]:
        teacher = make_teacher(d, a, getkey())
        p = p_single(d, width, s)
        assert unreachable_probability(teacher, width, s) == pytest.approx(expected(p), rel=1e-13), (width, a)
    assert unreachable_probability(make_teacher(d, (1.0, -1.0, 1.0), getkey()), 2, s) == pytest.approx(1.0, abs=1e-15)
    assert unreachable_probability(make_teacher(d, (0.0, 0.0), getkey()), 3, s) == 0.0


def test_limits_and_monotonicity(getkey):
    """As ``sigma_v -> 0`` no neuron is pathological: reachable iff ``a_+ + a_- <= l``; adding
    a neuron never hurts (the extra one can be switched off), so the probability does not
    grow with the width at fixed sigmas; the theory page's Kaiming d = 2 value
    ``p ~ 0.184``, ``2 (p/2)^4 ~ 1.4e-4``."""
    teacher = make_teacher(2, (1.0, 1.0, -1.0), getkey())
    assert unreachable_probability(teacher, 3, (1.0, 1e-6)) < 1e-9  # p = O(sigma_v^2) ~ 1e-12
    assert unreachable_probability(teacher, 2, (1.0, 1e-6)) == pytest.approx(1.0, abs=1e-15)
    qs = [unreachable_probability(teacher, width, (0.5, 1.0)) for width in range(1, 12)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(qs[:-1], qs[1:], strict=True)) and qs[-1] < qs[3]
    q = unreachable_probability(make_teacher(2, (1.0, -1.0), getkey()), 4, "kaiming")
    assert q == pytest.approx(1.4e-4, rel=0.02)


def test_validation(getkey):
    teacher = make_teacher(2, (1.0, -1.0), getkey())
    with pytest.raises(ValueError, match="width must be a positive integer"):
        unreachable_probability(teacher, 0)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        unreachable_probability(teacher, 2.0)
    with pytest.raises(ValueError, match="scheme"):
        unreachable_probability(teacher, 2, "he")
    with pytest.raises(ValueError, match="tol"):
        unreachable_probability(teacher, 2, tol=-1.0)
    with pytest.raises(ValueError, match="out_size 1, in_size >= 2 and no bias"):
        unreachable_probability(gf.ShallowReLU(2, 2, bias=True, key=getkey()), 2)
    with pytest.raises(ValueError, match="out_size 1, in_size >= 2 and no bias"):
        unreachable_probability(gf.ShallowReLU(1, 2, key=getkey()), 2)
    with pytest.raises(ValueError, match="out_size 1, in_size >= 2 and no bias"):
        unreachable_probability(gf.ShallowReLU(2, 2, 2, key=getkey()), 2)
    parallel = eqx.tree_at(lambda t: t.W, teacher, jnp.array([[1.0, 2.0], [-2.0, -4.0]]))
    with pytest.raises(ValueError, match="non-parallel"):
        unreachable_probability(parallel, 2)
    batch = eqx.filter_vmap(lambda k: gf.ShallowReLU(2, 2, key=k))(jr.split(getkey(), 3))
    with pytest.raises(ValueError, match="not a batch"):
        unreachable_probability(batch, 2)
