"""The instance limiter, on virtual time: rolling window exactness, concurrency, slow-down, parking."""

from __future__ import annotations

import asyncio
import bisect
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kmsync_common.clock import FakeClock
from kmsync_marketo.limiter import InstanceLimiter, SlidingLog, ThrottleTally, next_quota_reset
from kmsync_marketo.settings import LimiterSettings

CHICAGO = ZoneInfo("America/Chicago")


def _max_in_any_window(starts: list[float], window: float) -> int:
    """The most calls that started within any half-open window [t, t + window)."""
    starts = sorted(starts)
    return max(bisect.bisect_left(starts, t + window) - i for i, t in enumerate(starts))


def _limiter(clock: FakeClock, **kw: object) -> InstanceLimiter:
    return InstanceLimiter("123-ABC-456", LimiterSettings(**kw), clock, rng=random.Random(7))  # type: ignore[arg-type]


async def test_burst_never_exceeds_the_limit_in_any_rolling_window() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, share=1.0, rate_headroom_calls=10, max_concurrency=5)
    starts: list[float] = []
    rng = random.Random(3)

    async def call() -> None:
        async with limiter.slot():
            starts.append(clock.monotonic())
            await clock.sleep(rng.uniform(0.0, 0.8))  # the call's own duration

    await asyncio.gather(*(call() for _ in range(400)))
    assert len(starts) == 400
    assert _max_in_any_window(starts, 20.0) <= 90
    # A sliding log, not a bucket: the window is used fully, so 400 calls need about 4.4 windows.
    assert clock.monotonic() < 5 * 20.25 + 1


async def test_window_admits_the_next_call_exactly_when_the_oldest_leaves() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, share=0.5, rate_headroom_calls=0, window_margin_seconds=0.0)
    assert limiter.effective_window_limit == 50
    starts = []
    for _ in range(51):
        async with limiter.slot():
            starts.append(clock.monotonic())
    assert starts[:50] == [0.0] * 50
    assert starts[50] == pytest.approx(20.0)


def test_a_leaky_bucket_would_overshoot_where_the_log_does_not() -> None:
    # docs/reference/streaming.md §5.2: bucket of 100 per 20 s admits 100 at t=0 and 50 more by t=10.
    bucket_starts = [0.0] * 100 + [0.2 * (k + 1) for k in range(50)]
    assert _max_in_any_window(bucket_starts, 20.0) == 150
    log = SlidingLog(20.0)
    admitted = []
    t = 0.0
    while len(admitted) < 150:
        d = log.delay(t, 100)
        t += d
        log.record(t)
        admitted.append(t)
    assert _max_in_any_window(admitted, 20.0) == 100


async def test_concurrency_cap_holds_and_frees_on_exit() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, max_concurrency=3)
    gate = asyncio.Event()
    peak = 0

    async def call() -> None:
        nonlocal peak
        async with limiter.slot():
            peak = max(peak, limiter.stats().in_flight)
            await gate.wait()

    tasks = [asyncio.create_task(call()) for _ in range(8)]
    for _ in range(50):
        await asyncio.sleep(0)
    assert limiter.stats().in_flight == 3
    gate.set()
    await asyncio.gather(*tasks)
    assert peak == 3 and limiter.stats().in_flight == 0
    assert limiter.stats().calls_started == 8


async def test_606_slows_down_with_jittered_pause_then_recovers() -> None:
    clock = FakeClock()
    # throttle_run=1: every throttle is a new episode's evidence (the pause and recovery mechanics).
    limiter = _limiter(clock, share=1.0, rate_headroom_calls=10, recover_interval_seconds=20,
                       recover_step_fraction=0.1, throttle_pause_base_seconds=2.0, throttle_run=1)
    assert limiter.effective_window_limit == 90
    pause = limiter.on_throttle("606")
    assert 1.0 <= pause <= 2.0  # equal jitter: at least half of base × 2^0
    assert limiter.effective_window_limit == 45
    async with limiter.slot():
        assert clock.monotonic() == pytest.approx(pause)
    second = limiter.on_throttle("606")
    assert 2.0 <= second <= 4.0  # the pause grows while throttles keep coming
    assert limiter.effective_window_limit == 22
    # Gradual recovery: +10 % of the rate per quiet 20 s, back to full after enough quiet time.
    clock.advance(20)
    async with limiter.slot():
        pass
    assert limiter.stats().rate_fraction == pytest.approx(0.35)
    clock.advance(200)
    async with limiter.slot():
        pass
    assert limiter.stats().rate_fraction == 1.0
    assert limiter.stats().throttles == {"606": 2}


async def test_615_takes_a_concurrency_slot_away_and_gives_it_back() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, max_concurrency=5, recover_interval_seconds=10, throttle_run=1)
    limiter.on_throttle("615")
    clock.advance(0.1)  # a call sent after the first decrease
    limiter.on_throttle("615")
    assert limiter.stats().concurrency_cap == 3
    clock.advance(25)
    async with limiter.slot():
        pass
    assert limiter.stats().concurrency_cap == 5


@pytest.mark.parametrize(
    ("now_utc", "reset_utc"),
    [
        # Ordinary CST day: midnight Chicago = 06:00 UTC.
        (datetime(2026, 1, 15, 20, 0, tzinfo=UTC), datetime(2026, 1, 16, 6, 0, tzinfo=UTC)),
        # Just after midnight Central: the next reset is a full day away.
        (datetime(2026, 1, 16, 6, 0, 1, tzinfo=UTC), datetime(2026, 1, 17, 6, 0, tzinfo=UTC)),
        # Evening before spring-forward (2026-03-08): still a CST midnight.
        (datetime(2026, 3, 8, 1, 0, tzinfo=UTC), datetime(2026, 3, 8, 6, 0, tzinfo=UTC)),
        # During the 23-hour day: the next midnight is CDT, 05:00 UTC.
        (datetime(2026, 3, 8, 12, 0, tzinfo=UTC), datetime(2026, 3, 9, 5, 0, tzinfo=UTC)),
        # During the 25-hour day of fall-back (2026-11-01): the next midnight is CST again.
        (datetime(2026, 11, 1, 12, 0, tzinfo=UTC), datetime(2026, 11, 2, 6, 0, tzinfo=UTC)),
    ],
)
def test_next_reset_is_midnight_us_central_across_dst(now_utc: datetime, reset_utc: datetime) -> None:
    reset = next_quota_reset(now_utc)
    assert reset == reset_utc
    local = reset.astimezone(CHICAGO)
    assert (local.hour, local.minute) == (0, 0)


def test_naive_time_is_rejected() -> None:
    with pytest.raises(ValueError):
        next_quota_reset(datetime(2026, 1, 1))


async def test_607_parks_every_caller_until_the_next_central_midnight_across_dst() -> None:
    # 2026-03-07 22:30 CST; the reset is 2026-03-08 00:00 CST (06:00 UTC), the night DST begins.
    clock = FakeClock(start=datetime(2026, 3, 8, 4, 30, tzinfo=UTC))
    limiter = _limiter(clock, quota_reset_slack_seconds=5)
    async with limiter.slot():
        pass
    until = limiter.on_quota_reached()
    assert until == datetime(2026, 3, 8, 6, 0, 5, tzinfo=UTC)
    admitted: list[datetime] = []

    async def call() -> None:
        async with limiter.slot():
            admitted.append(clock.now())

    await asyncio.gather(call(), call(), call())
    assert all(t >= until for t in admitted)
    assert all(t - until < timedelta(minutes=6) for t in admitted)
    stats = limiter.stats()
    assert stats.parked_until is None and stats.quota_parks == 1
    assert stats.daily_used == 3  # the new day's count starts over


async def test_own_daily_budget_parks_before_marketo_says_607() -> None:
    clock = FakeClock(start=datetime(2026, 7, 1, 15, 0, tzinfo=UTC))  # 10:00 CDT
    limiter = _limiter(clock, daily_quota=100, share=0.5, daily_headroom_calls=10,
                       rate_headroom_calls=0)
    assert limiter.settings.daily_budget == 40
    times = []
    for _ in range(41):
        async with limiter.slot():
            times.append(clock.now())
    assert times[39] < datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    # The 41st call waits for midnight CDT = 05:00 UTC next day.
    assert times[40] >= datetime(2026, 7, 2, 5, 0, tzinfo=UTC)


async def test_calls_marketo_does_not_count_give_the_daily_unit_back() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    async with limiter.slot() as permit:
        permit.not_counted = True  # e.g. the answer was 601
    async with limiter.slot():
        pass
    stats = limiter.stats()
    assert (stats.calls_started, stats.calls_not_counted, stats.daily_used) == (2, 1, 1)


async def test_usage_reconciliation_counts_other_integrations() -> None:
    clock = FakeClock(start=datetime(2026, 7, 1, 15, 0, tzinfo=UTC))
    limiter = _limiter(clock, daily_quota=1000, daily_headroom_calls=0)
    limiter.reconcile_usage(998)  # others used almost everything today
    async with limiter.slot():
        pass
    async with limiter.slot():
        pass
    assert limiter.parked_until is None
    await asyncio.sleep(0)
    async with limiter.slot():
        stamp = clock.now()
    assert stamp >= datetime(2026, 7, 2, 5, 0, tzinfo=UTC)


async def test_throttles_of_calls_sent_before_the_decrease_do_not_decrease_again() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, throttle_run=1)
    clock.advance(1.0)
    limiter.on_throttle("606", call_started=0.5)
    # Four more calls that were already in flight under the old rate come back 606 too.
    for _ in range(4):
        limiter.on_throttle("606", call_started=0.6)
    assert limiter.stats().rate_fraction == 0.5
    assert limiter.stats().throttles == {"606": 5}
    clock.advance(3.0)
    limiter.on_throttle("606", call_started=3.5)  # sent after the decrease: a new episode
    assert limiter.stats().rate_fraction == 0.25


async def test_a_slow_call_keeps_its_place_in_the_window_until_it_finishes() -> None:
    # Marketo counts a call when it arrives, somewhere between our start and finish: a call that
    # takes 5 s must hold its place until 5 s + the window, or the next window could overfill.
    clock = FakeClock()
    limiter = _limiter(clock, share=0.5, rate_headroom_calls=0, window_margin_seconds=0.0)
    for i in range(50):
        async with limiter.slot():
            if i == 0:
                clock.advance(5.0)  # the first call is slow
    starts = []
    async with limiter.slot():
        starts.append(clock.monotonic())
    assert starts == [pytest.approx(25.0)]


def test_completing_a_call_moves_it_to_its_finish_time() -> None:
    log = SlidingLog(20.0)
    log.record(0.0)
    log.record(1.0)
    log.complete(0.0, 10.0)
    assert log.count(21.5) == 1  # the call started at 1 s has left; the one finished at 10 s has not
    assert log.delay(21.5, 1) == pytest.approx(8.5)


async def _answer(limiter: InstanceLimiter, throttled: bool, code: str = "606") -> None:
    """One call through the limiter, answered as the transport reports it."""
    async with limiter.slot() as permit:
        permit.throttled = throttled
        started = permit.started
    if throttled:
        limiter.on_throttle(code, started)


async def test_scattered_throttles_within_the_tolerance_do_not_slow_the_instance() -> None:
    # Issue #13: one 606 in ten, at random, is noise (a chaos plan, Marketo's own), not a competitor.
    clock = FakeClock()
    limiter = _limiter(clock)
    for i in range(60):
        await _answer(limiter, throttled=i % 10 == 3)
    stats = limiter.stats()
    assert stats.throttles == {"606": 6} and stats.throttles_tolerated == 6
    assert stats.rate_decreases == 0 and stats.rate_fraction == 1.0
    assert clock.monotonic() == 0.0  # no pause either: the window alone paces the retries


async def test_a_run_of_throttled_answers_lowers_the_rate_at_once() -> None:
    # A full window rejects every call until a place frees: three throttles in a row are a competitor.
    clock = FakeClock()
    limiter = _limiter(clock, throttle_run=3)
    for _ in range(30):
        await _answer(limiter, throttled=False)
    await _answer(limiter, throttled=True)
    await _answer(limiter, throttled=True)
    assert limiter.stats().rate_decreases == 0
    await _answer(limiter, throttled=True, code="615")
    stats = limiter.stats()
    assert stats.rate_decreases == 1 and stats.rate_fraction == 0.5
    assert stats.concurrency_cap == limiter.settings.max_concurrency - 1  # 615 also takes a slot
    async with limiter.slot():
        assert clock.monotonic() >= 1.0  # the instance paused (equal jitter: ≥ half of 2 s)


async def test_a_high_share_of_throttled_answers_lowers_the_rate_without_a_run() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, throttle_tolerance=0.25, throttle_min_count=3, throttle_run=10)
    pattern = [True, False, True, False, False, True]  # 3 of 6 answers, never two in a row
    for throttled in pattern[:-1]:
        await _answer(limiter, throttled)
    assert limiter.stats().rate_decreases == 0  # two throttles: below the minimum count
    await _answer(limiter, pattern[-1])
    assert limiter.stats().rate_decreases == 1 and limiter.stats().rate_fraction == 0.5


async def test_recovery_goes_on_through_tolerated_throttles() -> None:
    # The old limiter restarted its quiet interval on every 606, so steady noise kept it at the floor.
    clock = FakeClock()
    limiter = _limiter(clock, recover_interval_seconds=10, recover_step_fraction=0.1, throttle_run=3)
    for _ in range(3):
        await _answer(limiter, throttled=True)
    assert limiter.stats().rate_fraction == 0.5
    decreased_at = clock.monotonic()
    for i in range(80):  # 40 s of calls, one in ten throttled
        await _answer(limiter, throttled=i % 10 == 5)
        clock.advance(0.5)
    stats = limiter.stats()
    assert stats.rate_decreases == 1 and stats.throttles_tolerated == 2 + 8  # the run's first two, the noise
    assert clock.monotonic() - decreased_at >= 40
    assert stats.rate_fraction >= 0.5 + 3 * 0.1 - 1e-9  # +10 % per quiet 10 s, noise or not


def test_throttle_tally_counts_only_the_calls_sent_since_the_last_decrease() -> None:
    tally = ThrottleTally(20.0)
    for started in (1.0, 2.0, 3.0, 5.0, 4.0):  # answers arrive out of start order
        tally.answered(started)
    tally.throttled(2.0)
    tally.throttled(4.0)
    assert tally.counts(now=6.0, since=float("-inf")) == (5, 2)
    assert tally.counts(now=6.0, since=3.0) == (2, 1)  # started after the decrease
    assert tally.counts(now=23.5, since=float("-inf")) == (2, 1)  # starts ≤ 3.5 left the window


async def test_the_limiter_says_when_room_for_a_windows_calls_comes() -> None:
    """What an adaptive window that waits for room reads (kmsync_sink.adaptive): with ten calls at t = 0..9 s
    and 10 per 20 s, room for 3 comes when the first three leave the window, at t = 22 s (plus the log's
    safety margin of a fraction of a second)."""
    clock = FakeClock()
    limiter = _limiter(clock, rate_limit_calls=20, share=0.5, rate_headroom_calls=0)
    for _ in range(10):
        async with limiter.slot():
            pass
        clock.advance(1.0)
    assert clock.monotonic() == 10.0 and limiter.room() == 0
    until_3, until_1 = limiter.seconds_until_room(3), limiter.seconds_until_room(1)
    assert 12.0 <= until_3 <= 12.5 and until_3 - until_1 == pytest.approx(2.0)
    clock.advance(until_3)
    assert limiter.room() == 3 and limiter.seconds_until_room(3) == 0.0
