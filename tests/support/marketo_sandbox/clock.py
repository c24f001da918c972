"""The sandbox's time: one injectable interface, the real clock and a clock that only a test moves.

Everything time-dependent (token expiry, rate windows, the daily quota's reset at Central midnight, bulk-job
progress, latency faults) reads a ``Clock`` and waits with ``await clock.sleep(s)``, so a test can cross a
20 s window or midnight without really waiting. The sandbox is a test double and carries its own clocks;
any object with these methods will do (a test may share one clock between the sandbox and its client).

- ``SystemClock``: real time.
- ``ManualClock``: moves only when ``advance``/``set`` is called; ``sleep`` parks the caller until the clock
  passes its deadline. ``ManualTime`` is what the admin API and ``SandboxHandle.manual_clock`` need of it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

DEFAULT_MANUAL_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
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


@runtime_checkable
class ManualTime(Clock, Protocol):
    """A clock a test moves by hand (``isinstance`` checks for these methods)."""

    def advance(self, seconds: float) -> None: ...

    def set(self, epoch_seconds: float) -> None: ...

    @property
    def sleepers(self) -> int: ...


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
    """Moves only when ``advance``/``set`` is called; ``sleep`` parks the caller until the clock passes its
    deadline. Safe to move from another thread than the one whose event loop runs the sleepers.
    ``monotonic()`` is the epoch time itself, which never goes backwards here."""

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
            fut.get_loop().call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


__all__ = ["Clock", "ManualClock", "ManualTime", "SystemClock"]
