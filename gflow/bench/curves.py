"""Reading a cost at a target error off a measured work–precision curve.

A method is run at several settings (tolerance, learning rate, step); each run gives a
cost (gradient evaluations or seconds) and an error. The cost at a target error is read
off the curve by linear interpolation in ``(log error, log cost)`` between the two runs
that bracket the target, taking the cheapest crossing: the runs are sorted by cost and
the first run whose error is at or below the target ends the bracket.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Reading:
    """A cost read off a curve. ``how``: ``interpolated`` (between two runs), ``at most``
    (the cheapest run already reaches the target: an upper bound), ``extrapolated`` (the
    fitted log-log slope of the last runs carried past the cheapest error measured), or
    ``not reached`` (``cost`` is ``inf``)."""

    cost: float
    how: str

    def __str__(self) -> str:
        if not math.isfinite(self.cost):
            return "not reached"
        mark = {"interpolated": "", "at most": "≤ ", "extrapolated": "≈ "}[self.how]
        suffix = " (extrapolated)" if self.how == "extrapolated" else ""
        return f"{mark}{self.cost:.3g}{suffix}"


def cost_at(costs, errors, target: float, *, extrapolate: bool = False, fit_last: int = 3) -> Reading:
    """The cost at which a method's error first reaches ``target`` (see the module doc).

    ``extrapolate``: when no run reaches the target, fit ``log cost`` against
    ``log error`` on the ``fit_last`` most accurate finite runs (least squares) and extend
    it; only meaningful for a method with a known order (GD: first order).
    """
    pts = _points(costs, errors)
    for i, (c, e) in enumerate(pts):
        if e <= target:
            if i == 0:
                return Reading(c, "at most")
            c0, e0 = pts[i - 1]
            frac = (math.log(target) - math.log(e0)) / (math.log(e) - math.log(e0))
            return Reading(math.exp(math.log(c0) + frac * (math.log(c) - math.log(c0))), "interpolated")
    if extrapolate and len(pts) >= 2:
        tail = sorted(pts, key=lambda p: p[1])[:fit_last]
        le, lc = np.log([p[1] for p in tail]), np.log([p[0] for p in tail])
        slope, icept = np.polyfit(le, lc, 1)
        if slope < 0:
            return Reading(float(math.exp(icept + slope * math.log(target))), "extrapolated")
    return Reading(float("inf"), "not reached")


def order(costs, errors, fit_last: int = 3) -> float:
    """Observed order ``p`` in ``error ~ cost^-p`` over the ``fit_last`` most accurate runs."""
    pts = sorted(_points(costs, errors), key=lambda p: p[1])[:fit_last]
    if len(pts) < 2:
        return float("nan")
    slope = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]
    return float(-slope)


def _points(costs, errors) -> list[tuple[float, float]]:
    """``(cost, error)`` pairs with positive cost and finite positive error, by cost."""
    pairs = ((float(c), float(e)) for c, e in zip(costs, errors, strict=True))
    return sorted((c, e) for c, e in pairs if c > 0 and np.isfinite(e) and e > 0)
