"""Pure statistics of a benchmark run: percentiles and rolling-window call usage."""

from __future__ import annotations

import bisect
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
    #: Average occupancy of the rolling window: calls in (t - window, t] averaged over t every
    #: second from one window after the start to the end (the whole phase if it is shorter). Never
    #: above the peak.
    mean: float


def _in_window(ordered: Sequence[float], t: float, window: float) -> int:
    return bisect.bisect_right(ordered, t) - bisect.bisect_right(ordered, t - window)


def rolling_window_usage(times: Sequence[float], window: float, start: float, end: float,
                         step: float = 1.0) -> WindowUsage:
    """Usage of a rolling window by calls started at ``times`` (seconds) during [start, end]."""
    if window <= 0 or step <= 0:
        raise ValueError("window and step must be positive")
    if end < start:
        raise ValueError("end before start")
    inside = sorted(t for t in times if start <= t <= end)
    peak = max((_in_window(inside, t, window) for t in inside), default=0)
    first = min(start + window, end)
    samples = [_in_window(inside, first + i * step, window) for i in range(int((end - first) / step) + 1)]
    mean = sum(samples) / len(samples)
    return WindowUsage(calls=len(inside), seconds=end - start, peak=peak, mean=mean)


def window_series(times: Sequence[float], window: float, start: float, end: float, step: float = 1.0) -> list[int]:
    """Calls started in the rolling window (t - window, t] at t = start, start + step, ... and at ``end``
    (the last sample, however close to the one before), counting only calls inside [start, end]: the
    curve the report's charts draw. Sampled, so its maximum is at most ``rolling_window_usage``'s peak."""
    if window <= 0 or step <= 0:
        raise ValueError("window and step must be positive")
    if end < start:
        raise ValueError("end before start")
    inside = sorted(t for t in times if start <= t <= end)
    at = [start + i * step for i in range(math.ceil((end - start) / step))] + [end]
    return [_in_window(inside, t, window) for t in at]
