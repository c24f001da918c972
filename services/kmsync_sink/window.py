"""Per-instance windows by count, age and bytes (pure: the caller passes monotonic time).

An instance's operations collect here until the window is due; operations waiting for a retry
stay out of the window until their backoff ends, and so does every later write of the same record (a
lead's email, a custom object's dedupe key, a lead's program member data): it goes out with the retry,
which the planner merges with it in offset order, never before it (the retry would then write older
values over newer ones). ``take`` hands over what is ready, oldest first.
On an instance that uses the Bulk Import API, a window that closed on count or bytes (a backlog) may
take up to the larger bulk caps, so one window fills bulk jobs instead of many REST calls.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from kmsync_contracts.marketo_ops import CustomObjectUpsert, LeadUpsert, MarketoOperation, ProgramMemberData
from kmsync_sink.pending import PendingOp, Source
from kmsync_sink.planner import object_key


class CloseReason(StrEnum):
    COUNT = "count"
    BYTES = "bytes"
    AGE = "age"
    #: Closed early: nothing more waiting in Kafka and room in the budget (adaptive.py).
    IDLE = "idle"
    #: Closed early: every partition feeding the window stays paused (``SINK_MAX_BUFFERED_PER_PARTITION``
    #: undecided operations, commits.py ``stays_paused``), so nothing more can join it until more are decided.
    PAUSED = "paused"
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
    """Kept ordered instead of sorted on every take (issue #22): the ready operations in a list sorted
    by (arrival, source) (the consumer appends in that order; a retried or deferred operation goes back
    to its place by bisection), the ones waiting for a backoff in a heap by ``not_before``, moved to the
    ready list when their time has come. Counts and bytes of the ready ones are running totals, so
    ``due`` and ``take`` cost what they hand over, not what the window holds."""

    def __init__(self, limits: WindowLimits) -> None:
        self.limits = limits
        #: Ready operations (``not_before`` passed when last looked at), by (arrived, source).
        self._ready_ops: list[PendingOp] = []
        self._ready_bytes = 0
        #: (not_before, sequence, op): operations in backoff, and later writes of their records held with them;
        #: the sequence keeps equal times in add order.
        self._waiting: list[tuple[float, int, PendingOp]] = []
        self._seq = 0
        self._bytes = 0
        #: The latest time the window was looked at (``_promote``): a re-added operation whose backoff ended
        #: before it is ready, not in backoff.
        self._now = 0.0
        #: Per record (``same_record``) with an operation in backoff: until when its writes are held, and how many
        #: of its operations are in backoff. Empty in the common case, so adding costs nothing more then.
        self._held_until: dict[Hashable, float] = {}
        self._in_backoff: dict[Hashable, int] = {}
        #: The operations counted in ``_in_backoff`` (by id): each is counted out once, when it becomes ready.
        self._counted: set[int] = set()

    def __len__(self) -> int:
        return len(self._ready_ops) + len(self._waiting)

    def __iter__(self) -> Iterator[PendingOp]:
        """The operations waiting, ready or not (a snapshot)."""
        return iter(self._ready_ops + [w[2] for w in self._waiting])

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def add(self, op: PendingOp) -> None:
        if op.not_before > self._now or self._held_until:
            self.extend((op,))
            return
        self._bytes += op.size  # the common case, per record read (issue #22): ready, nothing held
        self._insert(op)

    def extend(self, ops: Iterable[PendingOp]) -> None:
        retried: set[Hashable] = set()  # records whose retries come in now: their ready writes wait with them
        for op in ops:
            self._bytes += op.size
            if op.not_before > self._now:  # in backoff (one that has ended, re-added, is ready)
                self._push(op.not_before, op)
                record = same_record(op.op)
                if record is not None:
                    self._counted.add(id(op))
                    self._in_backoff[record] = self._in_backoff.get(record, 0) + 1
                    self._held_until[record] = max(self._held_until.get(record, 0.0), op.not_before)
                    retried.add(record)
            elif self._held_until and (record := same_record(op.op)) in self._held_until:
                self._push(self._held_until[record], op)  # a later write of a record whose retry waits: after it
            else:
                self._insert(op)
        if retried:
            self._hold_ready(retried)

    def _push(self, at: float, op: PendingOp) -> None:
        self._seq += 1
        heapq.heappush(self._waiting, (at, self._seq, op))

    def _hold_ready(self, records: set[Hashable]) -> None:
        """Ready writes of ``records`` wait with their retries (they arrived after the first try was taken):
        one pass over the ready ones per ``extend``, however many retries it brings."""
        keep: list[PendingOp] = []
        for p in self._ready_ops:
            record = same_record(p.op)
            if record is not None and record in records:
                self._ready_bytes -= p.size
                self._push(self._held_until[record], p)
            else:
                keep.append(p)
        self._ready_ops = keep

    def _insert(self, op: PendingOp) -> None:
        ready = self._ready_ops
        # _order(op) < _order(last), without building the two keys (per record read, issue #22).
        if ready and (op.arrived < (last := ready[-1]).arrived or (op.arrived == last.arrived
                                                                   and op.source < last.source)):
            bisect.insort(ready, op, key=_order)
        else:
            ready.append(op)
        self._ready_bytes += op.size

    def _promote(self, now: float) -> None:
        """Operations whose backoff has ended join the ready ones; the writes of a record go together, when
        the last of its retries may go."""
        self._now = max(self._now, now)
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            at, _, op = heapq.heappop(waiting)
            if not self._held_until:
                self._insert(op)
                continue
            record = same_record(op.op)
            until = self._held_until.get(record, 0.0) if record is not None else 0.0
            if until > at:  # another retry of its record came in later and waits longer: it waits with it
                self._push(until, op)
                continue
            if id(op) in self._counted:
                self._counted.discard(id(op))
                self._in_backoff[record] -= 1
                if not self._in_backoff[record]:
                    del self._in_backoff[record], self._held_until[record]
            self._insert(op)

    def due(self, now: float) -> CloseReason | None:
        """Why the window should close now, or None to keep collecting."""
        self._promote(now)
        ready = self._ready_ops
        if not ready:
            return None
        max_records, max_bytes = self.limits.caps()
        if len(ready) >= max_records:
            return CloseReason.COUNT
        if self._ready_bytes >= max_bytes:
            return CloseReason.BYTES
        if now - self._oldest_arrival() >= self.limits.max_age_seconds:
            return CloseReason.AGE
        return None

    def _oldest_arrival(self) -> float:
        # Sorted by arrival: the first is the oldest.
        return self._ready_ops[0].arrived

    def oldest_ready(self, now: float) -> float | None:
        """Arrival time of the oldest operation ready now (None: none is)."""
        self._promote(now)
        return self._oldest_arrival() if self._ready_ops else None

    def next_deadline(self, now: float) -> float | None:
        """Monotonic time at which ``due`` may change without new input (age or a backoff ending)."""
        self._promote(now)
        times: list[float] = []
        if self._ready_ops:
            times.append(self._oldest_arrival() + self.limits.max_age_seconds)
        if self._waiting:
            times.append(self._waiting[0][0])
        return min(times) if times else None

    def take(self, now: float) -> list[PendingOp]:
        """Everything ready, oldest first, up to the window's count and byte caps (a bulk-enabled
        instance's bulk caps); the rest stays."""
        self._promote(now)
        max_records, max_bytes = self.limits.caps()
        ready = self._ready_ops
        if len(ready) <= max_records and self._ready_bytes <= max_bytes:
            n, size = len(ready), self._ready_bytes
        else:
            n, size = 0, 0
            for p in ready:
                if n and (n >= max_records or size + p.size > max_bytes):
                    break
                n += 1
                size += p.size
        taken = ready[:n]
        del ready[:n]
        self._ready_bytes -= size
        self._bytes -= size
        return taken

    def drop(self, keep: set[tuple[str, int]] | None = None) -> list[PendingOp]:
        """Remove (and return) operations whose (topic, partition) is not in ``keep``; all if None."""
        everything = self._ready_ops + [w[2] for w in sorted(self._waiting)]
        self._ready_ops, self._waiting, self._ready_bytes, self._bytes = [], [], 0, 0
        self._held_until, self._in_backoff, self._counted = {}, {}, set()
        if keep is None:
            return everything
        dropped = [p for p in everything if (p.source.topic, p.source.partition) not in keep]
        self.extend(p for p in everything if (p.source.topic, p.source.partition) in keep)
        return dropped


def _order(p: PendingOp) -> tuple[float, Source]:
    return (p.arrived, p.source)


def same_record(op: MarketoOperation) -> Hashable | None:
    """What an operation writes, when a later write of it must not overtake an earlier one's retry: a lead
    (its email), a custom object record (its dedupe key, planner.object_key) or a lead's program member data.
    None for what order does not change: statuses (Marketo only moves them forward,
    docs/reference/marketo-api.md §6.1) and custom activities (insert-only, one per op id)."""
    if isinstance(op, LeadUpsert):
        return ("lead", op.email)
    if isinstance(op, CustomObjectUpsert):
        return ("object", op.object_name, object_key(op)[1])
    if isinstance(op, ProgramMemberData):
        return ("member_data", op.program_id, op.email)
    return None
