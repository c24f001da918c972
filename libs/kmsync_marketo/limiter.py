"""The per-instance budget: rolling window, concurrency cap, daily quota, adaptive slow-down, parking.

Why not a leaky bucket: Marketo counts "the past 20 seconds" (docs/reference/marketo-api.md §2.1). A bucket of 100
per 20 s admits 100 at t=0 and ~50 more by t=10 s — 150 in one window (docs/reference/streaming.md §5.2). This
limiter keeps a log of call start times and admits a call only while fewer than the limit started
in the last window, so no rolling window ever holds more than the limit (docs/reference/streaming.md §5.3).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import random
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from kmsync_common.clock import Clock, SystemClock
from kmsync_marketo import endpoints as ep
from kmsync_marketo.lanes import BACKFILL, LIVE, Lane, current_lane
from kmsync_marketo.settings import LimiterSettings

log = logging.getLogger(__name__)

#: Longest single sleep while parked, so a wall-clock jump is noticed.
_PARK_CHUNK_SECONDS = 300.0


def next_quota_reset(now: datetime, tz: ZoneInfo = ep.QUOTA_RESET_TZ) -> datetime:
    """The next midnight in Marketo's reset zone after ``now`` (aware), as an aware UTC time.

    Midnight always exists in America/Chicago (DST changes at 02:00), so local date + 1 at 00:00
    is exact on 23- and 25-hour days.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(tz)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0, 0), tzinfo=tz)
    return midnight.astimezone(now.tzinfo)


class SlidingLog:
    """Times of the calls in the current rolling window (pure; times in seconds).

    A call is recorded when it starts and, once it has finished, moved to its finish time
    (``complete``): Marketo counts a call when it arrives, which is somewhere between the two, so
    holding the place until the finish never lets a slow call's arrival fall outside our window
    while Marketo still counts it (a start stamp alone let 53 calls into one of Marketo's windows
    against a ceiling of 50 on a loaded machine).
    """

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._times: list[float] = []

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        if self._times and self._times[0] <= cutoff:
            self._times = [t for t in self._times if t > cutoff]

    def count(self, now: float) -> int:
        self._prune(now)
        return len(self._times)

    def delay(self, now: float, limit: int) -> float:
        """Seconds until one more call may start with at most ``limit`` in any window."""
        self._prune(now)
        n = len(self._times)
        if n < limit:
            return 0.0
        # The entry that must leave the window so that fewer than `limit` remain.
        return max(0.0, self._times[n - limit] + self.window - now)

    def record(self, now: float) -> None:
        bisect.insort(self._times, now)

    def complete(self, started: float, finished: float) -> None:
        """Move a recorded call from its start time to its finish time."""
        i = bisect.bisect_left(self._times, started)
        if i < len(self._times) and self._times[i] == started and finished > started:
            del self._times[i]
            bisect.insort(self._times, finished)


class ThrottleTally:
    """Answers and 606/615 throttles of recent calls, keyed by the call's start time (pure).

    Tells rate trouble from noise: a 606 now and then (Marketo answers some at random, a chaos
    plan injects 10 %) is not worth halving the rate for; a share of throttled answers above the
    tolerance among the calls sent since the last decrease is (a competitor fills the window).
    """

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._answered: deque[float] = deque()
        self._throttled: deque[float] = deque()

    @staticmethod
    def _insert(times: deque[float], started: float) -> None:
        if not times or times[-1] <= started:
            times.append(started)
        else:  # calls finish out of order; keep the start times sorted
            times.insert(bisect.bisect_right(times, started), started)

    def answered(self, started: float) -> None:
        self._insert(self._answered, started)

    def throttled(self, started: float) -> None:
        self._insert(self._throttled, started)

    def counts(self, now: float, since: float) -> tuple[int, int]:
        """(answers, throttles) of the calls that started after ``since`` within the last window."""
        cutoff = now - self.window
        for times in (self._answered, self._throttled):
            while times and times[0] <= cutoff:
                times.popleft()
        after = max(since, cutoff)
        answered = len(self._answered) - bisect.bisect_right(self._answered, after)
        throttled = len(self._throttled) - bisect.bisect_right(self._throttled, after)
        return answered, throttled


@dataclass
class LimiterStats:
    """Counters for metrics (exported by the sink as Prometheus series)."""

    instance: str
    calls_started: int = 0
    calls_not_counted: int = 0
    waits: int = 0
    wait_seconds: float = 0.0
    throttles: dict[str, int] = field(default_factory=dict)
    #: Throttles that lowered the rate, and those below the tolerance that did not.
    rate_decreases: int = 0
    throttles_tolerated: int = 0
    quota_parks: int = 0
    daily_used: int = 0
    daily_budget: int = 0
    window_used: int = 0
    window_limit: int = 0
    #: Backfill calls in the current rolling window and the lane's cap (lanes.py).
    backfill_window_used: int = 0
    backfill_window_limit: int = 0
    rate_fraction: float = 1.0
    in_flight: int = 0
    concurrency_cap: int = 0
    parked_until: datetime | None = None


class Permit:
    """Held while one call is in flight; ``not_counted`` gives the daily unit back (§2.1 starred)."""

    def __init__(self) -> None:
        self.not_counted = False
        #: Set by the caller when the answer was 606/615 (it then reports it with ``on_throttle``).
        self.throttled = False
        #: Monotonic time the call was admitted.
        self.started = 0.0


class InstanceLimiter:
    """One per Marketo instance per process; every caller on that instance goes through it."""

    def __init__(
        self,
        instance: str,
        settings: LimiterSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.instance = instance
        self.settings = settings or LimiterSettings()
        self.clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        s = self.settings
        self._log = SlidingLog(s.rate_window_seconds + s.window_margin_seconds)
        #: Calls of the backfill lane only (its own cap, lanes.py).
        self._lane_log = SlidingLog(s.rate_window_seconds + s.window_margin_seconds)
        self._backfill_in_flight = 0
        #: Live calls waiting for a slot or a place in the window: backfill calls wait while any does.
        self._live_waiting = 0
        #: ... of which those holding a slot (a backfill call in _admit waits for them, never for a
        #: live call waiting for the slot that backfill call holds).
        self._live_admitting = 0
        self._live_clear = asyncio.Event()
        self._live_clear.set()
        self._tally = ThrottleTally(s.rate_window_seconds + s.window_margin_seconds)
        self._cond = asyncio.Condition()
        self._in_flight = 0
        self._cap = s.max_concurrency
        self._fraction = 1.0
        self._streak = 0
        self._run = 0  # throttled answers in a row since the last decrease
        self._paused_until = 0.0
        self._last_change = self.clock.monotonic()
        self._last_decrease: float | None = None
        self._parked_until: datetime | None = None
        self._reset_at = next_quota_reset(self.clock.now())
        self._daily_used = 0
        self._instance_used: int | None = None
        self._own_since_reconcile = 0
        self._stats = LimiterStats(instance=instance)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconciling = False

    # ----- admission -----
    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Permit]:
        """Wait for a concurrency slot, a place in the rolling window and daily budget; the call
        counts as started when this yields. A call of the backfill lane (lanes.py: the calling task's
        lane) also needs a place in the backfill lane's own window and concurrency, and waits while
        any live call is waiting: live is served first, backfill gets what live leaves."""
        backfill = current_lane() == BACKFILL
        await self._enter(backfill)
        permit = Permit()
        admitted = False
        try:
            permit.started = await self._admit(backfill)
            admitted = True
            if not backfill:
                self._live_admitted()
            yield permit
        finally:
            if not admitted and not backfill:
                self._live_admitted()
            if admitted:
                self._finished(permit, backfill)
            if permit.not_counted:
                self._daily_used = max(0, self._daily_used - 1)
                self._own_since_reconcile = max(0, self._own_since_reconcile - 1)
                self._stats.calls_not_counted += 1
            async with self._cond:
                self._in_flight -= 1
                self._backfill_in_flight -= int(backfill)
                self._cond.notify_all()

    async def _enter(self, backfill: bool) -> None:
        """Take a concurrency slot (a backfill call: within the lane's own cap, while no live call waits)."""
        if not backfill:
            self._live_waiting += 1
        try:
            async with self._cond:
                await self._cond.wait_for(lambda: self._in_flight < self._cap and (
                    not backfill or (self._backfill_in_flight < self._backfill_cap() and not self._live_waiting)))
                self._in_flight += 1
                self._backfill_in_flight += int(backfill)
        except BaseException:
            if not backfill:
                self._live_waiting -= 1
                self._cond_notify_soon()
            raise
        if not backfill:
            # Holding a slot now, waiting for the window: backfill calls in _admit wait for these.
            self._live_admitting += 1
            self._live_clear.clear()

    def _live_admitted(self) -> None:
        """A live call holding a slot is no longer waiting (admitted or given up)."""
        self._live_waiting -= 1
        self._live_admitting -= 1
        if not self._live_admitting:
            self._live_clear.set()
        if not self._live_waiting:
            self._cond_notify_soon()

    def _finished(self, permit: Permit, backfill: bool) -> None:
        finished = self.clock.monotonic()
        self._log.complete(permit.started, finished)
        if backfill:
            self._lane_log.complete(permit.started, finished)
        self._tally.answered(permit.started)
        if not permit.throttled:
            self._run = 0

    def _backfill_cap(self) -> int:
        """Backfill calls in flight at most: the lane's concurrency, and one slot always left for live
        (a backfill call waiting in _admit for live never holds the slot a live call needs)."""
        return min(self._cap - 1 if self._cap > 1 else 1, self.settings.backfill_concurrency)

    @property
    def backfill_window_limit(self) -> int:
        """Backfill calls allowed in any rolling window: backfill_share of the effective limit, ≥ 1."""
        return max(1, int(self.effective_window_limit * self.settings.backfill_share))

    @property
    def effective_window_limit(self) -> int:
        return max(1, int(self.settings.window_limit * self._fraction))

    def _quota_exhausted(self) -> bool:
        if self._daily_used >= self.settings.daily_budget:
            return True
        if self._instance_used is not None:
            ceiling = self.settings.daily_quota - self.settings.daily_headroom_calls
            return self._instance_used + self._own_since_reconcile >= ceiling
        return False

    def _roll_day(self, wall: datetime) -> None:
        if wall >= self._reset_at:
            self._reset_at = next_quota_reset(wall)
            self._daily_used = 0
            self._instance_used = None
            self._own_since_reconcile = 0

    async def _admit(self, backfill: bool = False) -> float:
        while True:
            wall = self.clock.now()
            if self._parked_until is not None:
                if wall < self._parked_until:
                    await self._wait((self._parked_until - wall).total_seconds(), cap=_PARK_CHUNK_SECONDS)
                    continue
                log.info("marketo instance %s: quota park over, resuming", self.instance)
                self._parked_until = None
            self._roll_day(wall)
            if self._quota_exhausted():
                self._park(reason="own daily budget used")
                continue
            if backfill and self._live_admitting:
                await self._live_clear.wait()  # live first (lanes.py)
                continue
            mono = self.clock.monotonic()
            self._recover(mono)
            delay = self._delay(mono, backfill)
            if delay <= 0:
                # No await between the check above and this record: admission is atomic.
                self._log.record(mono)
                if backfill:
                    self._lane_log.record(mono)
                self._daily_used += 1
                self._own_since_reconcile += 1
                self._stats.calls_started += 1
                return mono
            await self._wait(delay)

    def _delay(self, mono: float, backfill: bool) -> float:
        """Seconds until a call of the lane may start (a pause, the rolling window, the lane's window)."""
        if mono < self._paused_until:
            return self._paused_until - mono
        if not backfill:
            return self._log.delay(mono, self.effective_window_limit)
        # A backfill call also leaves the live reserve of the instance's window free (live never waits
        # for places backfill took) and stays within the lane's own window.
        return max(self._log.delay(mono, max(1, self.effective_window_limit - self.live_reserve)),
                   self._lane_log.delay(mono, self.backfill_window_limit))

    def room(self, lane: Lane = LIVE) -> int:
        """Calls of ``lane`` that could start now without waiting for the rolling window (0 while
        paused, parked or, for backfill, while a live call waits): what adaptive windows look at."""
        mono = self.clock.monotonic()
        if self._parked_until is not None or mono < self._paused_until:
            return 0
        free = max(0, self.effective_window_limit - self._log.count(mono))
        if lane == BACKFILL:
            if self._live_waiting:
                return 0
            free = min(max(0, free - self.live_reserve),
                       max(0, self.backfill_window_limit - self._lane_log.count(mono)))
        return free

    def seconds_until_room(self, calls: int, lane: Lane = LIVE) -> float:
        """Seconds until ``room(lane)`` reaches ``calls`` if nothing else starts meanwhile (inf while parked):
        when an adaptive window that waits for room may close."""
        mono = self.clock.monotonic()
        if self._parked_until is not None:
            return math.inf
        paused = max(0.0, self._paused_until - mono)
        limit = self.effective_window_limit
        if lane == BACKFILL:
            return max(paused, self._log.delay(mono, max(1, limit - self.live_reserve - calls + 1)),
                       self._lane_log.delay(mono, max(1, self.backfill_window_limit - calls + 1)))
        return max(paused, self._log.delay(mono, max(1, limit - calls + 1)))

    @property
    def live_reserve(self) -> int:
        """Places of the rolling window a backfill call never takes: 10 % of the effective limit, ≥ 1."""
        return max(1, self.effective_window_limit // 10)

    def backfill_active(self) -> bool:
        """Backfill calls started in the current rolling window or are waiting to (adaptive windows pace
        live to leave the backfill its share)."""
        return self._backfill_in_flight > 0 or self._lane_log.count(self.clock.monotonic()) > 0

    async def _wait(self, seconds: float, cap: float | None = None) -> None:
        seconds = min(seconds, cap) if cap is not None else seconds
        self._stats.waits += 1
        self._stats.wait_seconds += seconds
        await self.clock.sleep(seconds)

    # ----- feedback from responses -----
    def on_throttle(self, code: str, call_started: float | None = None) -> float:
        """Marketo said 606 (rate) or 615 (concurrency) to the call admitted at ``call_started``
        (None: a call this limiter did not admit; it counts as answered now). Returns the pause in
        seconds that the instance now observes (0 if none).

        A throttle lowers the rate only when it is evidence that someone else spends the budget:
        at least ``throttle_min_count`` throttles, more than ``throttle_tolerance`` of the answers
        to the calls sent since the last decrease in the last window. Scattered 606s below that
        (Marketo's own noise, a chaos plan) are retried through the window without slowing the
        instance. Calls sent before the last decrease were sent under the old rate, so their
        throttles never decrease again (one decrease per episode, as in TCP). A decrease multiplies
        the rate by ``throttle_decrease_factor`` (floor ``throttle_min_fraction``), 615 also takes
        one concurrency slot away, and the instance pauses base × 2^(n−1) s with equal jitter."""
        s = self.settings
        mono = self.clock.monotonic()
        self._stats.throttles[code] = self._stats.throttles.get(code, 0) + 1
        started = mono if call_started is None else call_started
        if call_started is None:
            self._tally.answered(started)
        self._tally.throttled(started)
        pending_pause = max(0.0, self._paused_until - mono)
        if self._last_decrease is not None and started <= self._last_decrease:
            return pending_pause
        since = self._last_decrease if self._last_decrease is not None else float("-inf")
        answered, throttled = self._tally.counts(mono, since)
        self._run += 1
        burst = self._run >= s.throttle_run
        if not burst and (throttled < s.throttle_min_count or throttled <= s.throttle_tolerance * answered):
            self._stats.throttles_tolerated += 1
            log.info(
                "marketo instance %s: %s from Marketo (%d of %d answers since the last decrease), "
                "within tolerance; rate stays %.0f%%",
                self.instance,
                code,
                throttled,
                answered,
                self._fraction * 100,
            )
            return pending_pause
        pause = self._decrease(code, mono)
        log.warning(
            "marketo instance %s: %s from Marketo (%d of %d answers), rate now %.0f%% (%d/window), "
            "concurrency %d, pause %.1fs",
            self.instance,
            code,
            throttled,
            answered,
            self._fraction * 100,
            self.effective_window_limit,
            self._cap,
            pause,
        )
        return pause

    def _decrease(self, code: str, mono: float) -> float:
        """One multiplicative decrease (615 also takes a concurrency slot) and its pause, in seconds."""
        s = self.settings
        self._last_decrease = mono
        self._run = 0
        self._streak += 1
        self._stats.rate_decreases += 1
        self._fraction = max(s.throttle_min_fraction, self._fraction * s.throttle_decrease_factor)
        if code == "615":
            self._cap = max(1, self._cap - 1)
        ceiling = min(s.throttle_pause_max_seconds, s.throttle_pause_base_seconds * 2 ** (self._streak - 1))
        pause = ceiling * (0.5 + 0.5 * self._rng.random())  # equal jitter: ≥ half the ceiling
        self._paused_until = max(self._paused_until, mono + pause)
        self._last_change = mono
        return pause

    def _recover(self, mono: float) -> None:
        """Additive increase: every quiet ``recover_interval_seconds`` (no decrease; tolerated
        throttles do not count) gives back ``recover_step_fraction`` of the rate and one slot."""
        s = self.settings
        if self._last_decrease is not None and mono - self._last_decrease >= s.recover_interval_seconds:
            self._streak = 0
        if self._fraction >= 1.0 and self._cap >= s.max_concurrency:
            return
        steps = int((mono - self._last_change) // s.recover_interval_seconds)
        if steps <= 0:
            return
        self._fraction = min(1.0, self._fraction + steps * s.recover_step_fraction)
        grew = min(s.max_concurrency - self._cap, steps)
        self._cap += grew
        self._last_change += steps * s.recover_interval_seconds
        if grew:
            self._cond_notify_soon()

    def _cond_notify_soon(self) -> None:
        async def _notify() -> None:
            async with self._cond:
                self._cond.notify_all()

        try:
            task = asyncio.get_running_loop().create_task(_notify())
        except RuntimeError:  # no loop: nobody can be waiting
            return
        self._tasks.add(task)  # keep a reference until it ran
        task.add_done_callback(self._tasks.discard)

    def on_quota_reached(self) -> datetime:
        """Marketo said 607: park every caller on this instance until midnight US Central."""
        return self._park(reason="Marketo answered 607 Daily quota reached")

    def _park(self, reason: str) -> datetime:
        wall = self.clock.now()
        until = next_quota_reset(wall) + timedelta(seconds=self.settings.quota_reset_slack_seconds)
        if self._parked_until is None or until > self._parked_until:
            self._parked_until = until
            self._stats.quota_parks += 1
            log.warning("marketo instance %s parked until %s: %s", self.instance, until.isoformat(), reason)
        # Today's budget is gone whatever our own count says.
        self._daily_used = max(self._daily_used, self.settings.daily_budget)
        return self._parked_until

    def reconcile_usage(self, instance_total_today: int) -> None:
        """Take the instance-wide count from GET /rest/v1/stats/usage.json (§2.1 usage endpoints):
        other integrations' calls count against the same quota."""
        self._instance_used = max(0, instance_total_today)
        self._own_since_reconcile = 0
        self._reconciling = False

    def reconcile_due(self) -> bool:
        """True (once, until reconcile_usage or reconcile_failed) when an automatic reconciliation
        with the usage endpoint is due."""
        every = self.settings.reconcile_every_calls
        if every is None or self._reconciling:
            return False
        if self._instance_used is not None and self._own_since_reconcile < every:
            return False
        if self._instance_used is None and self._daily_used < every:
            return False
        self._reconciling = True
        return True

    def reconcile_failed(self) -> None:
        self._reconciling = False

    # ----- observation -----
    @property
    def parked_until(self) -> datetime | None:
        return self._parked_until

    def stats(self) -> LimiterStats:
        mono = self.clock.monotonic()
        st = self._stats
        st.daily_used = self._daily_used
        st.daily_budget = self.settings.daily_budget
        st.window_used = self._log.count(mono)
        st.window_limit = self.effective_window_limit
        st.backfill_window_used = self._lane_log.count(mono)
        st.backfill_window_limit = self.backfill_window_limit
        st.rate_fraction = self._fraction
        st.in_flight = self._in_flight
        st.concurrency_cap = self._cap
        st.parked_until = self._parked_until
        return LimiterStats(**{**st.__dict__, "throttles": dict(st.throttles)})


class LimiterRegistry:
    """One limiter per instance key in this process."""

    def __init__(self) -> None:
        self._limiters: dict[str, InstanceLimiter] = {}

    def get(
        self, instance: str, settings: LimiterSettings | None = None, clock: Clock | None = None
    ) -> InstanceLimiter:
        limiter = self._limiters.get(instance)
        if limiter is None:
            limiter = InstanceLimiter(instance, settings, clock)
            self._limiters[instance] = limiter
        return limiter

    def all(self) -> list[InstanceLimiter]:
        return list(self._limiters.values())


#: The process-wide registry used unless a caller injects its own.
DEFAULT_LIMITERS = LimiterRegistry()
