"""Test configuration: float64 everywhere (conservation is checked to 1e-8 and below), and JAX as
strict as Diffrax and Equinox test themselves: no implicit dtype promotion between arrays (a float32
array meeting a float64 one is an error, not a silent upcast) and no implicit rank promotion (no
broadcasting of arrays of different ranks). Set in the environment too, so the CLI and sweeps run in
subprocesses by the tests are held to the same rules."""

import os

os.environ["JAX_NUMPY_DTYPE_PROMOTION"] = "strict"
os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"

import jax  # noqa: E402  (the environment above must be set before JAX reads it)
import jax.random as jr
import pytest

from gflow._cache import enable_compilation_cache

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
# Subprocess tests (sweeps killed and resumed, forced devices) reuse compiled programs.
os.environ.setdefault("GFLOW_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax"))
# gflow's saved executables (gflow/_traces.py) stay off in the suite, as in session 7's timing of it:
# tests/test_trace_cache.py turns them on where it tests them (CI starts from an empty cache, where
# they only add writing and reading back every program)
os.environ.setdefault("GFLOW_TRACE_CACHE", "0")
enable_compilation_cache()


def pytest_configure(config):
    # gflow's own warnings are errors unless a test expects them (pytest.warns). Added here, not in
    # pyproject's filterwarnings: resolving the category imports gflow, which must wait until
    # jaxtyping's import hook (--jaxtyping-packages) is in place.
    config.addinivalue_line("filterwarnings", "error::gflow.conservation.NoConservedQuantities")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's in-memory compiled programs after each test module. One process compiles
    thousands of programs over the suite; each keeps its JIT-compiled code mapped, and the
    full suite died late in XLA's CPU compiler (segmentation fault, twice, in tests/test_sweep.py)
    once the suite grew. Programs needed again come back from the persistent cache."""
    yield
    jax.clear_caches()


@pytest.fixture
def getkey():
    """A fresh PRNG key per call, deterministic per test."""
    counter = iter(range(10**6))

    def _getkey():
        return jr.PRNGKey(next(counter))

    return _getkey
