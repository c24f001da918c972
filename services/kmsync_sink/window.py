"""Per-instance windows by count, age and bytes (pure: the caller passes monotonic time).

An instance's operations collect here until the window is due; operations waiting for a retry
stay out of the window until their backoff ends. ``take`` hands over what is ready, oldest first.
On an instance that uses the Bulk Import API, a window that closed on count or bytes (a backlog) may
take up to the larger bulk caps, so one window fills bulk jobs instead of many REST calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from kmsync_sink.pending import PendingOp


class CloseReason(StrEnum):
    COUNT = "count"
    BYTES = "bytes"
    AGE = "age"
    #: Closed early: nothing more waiting in Kafka and room in the budget (adaptive.py).
    IDLE = "idle"
    DRAIN = "drain"


@dataclass(frozen=True)
class WindowLimits:
    max_records: int
    max_age_seconds: float
    max_bytes: int
    #: A bulk-enabled instance's window sizes (None: the normal ones apply). Its windows close on
    #: count/bytes only at these (so a backlog fills a bulk job instead of closing at the REST size
    #: and going out over REST below the bulk threshold) and may take this much whatever closed them;
    #: the age limit still bounds how long a trickle waits.
    bulk_max_records: int | None = None
    bulk_max_bytes: int | None = None

    def caps(self) -> tuple[int, int]:
        """(records, bytes) at which a window closes on count/bytes and that one window may take."""
        return (self.bulk_max_records or self.max_records, self.bulk_max_bytes or self.max_bytes)


class Window:
    def __init__(self, limits: WindowLimits) -> None:
        self.limits = limits
        self._ops: list[PendingOp] = []
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[PendingOp]:
        """The operations waiting, ready or not (a snapshot)."""
        return iter(list(self._ops))

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def add(self, op: PendingOp) -> None:
        self._ops.append(op)
        self._bytes += op.size

    def extend(self, ops: Iterable[PendingOp]) -> None:
        for op in ops:
            self.add(op)

    def _ready(self, now: float) -> list[PendingOp]:
        return [p for p in self._ops if p.not_before <= now]

    def due(self, now: float) -> CloseReason | None:
        """Why the window should close now, or None to keep collecting."""
        ready = self._ready(now)
        if not ready:
            return None
        max_records, max_bytes = self.limits.caps()
        if len(ready) >= max_records:
            return CloseReason.COUNT
        if sum(p.size for p in ready) >= max_bytes:
            return CloseReason.BYTES
        if now - min(p.arrived for p in ready) >= self.limits.max_age_seconds:
            return CloseReason.AGE
        return None

    def oldest_ready(self, now: float) -> float | None:
        """Arrival time of the oldest operation ready now (None: none is)."""
        return min((p.arrived for p in self._ops if p.not_before <= now), default=None)

    def next_deadline(self, now: float) -> float | None:
        """Monotonic time at which ``due`` may change without new input (age or a backoff ending)."""
        times: list[float] = []
        ready = self._ready(now)
        if ready:
            times.append(min(p.arrived for p in ready) + self.limits.max_age_seconds)
        times += [p.not_before for p in self._ops if p.not_before > now]
        return min(times) if times else None

    def take(self, now: float) -> list[PendingOp]:
        """Everything ready, oldest first, up to the window's count and byte caps (a bulk-enabled
        instance's bulk caps); the rest stays."""
        max_records, max_bytes = self.limits.caps()
        # Nearly in arrival order already (retries are the exception): the sort is close to linear.
        ready = sorted(self._ready(now), key=lambda p: (p.arrived, p.source))
        taken: list[PendingOp] = []
        size = 0
        for p in ready:
            if taken and (len(taken) >= max_records or size + p.size > max_bytes):
                break
            taken.append(p)
            size += p.size
        ids = {id(p) for p in taken}
        self._ops = [p for p in self._ops if id(p) not in ids]
        self._bytes -= size
        return taken

    def drop(self, keep: set[tuple[str, int]] | None = None) -> list[PendingOp]:
        """Remove (and return) operations whose (topic, partition) is not in ``keep``; all if None."""
        if keep is None:
            dropped, self._ops = self._ops, []
        else:
            dropped = [p for p in self._ops if (p.source.topic, p.source.partition) not in keep]
            self._ops = [p for p in self._ops if (p.source.topic, p.source.partition) in keep]
        self._bytes = sum(p.size for p in self._ops)
        return dropped
