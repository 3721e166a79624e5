"""gflow's ``jit``: ``eqx.filter_jit`` with the XLA options gflow compiles its programs with.

On a CPU, XLA's newer fusion emitters (its default) take much longer to compile gflow's
programs than the classic ones, for code that runs no faster. With
``xla_cpu_use_fusion_emitters = False`` the sweep engine's step loop compiled in 4.7 CPU
seconds instead of 7.2 on 2 cores, its row function in 1.8 instead of 3.1 (a cold example
sweep: 11.6 s instead of 14.4 after import), and the compiled step loop ran the same chunk in
0.94-0.99 of the time on the toy, breast cancer and an MLP (``benchmarks/compile_options.py``,
results/benchmarks/compile_options.md). The arithmetic differs at round-off from XLA's default
build of the same program.

Every jitted program of gflow that a result depends on uses this ``jit``, with the same
options in the saved executables (:mod:`gflow._traces`), so that a sweep row and the single
solve it is compared with run the same compiled arithmetic, whichever path built them.
Options that this jaxlib does not know are dropped (checked once, on a tiny program).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
from jax._src import core as jax_core  # trace_state_clean: no public equivalent

__all__ = ["compiler_options", "jit"]

_CPU_OPTIONS: dict[str, str | bool] = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def compiler_options() -> dict[str, str | bool]:
    """The XLA options of gflow's programs on the default backend (empty off the CPU, or
    where this jaxlib rejects them)."""
    if jax.default_backend() != "cpu":
        return {}
    try:
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(1.0).compile()
    except Exception:  # an XLA without this option: compile as JAX does by default
        return {}
    return dict(_CPU_OPTIONS)


def _tracing() -> bool:
    return not jax_core.trace_state_clean()


def jit(fn: Callable) -> Callable:
    """``eqx.filter_jit(fn)`` compiled with :func:`compiler_options` (chosen at the first
    call, when the backend is known; importing gflow does not start JAX's backend).
    ``jit(fn).jitted()`` is that top-level ``eqx.filter_jit`` wrapper."""

    @functools.cache
    def jitted(nested: bool = False):
        options: dict = {} if nested else {"compiler_options": compiler_options()}
        return eqx.filter_jit(fn, **options)  # passed on to jax.jit

    @functools.wraps(fn)
    def call(*args, **kwargs):
        # inside another trace the call is inlined into the outer program, which JAX allows
        # to carry compiler options only at its top level
        return jitted(_tracing())(*args, **kwargs)

    call.jitted = jitted  # pyright: ignore[reportAttributeAccessIssue] -- the eqx.filter_jit wrapper
    return call
