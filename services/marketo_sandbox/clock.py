"""Clocks: the real one, and a manual one tests move by hand.

Everything time-dependent in the sandbox (token expiry, the rolling rate window, the daily quota's
midnight-Central reset, bulk-job progress, the latency fault) reads ``clock.now()`` and waits with
``await clock.sleep(s)``, so a test can cross a 20 s window or midnight without sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


class ManualClock:
    """A clock that only moves when ``advance``/``set`` is called.

    ``sleep`` parks the caller until the clock passes its deadline. Safe to advance from another
    thread than the one whose event loop runs the sleepers.
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

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
