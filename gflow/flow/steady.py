"""Integrating to convergence (``t1 = inf``): a steady-state event, log-spaced saves, a polished end point.

``gradient_flow(model, data, loss, float("inf"))`` runs the flow until ``||grad L|| <= gtol``
(the event :class:`gflow.GradNormBelow`), at most to ``t_max``, saving at ``0`` and at
``n_save - 1`` log-spaced times in ``[t_max 1e-7, t_max]`` (a flow's time scales span decades:
the fast initial descent, plateaus near saddles, the slow exponential approach to a minimum);
saved times after the event hold the state there. The end state is then polished by Newton's
method and classified by :func:`gflow.classify_endpoint` (global minimum, local minimum, strict
saddle). ``gtol`` only has to put Newton in its basin: the solver's accepted states sit within
about ``atol`` of the flow, so ``||grad L||`` cannot go much below ``lambda_max atol``
(:func:`default_gtol`); the polish then reaches ``1e-13`` or below.
"""

from __future__ import annotations

import numpy as np

from ..endpoints import Endpoint, classify_endpoint, data_objective
from .events import GradNormBelow, parse_events

__all__ = [
    "is_inf",
    "default_gtol",
    "check_steady",
    "steady_times",
    "steady_events",
    "min_loss_of",
    "classify_end",
    "endpoint_stats",
    "STEADY_MAX_STEPS",
]

STEADY_MAX_STEPS = 2**18
_DECADES = 7


def is_inf(t1) -> bool:
    """Whether ``t1`` asks for integration to convergence (``float("inf")``)."""
    return isinstance(t1, (int, float, np.integer, np.floating)) and bool(np.isposinf(t1))


def default_gtol(rtol: float, atol: float) -> float:
    """``max(1e-6, 100 max(rtol, atol))``: the solver's accepted states sit within about
    ``atol + rtol |theta|`` of the flow, so near a minimum ``||grad L||`` stalls at about
    ``lambda_max`` times that and a smaller ``gtol`` would never be met."""
    return max(1e-6, 100.0 * max(float(rtol), float(atol)))


def check_steady(gtol, t_max, ts, on_event) -> None:
    """``ValueError`` (one sentence) for options that do not go with ``t1 = inf``."""
    for name, value in (("gtol", gtol), ("t_max", t_max)):
        real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not (real and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    if ts is not None:
        raise ValueError("t1=inf saves at its own log-spaced times; leave ts unset (or give a finite t1).")
    if on_event != "stop":
        raise ValueError("t1=inf ends at the steady-state event: on_event must be 'stop'.")


def steady_times(t_max: float, n_save: int) -> np.ndarray:
    """``0`` and ``n_save - 1`` log-spaced times from ``t_max 1e-7`` to ``t_max``."""
    if not isinstance(n_save, (int, np.integer)) or n_save < 2:
        raise ValueError(f"n_save must be an integer >= 2, got {n_save!r}.")
    top = np.log10(float(t_max))
    return np.concatenate([[0.0], np.logspace(top - _DECADES, top, int(n_save) - 1)])


def steady_events(gtol: float, events) -> tuple:
    """The steady-state event ``||grad L|| <= gtol`` first (its index 0 marks convergence), then
    the caller's events."""
    return (GradNormBelow(gtol), *parse_events(events))


def min_loss_of(data) -> float:
    """The global minimum value of the loss when it is known: ``noise^2 e / 2`` for a Gaussian
    population (its teacher is realizable), else ``0`` (a finite sample fitted exactly)."""
    if getattr(data, "is_population", False):
        return 0.5 * float(data.noise) ** 2 * data.out_size
    return 0.0


def classify_end(model, data, loss, options: dict | None = None) -> Endpoint:
    """:func:`gflow.classify_endpoint` of ``model`` on ``data``'s loss, ``min_loss`` from
    :func:`min_loss_of` unless ``options`` sets it."""
    options = dict(options or {})
    options.setdefault("min_loss", min_loss_of(data))
    return classify_endpoint(model, data_objective(loss), data, **options)


def endpoint_stats(end: Endpoint) -> dict:
    """The end point's numbers as row/stat values: ``endpoint`` (its class), ``endpoint_loss``
    (the polished loss), ``grad_norm_final``, ``hess_min``, ``n_negative``, ``n_zero``,
    ``critical``, ``n_units``, ``n_duplicate``, ``n_collapsed``, ``polished``."""
    return dict(
        endpoint=end.kind,
        endpoint_loss=end.loss,
        grad_norm_final=end.grad_norm,
        hess_min=end.hess_min,
        n_negative=end.n_negative,
        n_zero=end.n_zero,
        critical=end.critical,
        n_units=end.n_units,
        n_duplicate=end.n_duplicate,
        n_collapsed=end.n_collapsed,
        polished=end.polished,
    )
