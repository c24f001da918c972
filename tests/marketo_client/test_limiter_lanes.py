"""Lanes in the instance limiter (issue #18): live first, backfill on a capped share, on virtual time."""

from __future__ import annotations

import asyncio
import bisect
import random

from kmsync_common.clock import Clock, FakeClock, ManualClock
from kmsync_marketo.lanes import BACKFILL, LIVE, Lane, current_lane, in_lane
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_marketo.settings import LimiterSettings
from kmsync_testing.waiting import wait_for


def _limiter(clock: FakeClock, **kw: object) -> InstanceLimiter:
    settings = LimiterSettings(**{"rate_headroom_calls": 0, "window_margin_seconds": 0.0, **kw})  # type: ignore[arg-type]
    return InstanceLimiter("123-ABC-456", settings, clock, rng=random.Random(7))


def _max_in_any_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    return max((bisect.bisect_left(starts, t + window) - i for i, t in enumerate(starts)), default=0)


async def _call(limiter: InstanceLimiter, clock: Clock, lane: Lane, log: list[tuple[float, Lane]],
                duration: float = 0.1) -> None:
    with in_lane(lane):
        async with limiter.slot():
            log.append((clock.monotonic(), current_lane()))
            await clock.sleep(duration)


async def test_backfill_alone_never_exceeds_its_share_of_any_rolling_window() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, share=1.0, backfill_share=0.3, max_concurrency=10)
    assert limiter.effective_window_limit == 100 and limiter.backfill_window_limit == 30
    log: list[tuple[float, Lane]] = []
    await asyncio.gather(*(_call(limiter, clock, BACKFILL, log) for _ in range(90)))
    starts = [t for t, _ in log]
    assert len(starts) == 90
    assert _max_in_any_window(starts, 20.0) == 30  # the lane's cap, used fully
    assert limiter.stats().backfill_window_limit == 30
    assert clock.monotonic() >= 40.0  # 90 calls at 30 per window: three windows


async def test_live_alone_keeps_the_whole_window() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, share=1.0, backfill_share=0.3, max_concurrency=10)
    log: list[tuple[float, Lane]] = []
    await asyncio.gather(*(_call(limiter, clock, LIVE, log) for _ in range(100)))
    assert _max_in_any_window([t for t, _ in log], 20.0) == 100


async def test_waiting_live_calls_are_admitted_before_waiting_backfill_calls() -> None:
    clock = ManualClock()
    limiter = InstanceLimiter("123-ABC-456", LimiterSettings(
        share=0.1, backfill_share=0.5, max_concurrency=5, rate_headroom_calls=0, window_margin_seconds=0.0),
        clock, rng=random.Random(7))  # 10 calls per window, backfill 5 of them, 3 at once
    log: list[tuple[float, Lane]] = []
    await asyncio.gather(*(_call(limiter, clock, LIVE, log, duration=0.0) for _ in range(10)))  # window full
    log.clear()
    # Backfill calls queue up first (three hold slots and wait for the window), then live calls arrive.
    backfill = [asyncio.create_task(_call(limiter, clock, BACKFILL, log, duration=0.0)) for _ in range(4)]
    await wait_for(lambda: clock.sleepers == 3, what="three backfill calls waiting for the window")
    live = [asyncio.create_task(_call(limiter, clock, LIVE, log, duration=0.0)) for _ in range(8)]
    await wait_for(lambda: clock.sleepers == 5, what="two live calls waiting for the window")
    clock.advance(20.0)  # the window empties: 10 places, one of them the live reserve backfill never takes
    await wait_for(lambda: len(log) == 9, what="nine calls admitted")
    clock.advance(20.0)
    await asyncio.gather(*backfill, *live)
    lanes = [lane for _, lane in log]
    assert lanes == [LIVE] * 8 + [BACKFILL] * 4, lanes  # every waiting live call went first


async def test_backfill_gets_only_what_live_leaves_and_never_the_last_slot() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, share=1.0, backfill_share=1.0, max_concurrency=2)
    assert limiter._backfill_cap() == 1  # one slot always left for live
    gate = asyncio.Event()
    started: list[Lane] = []

    async def held(lane: Lane) -> None:
        with in_lane(lane):
            async with limiter.slot():
                started.append(lane)
                await gate.wait()

    tasks = [asyncio.create_task(held(BACKFILL)) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert started == [BACKFILL]  # the second backfill call waits: the other slot stays free ...
    tasks.append(asyncio.create_task(held(LIVE)))
    await asyncio.sleep(0.01)
    assert started == [BACKFILL, LIVE]  # ... and a live call takes it at once
    gate.set()
    await asyncio.gather(*tasks)


async def test_room_tells_the_lanes_apart() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, share=1.0, backfill_share=0.25)

    async def some(lane: Lane, n: int) -> None:
        log: list[tuple[float, Lane]] = []
        await asyncio.gather(*(_call(limiter, clock, lane, log, duration=0.0) for _ in range(n)))

    await some(BACKFILL, 20)
    assert limiter.room(LIVE) == 80
    assert limiter.room(BACKFILL) == 5  # 25 of 100 for backfill, 20 used
    await some(LIVE, 68)
    assert limiter.room(LIVE) == 12 and limiter.room(BACKFILL) == 2  # 10 places are live's reserve
    await some(LIVE, 10)
    assert limiter.room(LIVE) == 2 and limiter.room(BACKFILL) == 0
    assert not limiter.backfill_active() or limiter.stats().backfill_window_used == 20


async def test_backfill_never_takes_the_live_reserve_of_the_window() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, share=1.0, backfill_share=1.0, max_concurrency=10)
    assert limiter.live_reserve == 10
    log: list[tuple[float, Lane]] = []
    await asyncio.gather(*(_call(limiter, clock, BACKFILL, log) for _ in range(180)))
    assert _max_in_any_window([t for t, _ in log], 20.0) == 90  # 100 less the reserve, however long it runs
    assert limiter.backfill_active()
