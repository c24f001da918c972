"""Time as the code sees it: one injectable interface, the real clock and two test clocks.

Everything time-dependent (token expiry, rate windows, the daily quota's reset, bulk-job progress,
latency faults) reads a ``Clock`` and waits with ``await clock.sleep(s)``, so a test can cross a 20 s
window or midnight without really waiting.

- ``SystemClock``: the real thing.
- ``ManualClock``: moves only when a test calls ``advance``/``set``; ``sleep`` parks the caller until
  the clock passes its deadline (the Marketo sandbox's server side, where a sleeper must wait for the test).
- ``FakeClock``: virtual time that moves itself: ``sleep`` yields once, then jumps to the sleeper's
  deadline (the Marketo client's unit tests, where nobody else would move the time).

The Kaltura sandbox's scenario clock (speed, origin, reset) is scenario time rather than real time and
stays in ``kaltura_sandbox.clock``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

DEFAULT_MANUAL_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DEFAULT_FAKE_START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (rate windows, token expiry)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch."""
        ...

    def now(self) -> datetime:
        """Aware UTC wall-clock time (the same instant as ``time()``)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time (negative counts as zero)."""
        ...


class SystemClock:
    """Real time: ``time.monotonic``, ``time.time`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when ``advance``/``set`` is called.

    ``sleep`` parks the caller until the clock passes its deadline. Safe to advance from another
    thread than the one whose event loop runs the sleepers. ``monotonic()`` is the epoch time itself,
    which never goes backwards here.
    """

    def __init__(self, start: float = DEFAULT_MANUAL_START) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        return self.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._sleepers.append((self._now + seconds, fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many callers are parked in ``sleep`` right now."""
        with self._lock:
            return sum(1 for _, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds
        self._wake()

    def set(self, epoch_seconds: float) -> None:
        with self._lock:
            if epoch_seconds < self._now:
                raise ValueError("a clock cannot go backwards")
            self._now = float(epoch_seconds)
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            due = [f for t, f in self._sleepers if t <= self._now]
            self._sleepers = [(t, f) for t, f in self._sleepers if t > self._now]
        for fut in due:
            loop = fut.get_loop()
            loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class FakeClock:
    """Virtual time that moves itself. ``sleep`` lets other tasks run, then moves time forward to the
    sleeper's deadline (never backwards), so concurrent sleeps overlap as they would in real time.

    ``monotonic()`` counts from 0 at ``start``; ``slept`` records every requested sleep.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._wall0 = start or DEFAULT_FAKE_START
        self._t = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self._t

    def time(self) -> float:
        return self._wall0.timestamp() + self._t

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._t)

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` (a negative amount is ignored)."""
        self._t += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.slept.append(seconds)
        target = self._t + seconds
        await asyncio.sleep(0)
        self._t = max(self._t, target)


#: The real clock, for code that has no clock injected (tools, the benchmark, record timestamps):
#: ``SYSTEM_CLOCK.monotonic()`` for durations and deadlines, ``.now()`` for an aware UTC timestamp,
#: ``.time()`` for epoch seconds. The one way kmsync reads the time.
SYSTEM_CLOCK: Clock = SystemClock()

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "ManualClock", "SystemClock"]
