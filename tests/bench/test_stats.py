"""Percentiles and rolling-window usage: the arithmetic every reported number goes through."""

from __future__ import annotations

import pytest

from kmsync_bench.stats import distribution, percentile, rolling_window_usage, window_series


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 100.0


def test_percentile_ignores_input_order_and_handles_one_value() -> None:
    assert percentile([9.0, 1.0, 5.0], 50) == 5.0
    assert percentile([4.2], 99) == 4.2


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_distribution_summarises_a_skewed_latency_sample() -> None:
    d = distribution([1.0] * 98 + [10.0, 20.0])
    assert (d.count, d.p50, d.max) == (100, 1.0, 20.0)
    assert d.p99 == pytest.approx(10.1)
    assert d.mean == pytest.approx(1.28)


def test_rolling_window_peak_is_the_most_calls_in_any_window() -> None:
    # 10 calls in the first second, 5 more at t=15 (same window), 10 at t=30 (first ten have left).
    times = [0.1 * i for i in range(10)] + [15.0] * 5 + [30.0 + 0.1 * i for i in range(10)]
    usage = rolling_window_usage(times, 20.0, 0.0, 40.0)
    assert usage.calls == 25
    assert usage.peak == 15
    # sampled at t = 20..40: 5 calls (t=15) until 29, 15 from 31 to 34, 10 from 35 on
    assert 5 < usage.mean < usage.peak


def test_a_call_exactly_one_window_later_does_not_share_the_window() -> None:
    assert rolling_window_usage([0.0, 20.0], 20.0, 0.0, 30.0).peak == 1


def test_calls_outside_the_phase_do_not_count_and_a_short_phase_is_sampled_at_its_end() -> None:
    usage = rolling_window_usage([-5.0, 1.0, 2.0, 3.0, 99.0], 20.0, 0.0, 5.0)
    assert usage.calls == 3 and usage.peak == 3
    assert usage.mean == 3.0


def test_steady_use_of_a_budget_reads_as_that_budget_per_window() -> None:
    times = [i * 0.5 for i in range(200)]  # 40 calls per 20 s for 100 s
    usage = rolling_window_usage(times, 20.0, 0.0, 100.0)
    assert usage.peak == 40
    assert usage.mean == pytest.approx(40, abs=0.5)


def test_rolling_window_usage_rejects_a_bad_window() -> None:
    with pytest.raises(ValueError):
        rolling_window_usage([1.0], 0, 0.0, 1.0)


def test_window_series_samples_every_step_and_the_end() -> None:
    # 10 calls in the first second, 5 at t=15, 10 from t=30: the curve the calls chart draws.
    times = [0.1 * i for i in range(10)] + [15.0] * 5 + [30.0 + 0.1 * i for i in range(10)]
    series = window_series([-1.0, *times, 99.0], 20.0, 0.0, 40.5)
    assert len(series) == 42  # t = 0, 1, ..., 40 and the end, 40.5
    assert series[0] == 1 and series[1] == 10 and series[15] == 15 and series[20] == 14 and series[21] == 5
    assert series[35] == 10 and series[-1] == 10
    assert max(series) <= rolling_window_usage(times, 20.0, 0.0, 40.5).peak


def test_window_series_of_a_phase_shorter_than_a_step_has_its_end() -> None:
    assert window_series([0.2, 0.4], 20.0, 0.0, 0.5) == [0, 2]
    with pytest.raises(ValueError):
        window_series([1.0], 20.0, 2.0, 1.0)
