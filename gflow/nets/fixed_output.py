"""A shallow ReLU network whose output layer is fixed: ``f(x) = sum_k v_k relu(w_k . x)``, only ``W`` trains.

The set-up of Safran & Shamir (ICML 2018) and of much of the teacher–student literature
(Tian 2017, Brutzkus & Globerson 2017): the output weights are constants (often all 1), the
first layer is learned. gflow's flows, optimizers and end-point classification move a
module's *inexact arrays* (``eqx.partition(model, eqx.is_inexact_array)``), so freezing is
structural: ``W`` is an array field, the output weights ``v`` a static tuple of Python
floats — not a parameter, never differentiated, never moved.

**No conserved quantities.** With ``v_k`` fixed the identity
``<w_k, dL/dw_k> = <v_k, dL/dv_k>`` (docs/theory.md §1) no longer balances a moving ``v_k``:
``d ||w_k||^2 / dt = -2 <w_k, dL/dw_k>`` is not zero in general, so ``delta_k`` is not
conserved and there is no rescaling symmetry (hence no flat Hessian direction per unit). gflow
reports conserved quantities as absent for this module (one ``NoConservedQuantities``
warning), which is the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .schemes import check_size, gaussian, get_scheme
from .shallow import ShallowReLU

__all__ = ["FixedOutputReLU", "fixed_output"]


class FixedOutputReLU(eqx.Module):
    """``f(x) = sum_k v_k relu(w_k . x)`` with the output weights ``v`` fixed (one output, no bias).

    **Fields:** ``W`` (width, in): the only parameters; ``v`` (static tuple of ``width``
    floats, default all 1); ``in_size``, ``width`` (static).

    **Arguments** (constructor): ``in_size``, ``width``; ``v``: the fixed output weights (a
    number for all units, or ``width`` numbers; default 1); ``init``: the scheme of ``W``
    (``"kaiming"`` or ``"xavier"``, as :class:`gflow.ShallowReLU`: Xavier's
    ``sigma_w^2 = 2 / (in + width)``); ``key`` (keyword-only).
    """

    W: Float[Array, "width in"]
    v: tuple[float, ...] = eqx.field(static=True)
    in_size: int = eqx.field(static=True)
    width: int = eqx.field(static=True)

    def __init__(
        self, in_size: int, width: int, v: float | Sequence[float] = 1.0, *, init: str = "kaiming", key: PRNGKeyArray
    ):
        self.in_size = check_size("in_size", in_size)
        self.width = check_size("width", width)
        values = [float(x) for x in v] if isinstance(v, Sequence) else [float(v)] * self.width
        if len(values) != self.width:
            raise ValueError(f"v must be a number or {self.width} numbers (one per unit), got {len(values)}.")
        if not all(math.isfinite(x) for x in values):
            raise ValueError(f"v must be finite, got {values}.")
        self.v = tuple(values)
        self.W = gaussian(key, (width, in_size), get_scheme(init).std(in_size, width, False))

    @property
    def out_size(self) -> int:
        return 1

    @property
    def b(self) -> None:
        """No biases (``None``, as a bias-free :class:`gflow.ShallowReLU`)."""
        return None

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " 1"]:
        return jnp.asarray(self.v, self.W.dtype)[None, :] @ jax.nn.relu(self.W @ x)

    def as_shallow(self) -> ShallowReLU:
        """The same function as a :class:`gflow.ShallowReLU` with ``V = [v]`` (a constant here: the
        population loss and other ``ShallowReLU`` formulas differentiate through ``W`` only)."""
        shell = ShallowReLU(self.in_size, self.width, 1, key=jr.PRNGKey(0))
        V = jnp.asarray([self.v], self.W.dtype)
        return eqx.tree_at(lambda m: (m.W, m.V), shell, (self.W, V))


def fixed_output(net: ShallowReLU) -> FixedOutputReLU:
    """Freeze the output layer of a one-output, bias-free :class:`gflow.ShallowReLU`: a
    :class:`FixedOutputReLU` with the same ``W`` and ``v = V[0]`` (same function)."""
    if not isinstance(net, ShallowReLU) or net.b is not None or net.out_size != 1:
        raise ValueError("fixed_output needs a ShallowReLU with one output and no bias.")
    shell = FixedOutputReLU(net.in_size, net.width, [float(x) for x in net.V[0]], key=jr.PRNGKey(0))
    return eqx.tree_at(lambda m: m.W, shell, net.W)
