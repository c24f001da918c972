"""Adaptive windows (issue #18): when to close a window before its age limit (pure).

A fixed age trades latency for calls: at 5 s a live trickle waits ~4 s per record for nothing while
the budget idles; at 0.2 s the calls outrun the limiter and records wait in it instead. So a window
closes early only when nothing more is coming and the budget has room for its calls:

- **Nothing more is waiting.** The lane's consumer lag (records in Kafka not read yet) is 0. Under a
  backlog the count, bytes and age limits apply as before: windows fill to 300 (or the bulk size).
- **The budget has room.** The lane's limiter room (calls it could start now without waiting for the
  rolling window, ``InstanceLimiter.room``) covers the window's calls (estimated from recent windows);
  without it the window closes when the rolling window frees that room (``seconds_until_room``), not at
  its age limit (issue #18: walk-ins right after a stream waited their 5 s age).
  With at least half the lane's limit free the window closes after ``min_linger`` (a burst's records
  arrive together); with less, windows are paced so their calls fit the lane's sustainable rate: at most
  one window per (calls per window × window seconds / limit), counted from the previous window's close,
  so a steady trickle never outruns the limiter. The pace is kept between closes, not added to each
  window's first record: a burst that comes once a second, when the pace allows a window every 0.8 s,
  goes out after the linger instead of waiting 0.8 s more (issue #18: section 3's bursts waited 1.2 s,
  then the next burst with them, one window per 2 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetView:
    """What the limiter says about the lane right now."""

    #: Calls the lane could start now without waiting (``InstanceLimiter.room``).
    room: int
    #: The lane's calls per rolling window (its effective limit).
    limit: int
    #: The rolling window, in seconds.
    window_seconds: float
    #: Seconds until the room covers the window's calls (``InstanceLimiter.seconds_until_room``; inf: unknown).
    room_in: float = math.inf


def early_close_in(
    ready: int, oldest_age: float, since_close: float, lag: int, budget: BudgetView, calls_per_window: float,
    min_linger: float,
) -> float | None:
    """Seconds from now at which the window may close early (≤ 0: now), or None when it must wait for
    the usual count, bytes or age limits (a backlog, or no room in the budget for its calls).
    ``oldest_age``: seconds since the window's oldest record arrived; ``since_close``: since the lane's
    previous window closed (``math.inf`` before the first)."""
    if ready <= 0 or lag > 0 or budget.limit <= 0:
        return None
    linger = min_linger - oldest_age
    if budget.room < max(1.0, calls_per_window):
        # No room for its calls now: close when the rolling window frees it (more records may join until
        # then), or on the usual limits when that time is unknown.
        return None if math.isinf(budget.room_in) else max(linger, budget.room_in)
    if 2 * budget.room >= budget.limit:
        return linger
    pace = calls_per_window * budget.window_seconds / budget.limit
    return max(linger, pace - since_close)


def live_pacing_limit(effective: int, backfill_cap: int, backfill_active: bool) -> int:
    """The calls per rolling window the live lane's adaptive windows pace themselves against: the whole
    effective limit, less the backfill's cap while the backfill lane is active (live is served first anyway;
    pacing below it leaves the backfill its share instead of spending the budget on sub-second windows).
    Only live windows close early: a backfill's windows fill for the fewest calls (worker._early_close)."""
    return max(1, effective - backfill_cap) if backfill_active else effective


def auto_bulk_min_records(records: int, room: int, base: int, batch_max: int) -> int:
    """The bulk threshold of one window when the instance leaves it automatic: ``base`` records (bulk saves
    calls from about five full REST calls, what a job costs: a submission, status polls, a file), or two
    full calls' worth when the lane's budget cannot carry the window's REST calls now (bulk then also
    saves the wait)."""
    if math.ceil(records / batch_max) > room:
        return min(base, 2 * batch_max)
    return base
