"""Timing helpers shared by the benchmarks: a per-method time box and a median call time."""

from __future__ import annotations

import time

import numpy as np


class TimeBox:
    """A method's settings run from cheapest to most expensive within ``budget_s`` seconds.

    Before each run, :meth:`allows` checks that the time used so far plus ``growth`` times
    the last run's time (the expected cost of the next, tighter setting) stays within the
    budget, so one run cannot overshoot the box by much; the first run is always allowed.
    """

    def __init__(self, budget_s: float, growth: float = 5.0):
        self.budget_s, self.growth = budget_s, growth
        self.used = self.last = 0.0

    def allows(self) -> bool:
        return self.used + self.growth * self.last <= self.budget_s

    def add(self, seconds: float) -> None:
        self.used += seconds
        self.last = seconds


def call_time(fn, n: int = 20) -> float:
    """Median seconds of ``n`` calls of ``fn`` (after one call)."""
    fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
