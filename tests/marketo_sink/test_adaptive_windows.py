"""Adaptive windows (adaptive.py, issue #18), pure: a window closes early only with nothing more waiting
and room in the budget; the pace follows the budget, not a fixed age."""

from __future__ import annotations

import pytest

from kmsync_sink.adaptive import BudgetView, early_close_in

IDLE = BudgetView(room=90, limit=90, window_seconds=20.0)


def test_an_idle_budget_and_no_lag_close_a_window_after_the_short_linger() -> None:
    assert early_close_in(2, 0.0, 0, IDLE, 3.0, 0.1) == pytest.approx(0.1)
    assert early_close_in(2, 0.15, 0, IDLE, 3.0, 0.1) == pytest.approx(-0.05)  # due now


def test_a_backlog_fills_the_window_as_before() -> None:
    assert early_close_in(2, 10.0, 1, IDLE, 3.0, 0.1) is None
    assert early_close_in(0, 10.0, 0, IDLE, 3.0, 0.1) is None


def test_no_room_for_the_windows_calls_means_no_early_close() -> None:
    assert early_close_in(5, 3.0, 0, BudgetView(room=2, limit=90, window_seconds=20.0), 3.0, 0.1) is None
    assert early_close_in(5, 3.0, 0, BudgetView(room=0, limit=90, window_seconds=20.0), 1.0, 0.1) is None


def test_with_less_than_half_the_budget_free_windows_are_paced_to_the_sustainable_rate() -> None:
    busy = BudgetView(room=30, limit=90, window_seconds=20.0)
    # 3 calls per window at 90 calls / 20 s: one window every 0.67 s keeps within the limit.
    assert early_close_in(2, 0.0, 0, busy, 3.0, 0.1) == pytest.approx(3 * 20 / 90)
    # The backfill lane's smaller limit paces it slower.
    assert early_close_in(2, 0.0, 0, BudgetView(room=8, limit=27, window_seconds=20.0), 3.0, 0.1) == \
        pytest.approx(3 * 20 / 27)


def test_a_trickle_never_outruns_the_limit() -> None:
    """Simulate a 20 records/s trickle of 3-call windows against a 90-call rolling window: the calls
    started in any 20 s stay within the limit, and records wait well under a second on average."""
    limit, window, rate, calls = 90, 20.0, 20.0, 3
    starts: list[float] = []
    t, pending_since, waits = 0.0, None, []
    step = 0.01
    while t < 120.0:
        arrived = int((t + step) * rate) - int(t * rate)
        if arrived and pending_since is None:
            pending_since = t
        if pending_since is not None:
            used = sum(1 for s in starts if s > t - window)
            budget = BudgetView(room=max(0, limit - used), limit=limit, window_seconds=window)
            due = early_close_in(1, t - pending_since, 0, budget, calls, 0.1)
            if due is not None and due <= 0:
                starts += [t] * calls
                waits.append(t - pending_since)
                pending_since = None
        t += step
    most = max(sum(1 for s in starts if x <= s < x + window) for x in starts)
    assert most <= limit, most
    assert sum(waits) / len(waits) < 1.0
