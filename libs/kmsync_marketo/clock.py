"""Time as the client sees it: injectable so tests are deterministic and never really wait."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (rate windows, token expiry)."""
        ...

    def now(self) -> datetime:
        """Aware UTC wall-clock time (daily quota reset)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """Virtual time. ``sleep`` lets other tasks run, then moves time forward to the sleeper's
    deadline (never backwards), so concurrent sleeps overlap as they would in real time."""

    def __init__(self, start: datetime | None = None) -> None:
        self._wall0 = start or datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
        self._t = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self._t

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._t)

    def advance(self, seconds: float) -> None:
        self._t += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.slept.append(seconds)
        target = self._t + seconds
        await asyncio.sleep(0)
        self._t = max(self._t, target)
