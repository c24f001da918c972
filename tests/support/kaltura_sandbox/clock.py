"""The scenario clock: scenario time that runs at a chosen speed and can be stepped.

``now()`` = origin + manual offset + (real elapsed since play) * speed. Speed 0 means paused: time
moves only when ``advance`` is called (tests), speed 60 plays an hour in a minute (demos). The real
time source is anything with a ``monotonic()`` (``time.monotonic`` by default), injectable so the clock
itself is testable without sleeping. Scenario time itself (speed, origin, reset) is this sandbox's own.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Protocol


class RealTime(Protocol):
    """The real time source: seconds on a clock that never goes backwards."""

    def monotonic(self) -> float: ...


class ScenarioClock:
    def __init__(self, origin: datetime, *, speed: float = 0.0, real: RealTime | None = None) -> None:
        if origin.tzinfo is None:
            raise ValueError("origin must be timezone-aware")
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._monotonic = real.monotonic if real is not None else time.monotonic
        self._origin = origin
        self._base = origin
        self._speed = speed
        self._anchor = self._monotonic()

    @property
    def origin(self) -> datetime:
        return self._origin

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        elapsed = (self._monotonic() - self._anchor) * self._speed
        return self._base + timedelta(seconds=elapsed)

    def _rebase(self) -> None:
        self._base = self.now()
        self._anchor = self._monotonic()

    def set_speed(self, speed: float) -> None:
        """Change the playing speed from the current instant on (0 pauses)."""
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._rebase()
        self._speed = speed

    def advance(self, seconds: float) -> datetime:
        """Jump forward by ``seconds`` of scenario time; never backwards."""
        if seconds < 0:
            raise ValueError("the clock only moves forward; use reset()")
        self._rebase()
        self._base += timedelta(seconds=seconds)
        return self._base

    def advance_to(self, when: datetime) -> datetime:
        """Jump forward to ``when`` (no-op if already past it)."""
        current = self.now()
        if when > current:
            return self.advance((when - current).total_seconds())
        return current

    def reset(self) -> None:
        """Back to the origin, keeping the speed."""
        self._base = self._origin
        self._anchor = self._monotonic()
