"""Architectures as JSON: :func:`model_spec`, :func:`model_from_spec`; and :func:`as_dag`."""

from __future__ import annotations

import jax.random as jr
from jaxtyping import PRNGKeyArray

from .base import AbstractReLUNet, require_relu_net
from .dag import DAGNet, Graph
from .mlp import MLP
from .shallow import ShallowReLU

__all__ = ["model_spec", "model_from_spec", "as_dag"]


def model_spec(model: AbstractReLUNet) -> dict:
    """A JSON-serializable description of a network's architecture (not its weights)."""
    return require_relu_net(model).spec()


def model_from_spec(spec: dict, key: PRNGKeyArray | None = None) -> AbstractReLUNet:
    """Build a network from :func:`model_spec` output (weights drawn with ``key``)."""
    key = jr.PRNGKey(0) if key is None else key
    kind = spec.get("type")
    if kind == "ShallowReLU":
        return ShallowReLU(spec["in_size"], spec["width"], spec["out_size"], bias=spec["bias"], key=key)
    if kind == "MLP":
        return MLP(spec["in_size"], spec["hidden"], spec["out_size"], bias=spec["bias"], key=key)
    if kind == "DAGNet":
        return DAGNet(Graph.from_json(spec["graph"]), key=key)
    raise ValueError(f"model type must be ShallowReLU, MLP or DAGNet, got {kind!r}.")


def as_dag(model: AbstractReLUNet) -> DAGNet:
    """The same network as a :class:`DAGNet` (edges listed hidden unit by hidden unit).

    A :class:`ShallowReLU` or :class:`MLP` is the special case of a DAG whose nodes are
    arranged in layers (docs/theory.md §2); the returned ``DAGNet`` computes the same function
    and has the same conserved quantities, in the same order.
    """
    return require_relu_net(model).as_dag()
