"""Which offset each partition may commit (pure).

Kafka Connect's rule (docs/reference/streaming.md §4, preCommit): commit only offsets whose records are durable
downstream. Here: an offset is committable only when every record before it on that partition has an
outcome (written, skipped for a known reason, or dead-lettered). Records finish out of order (one
instance parked, another flowing on the same partition), so the tracker keeps the open offsets.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class _PartitionState:
    #: Offsets read and not yet decided (a heap; finished ones are removed lazily).
    open_heap: list[int] = field(default_factory=list)
    open: set[int] = field(default_factory=set)
    #: One past the highest offset read.
    high: int | None = None
    #: The last offset handed to commit.
    committed: int | None = None


class OffsetTracker:
    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], _PartitionState] = {}

    def read(self, topic: str, partition: int, offset: int) -> None:
        st = self._parts.setdefault((topic, partition), _PartitionState())
        if offset in st.open:
            return
        st.open.add(offset)
        heapq.heappush(st.open_heap, offset)
        st.high = max(st.high or 0, offset + 1)

    def done(self, topic: str, partition: int, offset: int) -> None:
        st = self._parts.get((topic, partition))
        if st is not None:
            st.open.discard(offset)

    def open_count(self, topic: str, partition: int) -> int:
        st = self._parts.get((topic, partition))
        return len(st.open) if st else 0

    def committable(self, topic: str, partition: int) -> int | None:
        """The next offset to read after everything decided in order; None if nothing yet."""
        st = self._parts.get((topic, partition))
        if st is None or st.high is None:
            return None
        while st.open_heap and st.open_heap[0] not in st.open:
            heapq.heappop(st.open_heap)
        return st.open_heap[0] if st.open_heap else st.high

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
