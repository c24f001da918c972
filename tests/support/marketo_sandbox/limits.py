"""Pure limit bookkeeping: the rolling rate window and the US-Central daily quota (docs/reference/marketo-api.md §2.1)."""

from __future__ import annotations

from collections import deque
from datetime import date, datetime
from zoneinfo import ZoneInfo

CENTRAL = ZoneInfo("America/Chicago")  # daily quota resets at 12:00 AM US Central (§2.1, §10.5)


def central_day(ts: float) -> date:
    return datetime.fromtimestamp(ts, tz=CENTRAL).date()


class RateWindow:
    """Counts calls over the past ``window`` seconds (rolling, not fixed buckets).

    A call made at ``t`` occupies the window during ``[t, t + window)``.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._stamps: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._stamps and self._stamps[0] <= now - self.window:
            self._stamps.popleft()

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self._stamps)

    def full(self, now: float) -> bool:
        return self.count(now) >= self.limit

    def add(self, now: float) -> None:
        self._stamps.append(now)

    def remove(self, stamp: float) -> None:
        """Give back a slot taken at ``stamp`` (the answer turned out to be a free code)."""
        try:
            self._stamps.remove(stamp)
        except ValueError:
            pass


class DailyQuota:
    """Calls per US-Central calendar day; the count starts over at Central midnight."""

    def __init__(self, quota: int) -> None:
        self.quota = quota
        self._day: date | None = None
        self._count = 0
        self.history: dict[date, int] = {}

    def _roll(self, now: float) -> None:
        d = central_day(now)
        if d != self._day:
            self._day = d
            self._count = self.history.get(d, 0)

    def used(self, now: float) -> int:
        self._roll(now)
        return self._count

    def exhausted(self, now: float) -> bool:
        return self.used(now) >= self.quota

    def add(self, now: float, n: int = 1) -> None:
        self._roll(now)
        self._count += n
        assert self._day is not None
        self.history[self._day] = self._count
