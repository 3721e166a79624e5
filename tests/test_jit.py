"""gflow's ``jit`` (gflow/_jit.py): its compiler options at the top level, none when inlined."""

import jax
import jax.numpy as jnp
import numpy as np

from gflow._jit import compiler_options, jit


@jit
def _square_sum(x):
    return jnp.sum(x**2)


def test_top_level_and_nested_calls_agree():
    x = jnp.linspace(-1.0, 1.0, 7)
    expected = float(np.sum(np.linspace(-1.0, 1.0, 7) ** 2))
    np.testing.assert_allclose(float(_square_sum(x)), expected, rtol=1e-15)
    # inside another program the call is inlined; JAX refuses compiler options there
    nested = jax.jit(lambda x: 2.0 * _square_sum(x))(x)
    np.testing.assert_allclose(float(nested), 2.0 * expected, rtol=1e-15)
    vmapped = jax.vmap(_square_sum)(jnp.stack([x, 2.0 * x]))
    np.testing.assert_allclose(np.asarray(vmapped), [expected, 4.0 * expected], rtol=1e-15)


def test_options_are_known_to_this_jaxlib():
    options = compiler_options()
    if jax.default_backend() == "cpu":
        assert options == {"xla_cpu_use_fusion_emitters": False}
        # the top-level wrapper compiles with them: a program JAX rejects would raise here
        jax.jit(lambda x: x * 2.0, compiler_options=options).lower(1.0).compile()
    else:
        assert options == {}


def test_the_wrapper_is_exposed_and_traced_once():
    wrapper = _square_sum.jitted()
    _square_sum(jnp.ones(3))
    size = wrapper._cached._cache_size()
    _square_sum(jnp.zeros(3))  # same shapes: no new trace
    assert wrapper._cached._cache_size() == size
