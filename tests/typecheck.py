"""The runtime type checker the test suite installs over gflow (``--jaxtyping-packages``).

It checks every annotation that involves a jaxtyping array (dtype and shape, with shapes
consistent across the arguments and the return value of one call) with beartype, and leaves
plain Python types (``int``, ``str``, a scheme, a graph) alone: gflow validates those itself and
answers a wrong one with its own sentence naming the argument, which the tests check.
"""

import typing

import jaxtyping
from beartype import beartype


def _involves_array(hint) -> bool:
    if isinstance(hint, type) and issubclass(hint, jaxtyping.AbstractArray):
        return True
    return any(_involves_array(arg) for arg in typing.get_args(hint))


def check_arrays(fn):
    """beartype over the array annotations of ``fn`` only (``fn`` is jaxtyping's generated stub,
    whose annotations are already resolved objects, not strings)."""
    hints = getattr(fn, "__annotations__", {})
    kept = {name: hint for name, hint in hints.items() if _involves_array(hint)}
    if not kept:
        return fn
    fn.__annotations__ = kept
    return beartype(fn)
