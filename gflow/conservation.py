"""Where a network's conserved quantities come from: :class:`Conservation`, :func:`conservation_of`.

Flows, optimizers and sweeps accept any ``eqx.Module`` (its inexact arrays are the
parameters). Its conserved quantities ``c_h`` (docs/theory.md §1-2) are, in this order:

1. ``conserved=`` a callable ``model -> array`` the user passes (``"user"``);
2. :meth:`gflow.AbstractReLUNet.in_out_squares` for a network implementing the interface
   (``"interface"``: ``ShallowReLU``, ``MLP``, ``DAGNet`` or your own subclass);
3. found by module inspection for recognized Equinox structures (``"equinox"``:
   :mod:`gflow.nets.recognize`, e.g. ``eqx.nn.MLP`` with relu, ``eqx.nn.Sequential`` of
   Linear/Conv and relu);
4. none (``"none"``): conserved quantities, drift and labels are absent (``None`` in a
   :class:`gflow.Trajectory`, NaN in sweep rows), and one :class:`NoConservedQuantities`
   warning says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .nets.base import AbstractReLUNet
from .nets.recognize import auto_in_out_squares, recognize

__all__ = ["Conservation", "conservation_of", "warn_if_absent", "NoConservedQuantities"]


class NoConservedQuantities(UserWarning):
    """A network has no known conserved quantities: drift and labels are absent."""


class Conservation(eqx.Module):
    """How to compute a network's conserved quantities (static: no arrays; hashable).

    **Fields:** ``source`` (``"interface"``, ``"equinox"``, ``"user"`` or ``"none"``),
    ``fn`` (the user's callable, else ``None``), ``detail`` (the recognized structure, or
    why there is none).
    """

    source: str = eqx.field(static=True)
    fn: Callable | None = eqx.field(static=True)
    detail: str = eqx.field(static=True)

    @property
    def available(self) -> bool:
        return self.source != "none"

    def in_out_squares(self, model):
        """Per hidden unit ``(||w_in||^2, ||w_out||^2)`` (interface and recognized structures)."""
        if self.source == "interface":
            return model.in_out_squares()
        return auto_in_out_squares(model)

    def values(self, model) -> jax.Array:
        """``c_h`` of one network (an empty vector when there are none)."""
        if self.source == "none":
            return jnp.zeros((0,), jnp.result_type(float))
        if self.source == "user":
            fn = self.fn
            assert fn is not None  # conservation_of sets it for "user"
            return jnp.ravel(jnp.asarray(fn(model)))
        w_in, w_out = self.in_out_squares(model)
        return w_in - w_out

    def values_over(self, models) -> jax.Array | None:
        """``c_h`` of networks with a leading (time) axis, shape ``(T, hidden)``; ``None`` when
        there are none."""
        if self.source == "none":
            return None
        if self.source == "user":
            params, static = eqx.partition(models, eqx.is_inexact_array)
            return jax.vmap(lambda p: self.values(eqx.combine(p, static)))(params)
        return self.values(models)

    def scale(self, model) -> jax.Array:
        """``max_h (||w_in||^2 + ||w_out||^2)``, what relative drift divides by; NaN for a
        user's callable (no unit norms are known) and when there are no quantities."""
        if self.source in ("interface", "equinox"):
            w_in, w_out = self.in_out_squares(model)
            return jnp.max(w_in + w_out)
        return jnp.asarray(jnp.nan, jnp.result_type(float))

    def notice(self, model) -> str:
        """The one line saying why the quantities are absent (``""`` when they are known)."""
        if self.available:
            return ""
        return (
            f"gflow: no conserved quantities for {type(model).__name__} ({self.detail}); conserved values, drift "
            "and component labels are absent. Implement gflow.AbstractReLUNet or pass conserved=callable to add them."
        )


def warn_if_absent(laws: Conservation, model, stacklevel: int = 3) -> None:
    """Issue ``laws.notice(model)`` as one :class:`NoConservedQuantities` warning when the
    network has no known conserved quantities (``stacklevel`` 3: the caller's caller)."""
    if not laws.available:
        warnings.warn(laws.notice(model), NoConservedQuantities, stacklevel=stacklevel)


def conservation_of(model, conserved: Callable | None = None) -> Conservation:
    """The :class:`Conservation` of ``model``: the user's ``conserved`` callable, the ReLU
    interface, a recognized Equinox structure, or none (with the reason)."""
    if conserved is not None:
        if not callable(conserved):
            raise ValueError(f"conserved must be a callable model -> array, got {type(conserved).__name__}.")
        return Conservation("user", conserved, getattr(conserved, "__name__", type(conserved).__name__))
    if isinstance(model, AbstractReLUNet):
        return Conservation("interface", None, type(model).__name__)
    name, reason = recognize(model)
    if name is not None:
        return Conservation("equinox", None, name)
    return Conservation("none", None, reason)
