"""Which offset each partition may commit (pure).

Kafka Connect's rule (docs/reference/streaming.md §4, preCommit): commit only offsets whose records are durable
downstream. Here: an offset is committable only when every record before it on that partition has an
outcome (written, skipped for a known reason, or dead-lettered). Records finish out of order (one
instance parked, another flowing on the same partition), so the tracker keeps the open offsets.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from kmsync_sink.pending import Source


@dataclass(slots=True)
class _PartitionState:
    #: Offsets read and not yet decided, ascending (a consumer reads a partition in order, so a read
    #: appends); decided ones are removed lazily from the front.
    pending: deque[int] = field(default_factory=deque)
    open: set[int] = field(default_factory=set)
    #: One past the highest offset read.
    high: int | None = None
    #: The last offset handed to commit.
    committed: int | None = None


class OffsetTracker:
    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], _PartitionState] = {}

    def read(self, topic: str, partition: int, offset: int) -> None:
        st = self._parts.get((topic, partition))
        if st is None:  # not setdefault: that would build a state per record (issue #22)
            st = self._parts[(topic, partition)] = _PartitionState()
        if offset in st.open:
            return
        st.open.add(offset)
        if st.high is None or offset >= st.high:
            st.pending.append(offset)
            st.high = offset + 1
        else:  # behind what was read (not from one consumer's fetches): to its place
            bisect.insort(st.pending, offset)

    def done(self, topic: str, partition: int, offset: int) -> None:
        st = self._parts.get((topic, partition))
        if st is not None:
            st.open.discard(offset)

    def done_many(self, sources: Iterable[Source]) -> None:
        """``done`` for each of ``sources``, the partition's state looked up once per run of the same partition
        (a call's outcomes come from one or two partitions; issue #22)."""
        last: tuple[str, int] | None = None
        still_open: set[int] | None = None
        for topic, partition, offset in sources:
            if last is None or last[0] != topic or last[1] != partition:
                last = (topic, partition)
                st = self._parts.get(last)
                still_open = st.open if st is not None else None
            if still_open is not None:
                still_open.discard(offset)

    def open_count(self, topic: str, partition: int) -> int:
        st = self._parts.get((topic, partition))
        return len(st.open) if st else 0

    def committable(self, topic: str, partition: int) -> int | None:
        """The next offset to read after everything decided in order; None if nothing yet."""
        st = self._parts.get((topic, partition))
        if st is None or st.high is None:
            return None
        pending, still_open = st.pending, st.open
        while pending and pending[0] not in still_open:
            pending.popleft()
        return pending[0] if pending else st.high

    def to_commit(self) -> dict[tuple[str, int], int]:
        """Offsets that moved since the last call (then remembered as committed)."""
        out: dict[tuple[str, int], int] = {}
        for key, st in self._parts.items():
            pos = self.committable(*key)
            if pos is not None and pos != st.committed:
                out[key] = pos
        return out

    def mark_committed(self, offsets: dict[tuple[str, int], int]) -> None:
        for key, pos in offsets.items():
            st = self._parts.get(key)
            if st is not None:
                st.committed = pos

    def forget(self, topic: str, partition: int) -> None:
        """A revoked partition: its open records belong to the next owner now."""
        self._parts.pop((topic, partition), None)

    def partitions(self) -> list[tuple[str, int]]:
        return list(self._parts)
