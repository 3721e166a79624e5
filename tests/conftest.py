"""Test configuration: float64 everywhere (conservation is checked to 1e-8 and below)."""

import os

import jax
import jax.random as jr
import pytest

from gflow._cache import enable_compilation_cache

jax.config.update("jax_enable_x64", True)
# Subprocess tests (sweeps killed and resumed, forced devices) reuse compiled programs.
os.environ.setdefault("GFLOW_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax"))
enable_compilation_cache()


@pytest.fixture
def getkey():
    """A fresh PRNG key per call, deterministic per test."""
    counter = iter(range(10**6))

    def _getkey():
        return jr.PRNGKey(next(counter))

    return _getkey
