"""Pure statistics of a benchmark run: percentiles and rolling-window call usage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (NumPy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


@dataclass(frozen=True)
class Distribution:
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


def distribution(values: Sequence[float]) -> Distribution:
    if not values:
        raise ValueError("distribution of no values")
    return Distribution(
        count=len(values), p50=percentile(values, 50), p95=percentile(values, 95), p99=percentile(values, 99),
        max=float(max(values)), mean=float(sum(values) / len(values)),
    )


@dataclass(frozen=True)
class WindowUsage:
    """Calls inside rolling windows of ``window`` seconds over a phase."""

    calls: int
    seconds: float
    #: Most calls that started inside any one window (the number Marketo's 606 check compares).
    peak: int
    #: Average calls per window over the phase: calls / seconds × window (a phase shorter than one
    #: window counts as one window, so the mean never exceeds the peak).
    mean: float


def rolling_window_usage(times: Sequence[float], window: float, start: float, end: float) -> WindowUsage:
    """Usage of a rolling window by calls started at ``times`` (seconds) during [start, end]."""
    if window <= 0:
        raise ValueError("window must be positive")
    if end < start:
        raise ValueError("end before start")
    inside = sorted(t for t in times if start <= t <= end)
    peak = 0
    low = 0
    for high, t in enumerate(inside):
        while inside[low] <= t - window:
            low += 1
        peak = max(peak, high - low + 1)
    seconds = end - start
    mean = len(inside) / max(seconds, window) * window
    return WindowUsage(calls=len(inside), seconds=seconds, peak=peak, mean=mean)
