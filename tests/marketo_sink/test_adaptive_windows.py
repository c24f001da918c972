"""Adaptive windows (adaptive.py, issue #18), pure: a window closes early only with nothing more waiting
and room in the budget; the pace follows the budget, not a fixed age."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kmsync_marketo.endpoints import BATCH_MAX
from kmsync_sink.adaptive import BudgetView, auto_bulk_min_records, early_close_in, live_pacing_limit
from kmsync_sink.planner import PlannerConfig, plan_window

from .test_pipeline import A

IDLE = BudgetView(room=90, limit=90, window_seconds=20.0)
INF = math.inf  # no window closed yet


def test_an_idle_budget_and_no_lag_close_a_window_after_the_short_linger() -> None:
    assert early_close_in(2, 0.0, INF, 0, IDLE, 3.0, 0.1) == pytest.approx(0.1)
    assert early_close_in(2, 0.15, INF, 0, IDLE, 3.0, 0.1) == pytest.approx(-0.05)  # due now


def test_a_backlog_fills_the_window_as_before() -> None:
    assert early_close_in(2, 10.0, INF, 1, IDLE, 3.0, 0.1) is None
    assert early_close_in(0, 10.0, INF, 0, IDLE, 3.0, 0.1) is None


def test_no_room_for_the_windows_calls_closes_it_when_the_rolling_window_frees_the_room() -> None:
    assert early_close_in(5, 3.0, INF, 0, BudgetView(room=2, limit=90, window_seconds=20.0, room_in=1.5),
                          3.0, 0.1) == pytest.approx(1.5)
    # Not known (the default): the usual count, bytes and age limits.
    assert early_close_in(5, 3.0, INF, 0, BudgetView(room=2, limit=90, window_seconds=20.0), 3.0, 0.1) is None
    assert early_close_in(5, 3.0, INF, 0, BudgetView(room=0, limit=90, window_seconds=20.0), 1.0, 0.1) is None


def test_with_less_than_half_the_budget_free_windows_are_paced_to_the_sustainable_rate() -> None:
    busy = BudgetView(room=30, limit=90, window_seconds=20.0)
    # 3 calls per window at 90 calls / 20 s: one window every 0.67 s keeps within the limit, counted from
    # the previous window's close.
    assert early_close_in(2, 0.0, 0.0, 0, busy, 3.0, 0.1) == pytest.approx(3 * 20 / 90)
    assert early_close_in(2, 0.0, 0.5, 0, busy, 3.0, 0.1) == pytest.approx(3 * 20 / 90 - 0.5)
    # A smaller limit paces slower.
    assert early_close_in(2, 0.0, 0.0, 0, BudgetView(room=8, limit=27, window_seconds=20.0), 3.0, 0.1) == \
        pytest.approx(3 * 20 / 27)


def test_the_pace_is_kept_between_closes_not_added_to_each_window() -> None:
    """A burst once a second, 2 calls per window against 50 calls / 20 s (one window per 0.8 s): the burst
    arriving 1 s after the last close goes out after the linger, not 0.8 s later (issue #18, section 3)."""
    busy = BudgetView(room=10, limit=50, window_seconds=20.0)
    assert early_close_in(20, 0.0, 1.0, 0, busy, 2.0, 0.1) == pytest.approx(0.1)
    # 0.3 s after the last close the pace still holds it back 0.5 s.
    assert early_close_in(20, 0.0, 0.3, 0, busy, 2.0, 0.1) == pytest.approx(0.5)


def test_a_trickle_never_outruns_the_limit() -> None:
    """Simulate a 20 records/s trickle of 3-call windows against a 90-call rolling window: the calls
    started in any 20 s stay within the limit, and records wait well under a second on average."""
    limit, window, rate, calls = 90, 20.0, 20.0, 3
    starts: list[float] = []
    t, pending_since, waits, closed = 0.0, None, [], -math.inf
    step = 0.01
    while t < 120.0:
        arrived = int((t + step) * rate) - int(t * rate)
        if arrived and pending_since is None:
            pending_since = t
        if pending_since is not None:
            used = sum(1 for s in starts if s > t - window)
            budget = BudgetView(room=max(0, limit - used), limit=limit, window_seconds=window)
            due = early_close_in(1, t - pending_since, t - closed, 0, budget, calls, 0.1)
            if due is not None and due <= 0:
                starts += [t] * calls
                closed = t
                waits.append(t - pending_since)
                pending_since = None
        t += step
    most = max(sum(1 for s in starts if x <= s < x + window) for x in starts)
    assert most <= limit, most
    assert sum(waits) / len(waits) < 1.0


def test_bulk_is_chosen_per_window_from_volume_and_budget() -> None:
    # An idle budget: bulk from five full REST calls' worth (what a bulk job costs in calls).
    assert auto_bulk_min_records(1_499, room=90, base=1_500, batch_max=300) == 1_500
    # No room for the window's 5 REST calls now: bulk from two calls' worth, saving the wait too.
    assert auto_bulk_min_records(1_200, room=3, base=1_500, batch_max=300) == 600
    assert auto_bulk_min_records(300, room=0, base=1_500, batch_max=300) == 600


def test_the_automatic_threshold_sends_a_large_window_bulk_and_a_small_one_rest(ops: Any) -> None:
    big = [ops.pending(ops.lead(f"u{i}@x.io", firstName="A")) for i in range(1_500)]
    small = big[:1_499]
    for window, bulk in ((big, True), (small, False)):
        threshold = auto_bulk_min_records(len(window), room=90, base=1_500, batch_max=BATCH_MAX)
        plan = plan_window(window, PlannerConfig(BATCH_MAX, bulk_min_records=threshold), known_lead=lambda e: False)
        assert plan.use_bulk is bulk
        assert plan.calls == (1 if bulk else 5)


def test_an_instance_threshold_overrides_the_automatic_one() -> None:
    from kmsync_sink.settings import SinkSettings

    assert SinkSettings().bulk_min_records is None  # automatic unless set
    assert SinkSettings(bulk_min_records=0).bulk_min_records == 0


def test_live_paces_against_the_limit_less_an_active_backfills_share() -> None:
    assert live_pacing_limit(effective=90, backfill_cap=27, backfill_active=False) == 90
    assert live_pacing_limit(effective=90, backfill_cap=27, backfill_active=True) == 63
    # With the backfill active, a 2-call live window paces at one per 2 × 20 / 63 s instead of 2 × 20 / 90 s.
    busy = BudgetView(room=30, limit=live_pacing_limit(90, 27, True), window_seconds=20.0)
    assert early_close_in(2, 0.0, 0.0, 0, busy, 2.0, 0.1) == pytest.approx(2 * 20 / 63)


def _worker(lane: Any = "live") -> Any:
    """An instance worker on an in-memory Marketo, its window age limit 5 s, its clock at 100 s."""
    import random

    from kmsync_sink.memory import ActivityWrites
    from kmsync_sink.metrics import SinkMetrics
    from kmsync_sink.settings import WindowSettings
    from kmsync_sink.worker import InstanceWorker, WorkerContext

    from .test_pipeline import Marketo as MemoryMarketo
    from .test_pipeline import Published, RestWriter

    context = WorkerContext(WindowSettings(window_max_age_seconds=5.0, sink_usage_reconcile_minutes=0),
                            ActivityWrites(), Published(), SinkMetrics(), lambda: 100.0)
    return InstanceWorker(A, RestWriter(MemoryMarketo()), context, rng=random.Random(7), lane=lane)


@pytest.mark.parametrize("lane", ["live", "backfill"])
def test_only_live_windows_close_early(ops: Any, lane: str) -> None:
    # A backfill's loader is often a moment behind the sink (lag 0 with more rows coming): its windows
    # still fill for the fewest calls; the quick bench's backfill made more calls than REST otherwise.
    from kmsync_marketo.lanes import BACKFILL, LIVE

    worker = _worker(LIVE if lane == "live" else BACKFILL)
    worker.add(ops.pending(ops.lead("a@x.com", munchkin=A), arrived=99.0))
    worker.note_lag(0)  # the router's report after the poll
    due = worker._early_close(100.0)
    if lane == "live":
        assert due is not None and due <= 0.1  # idle budget, nothing waiting: closes after the linger
    else:
        assert due is None  # waits for count, bytes or age


def test_a_lag_falling_to_zero_wakes_a_window_that_waited_for_the_rest_of_a_burst(ops: Any) -> None:
    # Without the wake, the window slept until the next record or its 5 s age limit (section 3's p99 of 6 s).
    worker = _worker()
    worker.note_lag(40)
    worker.add(ops.pending(ops.lead("a@x.com", munchkin=A), arrived=99.0))
    assert worker._early_close(100.0) is None  # more of the burst is coming: wait
    worker._wake.clear()  # the loop went to sleep
    worker.note_lag(0)
    assert worker._wake.is_set()
    due = worker._early_close(100.0)
    assert due is not None and due <= 0.1


def test_a_record_added_after_the_last_lag_report_waits_for_the_next_one(ops: Any) -> None:
    # The lag the router reported before this poll says nothing about what came with it: a backlog's first
    # records closed a partial window on a lag of 0 read while the backlog was still being produced.
    worker = _worker()
    worker.note_lag(0)
    worker.add(ops.pending(ops.lead("a@x.com", munchkin=A), arrived=99.0))
    assert worker._early_close(100.0) is None
    worker.note_lag(0)  # the router's report after this poll: nothing more
    due = worker._early_close(100.0)
    assert due is not None and due <= 0.1
