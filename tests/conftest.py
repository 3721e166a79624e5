"""Test configuration: float64 everywhere (conservation is checked to 1e-8 and below)."""

import jax
import jax.random as jr
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """A fresh PRNG key per call, deterministic per test."""
    counter = iter(range(10**6))

    def _getkey():
        return jr.PRNGKey(next(counter))

    return _getkey
