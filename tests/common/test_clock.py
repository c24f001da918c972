"""The one clock interface: real time, a hand-moved clock and a self-moving virtual clock agree on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from kmsync_common.clock import Clock, FakeClock, ManualClock, SystemClock


async def _until(cond: Callable[[], bool], seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not cond():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def _assert_consistent(clock: Clock) -> None:
    """``now()`` and ``time()`` name the same instant, in aware UTC."""
    now = clock.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs(now.timestamp() - clock.time()) < 1.0


def test_every_clock_speaks_the_same_interface() -> None:
    for clock in (SystemClock(), ManualClock(), FakeClock()):
        _assert_consistent(clock)


def test_manual_clock_reads_epoch_datetime_and_monotonic_as_one_time() -> None:
    start = datetime(2026, 3, 4, 23, 59, tzinfo=UTC)
    clock = ManualClock(start.timestamp())
    clock.advance(61.5)
    assert clock.time() == start.timestamp() + 61.5
    assert clock.now() == start + timedelta(seconds=61.5)
    assert clock.monotonic() == clock.time()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(start.timestamp())


async def test_manual_clock_parks_sleepers_until_moved_past_their_deadline() -> None:
    clock = ManualClock()
    task = asyncio.create_task(clock.sleep(10))
    await _until(lambda: clock.sleepers == 1)
    clock.advance(9.5)
    assert clock.sleepers == 1 and not task.done()
    clock.set(clock.time() + 0.5)
    await asyncio.wait_for(task, 5)
    assert clock.sleepers == 0


async def test_fake_clock_moves_itself_and_overlaps_concurrent_sleeps() -> None:
    start = datetime(2026, 3, 8, 4, 30, tzinfo=UTC)
    clock = FakeClock(start=start)
    await asyncio.gather(clock.sleep(5), clock.sleep(3), clock.sleep(-2))
    assert clock.monotonic() == 5.0  # overlapping, not 8
    assert sorted(clock.slept) == [0.0, 3.0, 5.0]
    clock.advance(-4)  # ignored: never backwards
    clock.advance(1)
    assert clock.now() == start + timedelta(seconds=6)
    assert clock.time() == start.timestamp() + 6
