"""The ReLU-network interface: what gflow needs to know about a network's hidden units.

A positively homogeneous ReLU network is a set of hidden units ``h``, each computing
``relu(<w_in(h), inputs>)`` and sending it on through its outgoing weights ``w_out(h)``
(a bias is one more incoming weight, from a constant input 1). Rescaling one unit,
``w_in -> alpha w_in``, ``w_out -> w_out / alpha`` (``alpha > 0``), leaves the function
unchanged; that symmetry makes ``c_h = ||w_in(h)||^2 - ||w_out(h)||^2`` a conserved
quantity of the gradient flow (docs/theory.md §1-2).

Everything in gflow that depends on this structure (invariants, projection, kinks,
events, topology) asks these methods, not the concrete class. :class:`ShallowReLU`,
:class:`MLP` and :class:`DAGNet` implement them; a user's own ``eqx.Module`` can too.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

if TYPE_CHECKING:
    from .dag import DAGNet  # dag.py imports this module

__all__ = ["AbstractReLUNet", "require_relu_net"]


class AbstractReLUNet(eqx.Module):
    """Abstract base of ReLU networks with per-unit rescaling symmetry.

    Implementations are called on ONE input ``x`` of shape ``(in_size,)`` and return
    ``(out_size,)``. Hidden units are numbered in one fixed order, used by every method
    below and by :func:`gflow.conserved`.

    **Class attributes:**
    - ``decoupled_units``: ``True`` when every weight belongs to exactly one unit's
      incoming or outgoing block (one hidden layer), so the projection onto the invariant
      set has a closed form per unit (Prop. 4); ``False`` when neighbouring units share
      weights (deep nets: Newton's method, :func:`gflow.project`).
    - ``kink_handling``: whether :mod:`gflow.flow.pinning` and the sliding field apply
      (they are written for one hidden layer).
    """

    decoupled_units: ClassVar[bool] = False
    kink_handling: ClassVar[bool] = False

    @abc.abstractmethod
    def in_out_squares(self) -> tuple[Float[Array, "*batch hidden"], Float[Array, "*batch hidden"]]:
        """Per hidden unit: ``(||w_in(h)||^2, ||w_out(h)||^2)`` (works on a batch of nets)."""

    @abc.abstractmethod
    def rescale(self, alphas: Float[Array, " hidden"]) -> AbstractReLUNet:
        """The network with unit ``h``'s incoming weights times ``alphas[h]`` and its
        outgoing weights divided by it (same function)."""

    @abc.abstractmethod
    def hidden_preactivations(self, x: Float[Array, " in"]) -> Float[Array, " hidden"]:
        """Every hidden unit's pre-activation ``<w_in(h), inputs>`` at one input ``x``."""

    @abc.abstractmethod
    def output_weights(self) -> Float[Array, " n"]:
        """The weights into the output nodes, as one flat vector."""

    @abc.abstractmethod
    def spec(self) -> dict:
        """A JSON-serializable description of the architecture (not the weights), read
        back by :func:`gflow.model_from_spec`."""

    @abc.abstractmethod
    def as_dag(self) -> DAGNet:
        """The same network as a :class:`gflow.DAGNet` (same function, same conserved
        quantities in the same order)."""

    def masked_forward(
        self, x: Float[Array, " in"], pattern: Array | None = None, offset: Array | None = None
    ) -> tuple[Float[Array, " out"], Float[Array, " hidden"], Float[Array, " hidden"]]:
        """``(output, pre-activations, input norms squared)`` at one input ``x`` with every hidden
        unit's ``relu(z_h)`` replaced by ``pattern[h] * z_h`` (``pattern``: one 0/1 value per
        unit; ``None``: relu). ``offset`` (one value per unit) is added to each unit's output
        ``relu(z_h)``, so ``d output / d offset[h]`` is the signal reaching unit ``h``. The
        third value is ``|u_h|^2`` for ``z_h = <w_in(h), u_h>`` (its input vector, a 1 for a bias).

        With a fixed pattern the network is a polynomial in its weights: the field of one
        smooth piece of the flow, which :mod:`gflow.flow.locate` integrates between located
        activation changes. Optional for own networks (``NotImplementedError``: no location).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement masked_forward.")

    def with_output_signs(self, signs: Array) -> AbstractReLUNet:
        """The network with output weights ``signs * |w|`` (``signs`` broadcast against the
        output weight matrix). Changes the function; keeps every ``c_h``."""
        raise ValueError(f"output signs can be forced for ShallowReLU and MLP models only, not {type(self).__name__}.")

    def permute_units(self, perm) -> AbstractReLUNet:
        """The network with its hidden units permuted (same function)."""
        raise ValueError(f"permute needs a ShallowReLU or MLP, got {type(self).__name__}.")


def require_relu_net(model, what: str = "model") -> AbstractReLUNet:
    """``model`` if it implements :class:`AbstractReLUNet`, else one clear ``ValueError``.

    The one type check the structural functions share (invariants, projection, events)."""
    if not isinstance(model, AbstractReLUNet):
        raise ValueError(
            f"{what} must be a ReLU network implementing gflow.AbstractReLUNet (ShallowReLU, MLP, DAGNet or "
            f"your own subclass), got {type(model).__name__}."
        )
    return model


def signed_output_weights(weights: Float[Array, "out hidden"], signs) -> Float[Array, "out hidden"]:
    """``signs * |weights|`` with ``signs`` (one per hidden unit, or any shape that broadcasts to
    the output weight matrix) cast to the weights' dtype and broadcast explicitly, as JAX's strict
    promotion rules ask."""
    signs = jnp.broadcast_to(jnp.asarray(signs, weights.dtype), weights.shape)
    return jnp.abs(weights) * signs
