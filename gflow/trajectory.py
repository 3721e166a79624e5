"""One result type for the exact flow and for discrete optimizers: :class:`Trajectory`."""

from __future__ import annotations

import json
from typing import Any, cast

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._atomic import atomic_savez
from .conservation import Conservation, conservation_of
from .invariants import unit_norms
from .losses import full_batch_loss
from .nets.base import AbstractReLUNet
from .nets.spec import model_from_spec

__all__ = ["flow_status", "Status", "Trajectory", "STAT_KEYS", "FLOW_STAT_KEYS", "status_name", "status_from_code"]


# eqx.Enumeration is an enum.Enum to type checkers, and an Enum with members cannot be subclassed;
# Equinox supports extending an enumeration at run time (Diffrax's RESULTS extends Optimistix's).
class Status(diffrax.RESULTS):  # pyright: ignore[reportGeneralTypeIssues]
    """How a trajectory ended: Diffrax's ``RESULTS`` (``successful``, ``max_steps_reached``,
    ``dt_min_reached``, ``event_occurred``, the nonlinear-solver failures of implicit
    methods, ...), whose ``nonfinite`` item gflow also uses for a loss or parameters that
    became NaN or infinite. Never raised: stored in ``Trajectory.status`` (as Diffrax's
    ``Solution.result`` with ``throw=False``); :func:`flow_status` converts a Diffrax result."""


def flow_status(result) -> Status:
    """The :class:`Status` of a Diffrax ``RESULTS`` item (same name, same meaning)."""
    return Status.promote(result)


_STATUS_NAMES = tuple(Status._name_to_item)

STAT_KEYS = ("steps", "accepted", "rejected", "grad_evals", "wall_time")
# the exact flow (gflow.flow) adds kink diagnostics (gflow.kinks, gflow.controller)
FLOW_STAT_KEYS = STAT_KEYS + (
    "dtmin_steps",
    "located",
    "jumps",
    "pattern_changes",
    "max_flips",
    "sliding",
    "pins",
    "unpins",
    "pinned",
    "first_pin_time",
    "event",
    "event_time",
)  # plus t_<name> per requested event


def status_name(status) -> str:
    """The name (``"successful"``, ``"max_steps_reached"``, ...) of a status item or code."""
    code = getattr(status, "_value", status)
    return _STATUS_NAMES[int(np.asarray(code))]


def status_from_code(code) -> "Status":
    """The :class:`Status` item with integer value ``code`` (inverse of ``item._value``)."""
    return eqx.tree_at(lambda s: s._value, Status.successful, jnp.asarray(code, jnp.int32))


class Trajectory(eqx.Module):
    """A simulated trajectory ``theta(t)`` at saved times.

    **Fields:**
    - ``ts`` (T,): saved times (``t = lr * step`` for discrete optimizers).
    - ``models``: the network with a leading time axis on every array.
    - ``loss`` (T,), ``test_loss`` (T,) or ``None``: full-batch losses at ``ts``.
    - ``conserved`` (T, hidden): ``c_h(t)`` of every hidden unit (docs/theory.md §1-2), or
      ``None`` for a network without known conserved quantities (:mod:`gflow.conservation`).
    - ``stats``: ``steps`` (attempted), ``accepted``, ``rejected``, ``grad_evals``
      (full-batch gradient evaluations; minibatch gradients for SGD), ``wall_time`` (s).
    - ``status``: a :class:`Status` item.
    - ``conserved_source`` (static): where ``conserved`` came from -- ``"interface"``,
      ``"equinox"``, ``"user"`` or ``"none"`` (:class:`gflow.conservation.Conservation`).
    - ``endpoint``: for a flow run to convergence (``t1=inf``), the polished, classified end
      point (:class:`gflow.Endpoint`); else ``None``. :meth:`save` keeps its numbers (in
      ``stats``), not the polished network or the spectrum.
    """

    ts: Float[Array, " T"]
    models: eqx.Module
    loss: Float[Array, " T"]
    test_loss: Float[Array, " T"] | None
    conserved: Float[Array, "T hidden"] | None
    stats: dict[str, Array]
    status: Status  # a Status item
    conserved_source: str = eqx.field(static=True, default="interface")
    endpoint: Any = None

    @property
    def final(self):
        """The network at the last saved time."""
        return at_time(self.models, -1)

    def model_at(self, i: int):
        """The network at saved time index ``i``."""
        return at_time(self.models, i)

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    @property
    def drift(self) -> tuple[Array, Array] | None:
        """``(max_{t,h} |c_h(t) - c_h(0)|, same / max_h(||w_in||^2 + ||w_out||^2 at t=0))``;
        ``None`` without conserved quantities; the relative value is NaN when no unit norms
        are known (conserved quantities from a user's callable)."""
        if self.conserved is None:
            return None
        d = jnp.max(jnp.abs(self.conserved - self.conserved[..., :1, :]), axis=(-2, -1))
        if self.conserved_source in ("interface", "equinox"):
            return d, d / jnp.max(unit_norms(self.model_at(0)), axis=-1)
        return d, jnp.full_like(d, jnp.nan)

    def summary(self) -> dict:
        """Plain-Python summary: final losses, drift, stats and status."""
        d = self.drift
        d_abs, d_rel = (np.nan, np.nan) if d is None else d
        out = dict(
            t1=float(self.ts[-1]),
            final_loss=float(self.loss[-1]),
            status=self.status_name,
            drift=float(d_abs),
            relative_drift=float(d_rel),
        )
        if self.test_loss is not None:
            out["final_test_loss"] = float(self.test_loss[-1])
        out.update({k: _plain(v) for k, v in self.stats.items()})
        if self.endpoint is not None:
            out["endpoint"] = self.endpoint.kind
        return out

    def save(self, path: str) -> None:
        """Write to ``path`` (``.npz``) atomically; :meth:`load` restores it exactly."""
        leaves = jax.tree_util.tree_leaves(eqx.filter(self.models, eqx.is_array))
        arrays = {f"model_{i}": np.asarray(x) for i, x in enumerate(leaves)}
        arrays.update(
            ts=np.asarray(self.ts),
            loss=np.asarray(self.loss),
            status=np.asarray(self.status._value),
            conserved_source=np.asarray(self.conserved_source),
        )
        if self.conserved is not None:
            arrays["conserved"] = np.asarray(self.conserved)
        if self.test_loss is not None:
            arrays["test_loss"] = np.asarray(self.test_loss)
        arrays.update({f"stat_{k}": np.asarray(v) for k, v in self.stats.items()})
        if isinstance(self.final, AbstractReLUNet):
            arrays["spec"] = np.asarray(json.dumps(self.final.spec()))
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str, like=None) -> "Trajectory":
        """Read a file written by :meth:`save`. ``like``: a network of the same structure
        (any weights), needed for a network that is not a gflow ``AbstractReLUNet`` (those
        are rebuilt from the saved architecture)."""
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        rest = None
        if like is not None:
            skeleton, rest = eqx.partition(like, eqx.is_array)
        elif "spec" in arrays:
            skeleton = model_from_spec(json.loads(str(arrays["spec"])))
        else:
            raise ValueError(
                f"{path} holds a network gflow cannot rebuild: pass like=<a network of the same structure>."
            )
        treedef = jax.tree_util.tree_structure(skeleton)
        n_leaves = treedef.num_leaves
        models = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[f"model_{i}"]) for i in range(n_leaves)])
        models = models if rest is None else eqx.combine(models, rest)
        stats = {k[5:]: jnp.asarray(v) for k, v in arrays.items() if k.startswith("stat_")}
        return cls(
            ts=jnp.asarray(arrays["ts"]),
            models=models,
            loss=jnp.asarray(arrays["loss"]),
            test_loss=jnp.asarray(arrays["test_loss"]) if "test_loss" in arrays else None,
            conserved=jnp.asarray(arrays["conserved"]) if "conserved" in arrays else None,
            stats=stats,
            status=status_from_code(arrays["status"]),
            conserved_source=str(arrays["conserved_source"]) if "conserved_source" in arrays else "interface",
        )


def at_time(models, i):
    """The network at time index ``i`` of ``models`` (whose parameters -- inexact arrays --
    carry a leading time axis; other leaves, e.g. an activation function, are shared)."""
    params, static = eqx.partition(models, eqx.is_inexact_array)
    return eqx.combine(jax.tree_util.tree_map(lambda x: x[i], params), static)


def _plain(v):
    """A stat as a Python scalar (bool, int or float), or a list for an array stat."""
    a = np.asarray(v)
    if a.ndim:
        return a.tolist()
    if a.dtype == bool:
        return bool(a)
    return int(a) if np.issubdtype(a.dtype, np.integer) else float(a)


def evaluate(ts, models, data, loss_fn, stats, status, laws: Conservation | None = None) -> Trajectory:
    """Losses and conserved quantities at every saved model (``models`` has a time axis);
    ``laws``: where the conserved quantities come from (default: :func:`conservation_of`)."""
    laws = conservation_of(models) if laws is None else laws
    params, static = eqx.partition(models, eqx.is_inexact_array)

    def full_loss(p, x, y):
        return full_batch_loss(eqx.combine(p, static), x, y, loss_fn)

    loss = jax.vmap(lambda p: data.loss(eqx.combine(p, static), loss_fn))(params)
    test = None
    if data.has_test:
        test = jax.vmap(full_loss, in_axes=(0, None, None))(params, data.x_test, data.y_test)
    finite = jnp.all(jnp.isfinite(loss)) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(params)])
    )
    # an item inherited from diffrax.RESULTS is typed as one; at run time it is a Status item
    nonfinite = cast(Status, Status.nonfinite)
    status = Status.where(finite | (status != Status.successful), status, nonfinite)
    return Trajectory(
        ts=ts,
        models=models,
        loss=loss,
        test_loss=test,
        conserved=laws.values_over(models),
        stats=stats,
        status=status,
        conserved_source=laws.source,
    )
