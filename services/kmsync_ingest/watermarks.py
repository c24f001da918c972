"""Durable pull watermarks on the compacted topic ingest.watermarks.v1 (last value per key wins).

At start the topic is read from the beginning to its end, so a restarted ingest resumes exactly
where the last acknowledged pull stopped: it neither skips (the watermark only moves after the
records it covers were acknowledged) nor floods (it does not start over).

Several replicas write the topic (one transactional id per coordination partition), so a load
reads up to the log's end (the high watermark), not only to the last stable offset: a mark the
previous owner committed after another replica's transaction began is behind that transaction's
first offset, and a read_committed reader sees it once that transaction ends (one page).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from kmsync_common.clock import Clock, SystemClock
from kmsync_contracts import (
    ContractError,
    DeadLetter,
    IngestWatermark,
    KalturaRecord,
    SessionTimes,
    decode,
)
from kmsync_contracts.topics import INGEST_WATERMARKS
from kmsync_ingest.boundary import Boundary, decode_recent, encode_recent
from kmsync_ingest.publisher import (
    KafkaUnavailable,
    Publisher,
    outgoing_letters,
    outgoing_records,
    outgoing_watermark,
)
from kmsync_ingest.source import Stream
from kmsync_kafka import topic_name

log = logging.getLogger(__name__)


class WatermarkStore:
    def __init__(self, publisher: Publisher, load_timeout_seconds: float = 30.0, clock: Clock | None = None) -> None:
        self.publisher = publisher
        self.clock = clock or SystemClock()
        self.load_timeout = load_timeout_seconds
        self._marks: dict[str, IngestWatermark] = {}
        self.loaded = False

    @staticmethod
    def key(partner_id: int, virtual_event_id: int, stream: str, scope: str = "") -> str:
        return f"{partner_id}:{virtual_event_id}:{stream}:{scope}"

    def get(self, partner_id: int, virtual_event_id: int, stream: str, scope: str = "") -> IngestWatermark | None:
        return self._marks.get(self.key(partner_id, virtual_event_id, stream, scope))

    def boundary(self, partner_id: int, virtual_event_id: int, stream: str, scope: str = "") -> Boundary | None:
        """The stored boundary, with what it remembers of the overlap window (boundary.py) when the
        ``recent:<scope>`` mark belongs to it (same watermark: committed with it, not left by an older pull)."""
        mark = self.get(partner_id, virtual_event_id, stream, scope)
        if mark is None:
            return None
        boundary = Boundary(mark.watermark, frozenset(mark.seen_ids))
        recent = self.get(partner_id, virtual_event_id, stream, recent_scope(scope))
        if recent is None or recent.watermark != mark.watermark:
            return boundary
        return decode_recent(boundary, recent.seen_ids)

    def __iter__(self) -> Iterator[IngestWatermark]:
        return iter(list(self._marks.values()))

    async def put(
        self,
        partner_id: int,
        virtual_event_id: int,
        stream: Stream,
        scope: str,
        watermark: datetime,
        seen_ids: frozenset[str],
    ) -> IngestWatermark:
        """Store durably (acknowledged by Kafka) and only then remember it in memory."""
        mark = IngestWatermark(
            partner_id=partner_id, virtual_event_id=virtual_event_id, stream=stream,
            scope=scope, watermark=watermark, seen_ids=tuple(sorted(seen_ids)), recorded_at=self.clock.now(),
        )
        await self.publisher.put_watermark(mark)
        self._marks[mark.partition_key()] = mark
        return mark

    async def commit(
        self,
        partner_id: int,
        virtual_event_id: int,
        stream: Stream,
        scope: str,
        watermark: datetime,
        seen_ids: frozenset[str],
        records: Sequence[KalturaRecord] = (),
        letters: Sequence[DeadLetter] = (),
        extra: Sequence[tuple[str, frozenset[str]]] = (),
        session: SessionTimes | None = None,
        via: Publisher | None = None,
        recent: Boundary | None = None,
    ) -> IngestWatermark:
        """Produce records, dead letters and the watermark that covers them together (one Kafka
        transaction when the publisher is transactional); remember the marks only once committed.
        ``extra`` are more (scope, seen ids) marks of the same stream and time (shards);
        ``session`` goes on the first mark (a session's learnt times). ``via``: the publisher of the
        coordination partition that owns the event (default: the store's). ``recent``: the boundary whose
        overlap memory is stored too (scope ``recent:<scope>``, with the same watermark: ``boundary`` ignores a
        memory whose watermark is not the main mark's, so a non-transactional send that stops between the two
        falls back to the old mark alone, which re-produces at worst, never skips)."""
        memory = self._memory(partner_id, virtual_event_id, stream, scope, recent)
        now = self.clock.now()
        marks = [
            IngestWatermark(
                partner_id=partner_id, virtual_event_id=virtual_event_id, stream=stream,
                scope=s, watermark=watermark, seen_ids=tuple(sorted(ids)), recorded_at=now,
                session=session if i == 0 else None,
            )
            for i, (s, ids) in enumerate([(scope, seen_ids), *extra, *memory])
        ]
        first = len(marks) - len(memory)
        await (via or self.publisher).send_atomically([
            *outgoing_records(records), *outgoing_letters(letters),
            *(outgoing_watermark(m) for m in [*marks[first:], *marks[:first]]),
        ])
        for mark in marks:
            self._marks[mark.partition_key()] = mark
        return marks[0]

    def _memory(
        self, partner_id: int, virtual_event_id: int, stream: Stream, scope: str, recent: Boundary | None
    ) -> list[tuple[str, frozenset[str]]]:
        """The ``recent:<scope>`` mark to write with a commit: the overlap memory, or an empty one that
        clears a memory no longer kept; none when there is nothing to keep or clear."""
        if recent is None:
            return []
        stored = self.get(partner_id, virtual_event_id, stream, recent_scope(scope))
        if recent.recent_from is None and (stored is None or not stored.seen_ids):
            return []
        return [(recent_scope(scope), encode_recent(recent))]

    async def load(self, keep: Callable[[int, int], bool] | None = None) -> int:
        """Read the whole compacted topic; returns how many watermarks are known. With ``keep``
        (partner id, virtual event id → bool), only those events' marks are replaced (a replica
        taking over some events); the others' in-memory marks are left as they are."""
        if keep is not None:
            for k, mark in list(self._marks.items()):
                if keep(mark.partner_id, mark.virtual_event_id):
                    del self._marks[k]
        topic = topic_name(INGEST_WATERMARKS, self.publisher.prefix)
        # Both consumers are stopped whatever happens: a failed or timed-out start, a cancelled load (a released
        # partition's take-over), or the other's stop raising or being cancelled.
        async with contextlib.AsyncExitStack() as consumers:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.publisher.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", isolation_level="read_committed",
            )
            consumers.push_async_callback(consumer.stop)
            # The log end as written (read_uncommitted), not the last stable offset.
            ends_reader = AIOKafkaConsumer(
                bootstrap_servers=self.publisher.bootstrap, group_id=None, enable_auto_commit=False,
                isolation_level="read_uncommitted",
            )
            consumers.push_async_callback(ends_reader.stop)
            try:
                await asyncio.wait_for(consumer.start(), self.load_timeout)
                await asyncio.wait_for(ends_reader.start(), self.load_timeout)
                await asyncio.wait_for(self._read_all(consumer, ends_reader, topic, keep), self.load_timeout)
            except (KafkaError, OSError, TimeoutError) as exc:
                raise KafkaUnavailable(f"cannot read the watermarks from {topic}: {exc!r}") from exc
        self.loaded = True
        return len(self._marks)

    async def _read_all(
        self, consumer: AIOKafkaConsumer, ends_reader: AIOKafkaConsumer, topic: str,
        keep: Callable[[int, int], bool] | None,
    ) -> None:
        # Not kmsync_kafka.reading.read_to_end: that stops at the last stable offset, this reads
        # to the log end (see the module docstring), and applies records as they come.
        tps = [TopicPartition(topic, p) for p in range(await self.publisher.partitions_of(INGEST_WATERMARKS))]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await ends_reader.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for messages in batches.values():
                for msg in messages:
                    self._apply(msg.key, msg.value, keep)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)

    def _apply(self, key: bytes | None, value: bytes | None, keep: Callable[[int, int], bool] | None) -> None:
        if key is None:
            return
        if value is None:  # a tombstone forgets the watermark
            if keep is None or keep(*_event_of(key.decode())):
                self._marks.pop(key.decode(), None)
            return
        try:
            mark = decode(INGEST_WATERMARKS, value)
        except ContractError as exc:
            log.error("ignoring an unreadable watermark under key %r: %s", key, exc)
            return
        if keep is not None and not keep(mark.partner_id, mark.virtual_event_id):
            return
        self._marks[mark.partition_key()] = mark


def recent_scope(scope: str) -> str:
    """The scope of the mark that holds a boundary's overlap memory (boundary.encode_recent)."""
    return f"recent:{scope}"


def _event_of(key: str) -> tuple[int, int]:
    """(partner id, virtual event id) of a watermark key ``partner:event:stream:scope``."""
    parts = key.split(":", 2)
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return 0, 0
