"""Conserved quantities of plain Equinox networks, found by module inspection.

A hidden unit (a neuron of a ``Linear`` layer, a channel of a ``Conv`` layer) whose output
goes through ``relu`` -- and then only through maps that commute with a positive rescaling
of that unit (max or average pooling, flattening) into the next layer -- can be rescaled,
``w_in -> alpha w_in``, ``w_out -> w_out / alpha`` (``alpha > 0``), without changing the
function. So ``c_h = ||w_in(h)||^2 - ||w_out(h)||^2`` is conserved by the gradient flow
(docs/theory.md §1-2), with:

- ``Linear`` neuron ``j``: ``w_in`` = row ``j`` of the weight (and bias ``j``); ``w_out`` =
  column ``j`` of the next layer's weight.
- ``Conv`` channel ``c``: ``w_in`` = the kernel of output channel ``c`` (all input channels
  and positions) and bias ``c``; ``w_out`` = the next conv's kernel slice ``[:, c]``, or,
  for a ``Linear`` head after flattening, the columns that read channel ``c``'s positions
  (a flattened ``(C, ...)`` array is channel-major: columns ``c S .. (c+1) S - 1``).

**Recognized structures** (the module itself, not a module that contains one; anything
else is reported as not recognized, with the reason):

- ``eqx.nn.MLP`` with ``activation=jax.nn.relu``, the identity final activation and
  ``scan=False``; any depth >= 1, with or without biases (a final bias is allowed: it is
  no unit's weight).
- ``eqx.nn.Sequential`` of affine layers -- ``eqx.nn.Linear``, ``eqx.nn.Conv1d/2d/3d``
  (``groups=1``) -- where between two affine layers there is exactly one
  ``eqx.nn.Lambda(jax.nn.relu)`` (``eqx.nn.Lambda(jax.nn.relu)`` is the only activation
  recognized), any number of ``eqx.nn.MaxPool*d`` / ``AvgPool*d`` /
  ``AdaptiveMaxPool*d`` / ``AdaptiveAvgPool*d`` and ``eqx.nn.Identity``, and at most one
  ``eqx.nn.Lambda(jnp.ravel)`` (required from a conv to a ``Linear``). Before the first
  affine layer only ``Identity`` and ``Lambda(jnp.ravel)``; after the last one only
  ``Identity``.

Functions here accept a batch of networks (leading axes on every array, e.g. the time axis
of a trajectory): they only reduce over trailing axes.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["recognize", "auto_in_out_squares"]

_POOLS = tuple(
    getattr(eqx.nn, f"{kind}Pool{d}d") for kind in ("Max", "Avg", "AdaptiveMax", "AdaptiveAvg") for d in (1, 2, 3)
)


class NotRecognized(ValueError):
    """The network's structure is none of those this module recognizes (the message says why)."""


def _is_relu(layer) -> bool:
    return isinstance(layer, eqx.nn.Lambda) and layer.fn is jax.nn.relu


def _is_flatten(layer) -> bool:
    return isinstance(layer, eqx.nn.Lambda) and layer.fn is jnp.ravel


def _describe(layer) -> str:
    if isinstance(layer, eqx.nn.Lambda):
        return f"Lambda({getattr(layer.fn, '__name__', type(layer.fn).__name__)})"
    return type(layer).__name__


def _affine(layer) -> bool:
    return isinstance(layer, (eqx.nn.Linear, eqx.nn.Conv)) and not isinstance(layer, eqx.nn.ConvTranspose)


def _layers(model) -> tuple[list, str]:
    """The network as a flat list of layers (``"relu"`` for an MLP's activation), and its name."""
    if isinstance(model, eqx.nn.MLP):
        from equinox.nn._mlp import _identity

        if model.activation is not jax.nn.relu:
            raise NotRecognized("eqx.nn.MLP is recognized with activation=jax.nn.relu only")
        if model.final_activation is not _identity:
            raise NotRecognized("eqx.nn.MLP is recognized with the identity final activation only")
        if getattr(model, "scan", False):
            raise NotRecognized("eqx.nn.MLP is recognized with scan=False only")
        layers = []
        for layer in model.layers[:-1]:
            layers += [layer, eqx.nn.Lambda(jax.nn.relu)]
        return [*layers, model.layers[-1]], "eqx.nn.MLP"
    if isinstance(model, eqx.nn.Sequential):
        return list(model.layers), "eqx.nn.Sequential"
    raise NotRecognized(
        f"{type(model).__name__} is not a structure gflow recognizes (eqx.nn.MLP with relu, or eqx.nn.Sequential "
        "of Linear/Conv layers and Lambda(jax.nn.relu))"
    )


def _plan(model) -> tuple[list, str]:
    """The affine layers of ``model`` and, per pair of neighbours, whether a flatten lies
    between them; ``NotRecognized`` with the reason otherwise."""
    layers, name = _layers(model)
    affine = [i for i, layer in enumerate(layers) if _affine(layer)]
    if not affine:
        raise NotRecognized(f"{name} has no Linear or Conv layer")
    for i in range(affine[0]):
        if not (isinstance(layers[i], eqx.nn.Identity) or _is_flatten(layers[i])):
            raise NotRecognized(f"{name} layer {i} ({_describe(layers[i])}) comes before the first affine layer")
    for i in range(affine[-1] + 1, len(layers)):
        if not isinstance(layers[i], eqx.nn.Identity):
            raise NotRecognized(f"{name} layer {i} ({_describe(layers[i])}) follows the output layer")
    steps = []
    for a, b in zip(affine[:-1], affine[1:], strict=True):
        first, second = layers[a], layers[b]
        between = layers[a + 1 : b]
        n_relu = sum(_is_relu(x) for x in between)
        n_flat = sum(_is_flatten(x) for x in between)
        for j, x in enumerate(between, start=a + 1):
            if not (_is_relu(x) or _is_flatten(x) or isinstance(x, (eqx.nn.Identity, *_POOLS))):
                raise NotRecognized(f"{name} layer {j} ({_describe(x)}) is not relu, pooling or flattening")
            if isinstance(x, _POOLS) and not isinstance(first, eqx.nn.Conv):
                raise NotRecognized(f"{name} layer {j} ({_describe(x)}) pools the output of a Linear layer")
        if n_relu != 1:
            raise NotRecognized(f"{name} layers {a} and {b} have {n_relu} relu activations between them, not one")
        if n_flat > 1:
            raise NotRecognized(f"{name} layers {a} and {b} have more than one flatten between them")
        for layer, j in ((first, a), (second, b)):
            if isinstance(layer, eqx.nn.Conv) and layer.groups != 1:
                raise NotRecognized(f"{name} layer {j} is a grouped convolution (groups={layer.groups})")
        if isinstance(first, eqx.nn.Linear) and isinstance(second, eqx.nn.Conv):
            raise NotRecognized(f"{name} layer {b} is a Conv after a Linear layer")
        units = _n_units(first)
        if isinstance(second, eqx.nn.Conv):
            if isinstance(first, eqx.nn.Conv) and n_flat:
                raise NotRecognized(f"{name} layers {a} and {b}: a flatten between two convolutions")
            if second.weight.shape[-second.num_spatial_dims - 1] != units:
                raise NotRecognized(f"{name} layer {b} does not read the {units} channels of layer {a}")
        elif isinstance(first, eqx.nn.Conv):
            if not n_flat:
                raise NotRecognized(f"{name} layers {a} and {b}: a Linear layer after a Conv needs Lambda(jnp.ravel)")
            if second.weight.shape[-1] % units:
                raise NotRecognized(f"{name} layer {b}'s {second.weight.shape[-1]} inputs are not {units} channels")
        elif second.weight.shape[-1] != units:
            raise NotRecognized(f"{name} layer {b} does not read the {units} outputs of layer {a}")
        steps.append((first, second))
    if not steps:
        raise NotRecognized(f"{name} has no hidden layer (a single affine layer has no rescaling symmetry)")
    return steps, name


def _n_units(layer) -> int:
    if isinstance(layer, eqx.nn.Linear):
        return layer.weight.shape[-2]
    return layer.weight.shape[-layer.num_spatial_dims - 2]


def recognize(model) -> tuple[str | None, str]:
    """``(name, "")`` if ``model``'s structure is recognized (``name``: e.g. ``"eqx.nn.MLP"``),
    else ``(None, reason)`` with the reason in one clause."""
    try:
        return _plan(model)[1], ""
    except NotRecognized as err:
        return None, str(err)


def _incoming(layer):
    """``||w_in||^2`` per unit of an affine layer (trailing axes; leading batch axes kept)."""
    if isinstance(layer, eqx.nn.Linear):
        sq = jnp.sum(layer.weight**2, axis=-1)
        return sq if layer.bias is None else sq + layer.bias**2
    nd = layer.num_spatial_dims
    sq = jnp.sum(layer.weight**2, axis=tuple(range(-nd - 1, 0)))
    return sq if layer.bias is None else sq + jnp.sum(layer.bias**2, axis=tuple(range(-nd, 0)))


def _outgoing(second, units: int):
    """``||w_out||^2`` per unit of the previous layer (``units`` of them), from ``second``."""
    W = second.weight
    if isinstance(second, eqx.nn.Conv):
        nd = second.num_spatial_dims
        return jnp.sum(W**2, axis=(-nd - 2, *range(-nd, 0)))
    if W.shape[-1] == units:
        return jnp.sum(W**2, axis=-2)
    W = W.reshape(*W.shape[:-1], units, W.shape[-1] // units)  # flattened (C, ...): channel-major
    return jnp.sum(W**2, axis=(-3, -1))


def auto_in_out_squares(model) -> tuple[jax.Array, jax.Array]:
    """Per hidden unit of a recognized network, ``(||w_in(h)||^2, ||w_out(h)||^2)``, units
    numbered layer by layer (neurons, or channels, in order) -- the same order and values as
    :class:`gflow.MLP` for the same weights. ``ValueError`` with the reason if the structure
    is not recognized."""
    steps, _ = _plan(model)
    ins, outs = [], []
    for first, second in steps:
        ins.append(_incoming(first))
        outs.append(_outgoing(second, _n_units(first)))
    return jnp.concatenate(ins, axis=-1), jnp.concatenate(outs, axis=-1)
