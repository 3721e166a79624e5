"""No host callbacks in gflow's compiled programs, so JAX's persistent cache can keep them.

JAX does not write a program that calls back to Python to its persistent compilation cache
("not writing persistent cache entry ... because it uses host callbacks"). The only ones in
gflow's programs come from Equinox's ``error_if``, which Diffrax's ``diffeqsolve`` uses on
traced values even with ``throw=False``: ``saveat.ts`` increasing and inside ``[t0, t1]``,
and ``(t1 - t0) * dt0 >= 0``. gflow checks all three on the host before tracing
(:func:`gflow.flow.problem.save_times`, positive step sizes), and every failure of a solve
is already data (``Trajectory.status``, ``throw=False``). While gflow traces its own
programs, :func:`checks_as_data` has ``equinox.error_if`` and ``equinox.branched_error_if``
(and their ``equinox.internal`` names, which Diffrax calls) pass ``on_error="nan"`` in place of
the default ``"raise"``: a ``lax.cond`` that returns NaN, which ends as the status
``nonfinite``, in place of a ``jax.pure_callback`` that raises. Nothing is lost, and the program
holds no callback. Passing the mode as an argument, not setting Equinox's process-wide
default, keeps the change to gflow's traces: Equinox caches the trace of each check by its
arguments, so code traced later (the caller's own checks) still raises. A mode chosen with
``EQX_ON_ERROR`` (``breakpoint``, ``nan``, ``off``) is kept as it is.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import equinox
import equinox.internal
import jax.extend as jex

__all__ = ["checks_as_data", "host_callbacks"]

_NAMES = ("error_if", "branched_error_if")


@contextlib.contextmanager
def checks_as_data() -> Iterator[None]:
    """Within this block, Equinox's checks with the default mode trace to NaN, not to a host
    callback (see the module doc). Use it inside a jitted function's body: it then acts while
    the function is traced. (The names are swapped process-wide for the block: another thread
    tracing at the same moment sees them too.)"""
    if os.environ.get("EQX_ON_ERROR", "raise") != "raise":  # the user's deliberate mode
        yield
        return
    modules = (equinox, equinox.internal)
    originals = {(m, n): getattr(m, n) for m in modules for n in _NAMES}
    for (module, name), fn in originals.items():
        setattr(module, name, _as_nan(fn))
    try:
        yield
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)


def _as_nan(fn):
    @functools.wraps(fn)
    def check(*args, on_error="default", **kwargs):
        return fn(*args, on_error="nan" if on_error == "default" else on_error, **kwargs)

    return check


def host_callbacks(closed_jaxpr) -> list[str]:
    """Names of the callback primitives anywhere in ``closed_jaxpr`` (``jax.make_jaxpr``'s output),
    sub-jaxprs of loops, conds and custom rules included; empty when the program can be cached."""
    found: list[str] = []

    def walk(jaxpr) -> None:
        for eqn in jaxpr.eqns:
            if "callback" in eqn.primitive.name:
                found.append(eqn.primitive.name)
            for param in eqn.params.values():
                for sub in param if isinstance(param, (list, tuple)) else (param,):
                    if isinstance(sub, jex.core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jex.core.Jaxpr):
                        walk(sub)

    walk(closed_jaxpr.jaxpr if isinstance(closed_jaxpr, jex.core.ClosedJaxpr) else closed_jaxpr)
    return found
