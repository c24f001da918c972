"""Producing ingest's records to Kafka: acknowledged (acks=all, idempotent) or an exception.

Every caller (pull, webhook, upload, backfill) goes through ``Publisher.publish``: it returns
only once Kafka has acknowledged every record, so ingest never answers success for something
Kafka did not store (architecture.md principle 1). When Kafka does not acknowledge within the
configured time, ``KafkaUnavailable`` is raised and the caller answers 503 / does not advance
its watermark.

Every send goes through kmsync_kafka.producer (confluent-kafka, issue #22; each key on the partition
aiokafka and Java give it, docs/reference/streaming.md §3.1), the pull pages' transactions too
(``init_transactions`` fences the id's previous holder: coordination.py, ownership.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from kmsync_common.errors import DependencyUnavailable
from kmsync_contracts import (
    AttendeeStatus,
    DeadLetter,
    IngestWatermark,
    KalturaRecord,
    PollResponse,
    SessionEngagement,
    encode,
)
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    INGEST_DLQ,
    INGEST_PULL_OWNERS,
    INGEST_WATERMARKS,
    LEFT_OPEN_MARKER_KEY,
    POLL_RESPONSES,
    SESSION_ENGAGEMENT,
    TopicSpec,
)
from kmsync_ingest.metrics import IngestMetrics
from kmsync_kafka import ensure_topics, topic_name
from kmsync_kafka.hanging import held_open
from kmsync_kafka.left_open import end_left_open
from kmsync_kafka.producer import KafkaProducer, ProduceError, Record, await_delivery, producer_config

log = logging.getLogger(__name__)

#: Every topic ingest writes.
INGEST_TOPICS: tuple[TopicSpec, ...] = (
    ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES, INGEST_WATERMARKS, INGEST_DLQ,
)

#: The key of the records ``Publisher.end_left_open`` writes in a transaction it aborts (never read).
LEFT_OPEN_KEY = b"kmsync-ingest:abort-left-open"
#: Where ``Publisher.end_left_open`` ends what its id left open with a commit (its docstring says why).
LEFT_OPEN_COMMITTED: tuple[TopicSpec, ...] = (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES, INGEST_DLQ)

#: The stream label (metrics) and topic of each record type.
STREAMS: dict[type[KalturaRecord], tuple[str, TopicSpec]] = {
    AttendeeStatus: ("statuses", ATTENDEE_STATUS),
    SessionEngagement: ("engagement", SESSION_ENGAGEMENT),
    PollResponse: ("polls", POLL_RESPONSES),
}


class KafkaUnavailable(DependencyUnavailable):
    """Kafka did not acknowledge in time; nothing may be reported as accepted."""


@dataclass(frozen=True)
class Outgoing:
    spec: TopicSpec
    key: str
    value: BaseModel
    stream: str


def outgoing_records(records: Sequence[KalturaRecord]) -> list[Outgoing]:
    return [Outgoing(STREAMS[type(r)][1], r.partition_key(), r, STREAMS[type(r)][0]) for r in records]


def outgoing_letters(letters: Sequence[DeadLetter]) -> list[Outgoing]:
    return [Outgoing(INGEST_DLQ, d.source_key or d.reason_code, d, "dlq") for d in letters]


def outgoing_watermark(mark: IngestWatermark) -> Outgoing:
    return Outgoing(INGEST_WATERMARKS, mark.partition_key(), mark, "watermarks")


def _partitions(tps: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps) or "none"


def stream_of(record: KalturaRecord) -> str:
    return STREAMS[type(record)][0]


class Publisher:
    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        metrics: IngestMetrics,
        *,
        ack_timeout_seconds: float = 10.0,
        batch_size: int = 500,
        transactional_id: str | None = None,
        coordination_partitions: int | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.metrics = metrics
        self.ack_timeout = ack_timeout_seconds
        self.batch_size = batch_size
        #: When set, ``send_atomically`` writes in Kafka transactions under this id (pull pages).
        self.transactional_id = transactional_id
        self._producer: KafkaProducer | None = None
        self._tx: KafkaProducer | None = None
        self._tx_lock = asyncio.Lock()
        self.kafka_ok = False
        #: Partitions of ingest.pull-owners.v1 when it is created here (None: not created).
        self.coordination_partitions = coordination_partitions
        #: False for a sibling (``for_transactions``): the plain producer belongs to its parent.
        self._owns_plain = True
        #: A sibling whose transaction failed: it never starts another producer under its id by
        #: itself (that could fence a replica that took the partition over meanwhile, and this one's
        #: watermarks may be stale); the service takes the partition over again (fence + reload).
        self.broken = False

    def for_transactions(self, transactional_id: str | None) -> Publisher:
        """A publisher sharing this one's plain producer, with its own transactional id (one per
        coordination partition: the next owner of the partition fences this one). Start it with
        ``start_transactions``; its ``stop`` leaves the parent's producer running."""
        sibling = Publisher(self.bootstrap, self.prefix, self.metrics, ack_timeout_seconds=self.ack_timeout,
                            batch_size=self.batch_size, transactional_id=transactional_id)
        sibling._producer = self._producer
        sibling._owns_plain = False
        sibling.kafka_ok = self.kafka_ok
        return sibling

    async def start_transactions(self) -> None:
        """Start the transactional producer now: this fences the id's previous holder (a killed or
        paused replica) and aborts its open transaction. Raises KafkaUnavailable."""
        if self.transactional_id is None:
            return
        async with self._tx_lock:
            await self._transactional_producer()

    async def end_left_open(self, specs: Sequence[TopicSpec] = INGEST_TOPICS) -> None:
        """After ``start_transactions``: end what this id left open on a partition of ``specs``, nothing anywhere
        else. A broker crash can leave a transaction of this id open on a partition although its coordinator no
        longer knows it (a "hanging" transaction, OBSERVED with Kafka 4.4: SIGKILL of the broker mid-page). The
        fence does not end it, and it holds every read_committed reader of the partition (the watermark load,
        transform) for good. A marker of the same producer id ends it: every partition an open transaction holds
        (its last stable offset behind its log end; logged) gets a record in a transaction of this id, which
        ends there as follows.

        - **Committed** on the data topics (kaltura.*, ingest.dlq.v1), with a record transform and the DLQ tools
          skip (``LEFT_OPEN_MARKER_KEY``): what was left open may be a page whose transaction the coordinator
          committed (its state was CompleteCommit when session 10 saw one), the watermark past it. Ending that
          aborted lost the page's records with nothing to pull them again (session 11's CI: 6 leads and their
          program members). Committed, a page the coordinator had aborted is delivered as well as pulled again:
          transform emits no status, lead fields or custom activity for the repeat, only the custom object
          upserts again under the same operation ids (idempotent), and dead letters again
          (tests/transform/test_repeated_input.py).
        - **Aborted** on ingest.watermarks.v1: a watermark committed there that its
          coordinator had aborted would move a pull past records that were never delivered; aborting one it had
          committed only makes the next pull read those records again.

        Raises KafkaUnavailable."""
        if self.transactional_id is None:
            return
        try:  # only the partitions an open transaction holds (a takeover writes nothing anywhere else)
            held = await held_open(self.bootstrap, [self.topic(spec) for spec in specs], within=self.ack_timeout)
        except (KafkaError, TimeoutError, OSError) as exc:
            self._failed()
            raise KafkaUnavailable(f"cannot read which partitions a transaction holds: {exc!r}") from exc
        if not held:
            return
        delivered = {self.topic(spec) for spec in LEFT_OPEN_COMMITTED}
        to_commit = [tp for tp in held if tp.topic in delivered]
        to_abort = [tp for tp in held if tp.topic not in delivered]
        # Another owner's pull in progress holds a partition too: its transaction is unharmed (a marker ends only
        # this producer id's), so the list is what to look at, not what was wrong.
        log.warning("%s: an open transaction holds %s; ending any of this id's: committed on %s, aborted on %s",
                    self.transactional_id, _partitions(held),
                    _partitions(to_commit), _partitions(to_abort))
        async with self._tx_lock:
            producer = await self._transactional_producer()
            try:
                await end_left_open(producer, to_commit, LEFT_OPEN_MARKER_KEY, self.ack_timeout, commit=True)
                await end_left_open(producer, to_abort, LEFT_OPEN_KEY, self.ack_timeout)
            except (ProduceError, TimeoutError) as exc:
                self._tx = None
                self.broken = not self._owns_plain
                await producer.stop(0)
                self._failed()
                raise KafkaUnavailable(f"cannot end what {self.transactional_id} left open: {exc!r}") from exc

    def topic(self, spec: TopicSpec) -> str:
        return topic_name(spec, self.prefix)

    async def start(self) -> None:
        """Create ingest's topics (idempotent) and connect; raises KafkaUnavailable if it cannot."""
        try:
            await asyncio.wait_for(
                ensure_topics(self.bootstrap, INGEST_TOPICS, prefix=self.prefix), self.ack_timeout * 3
            )
            if self.coordination_partitions is not None:
                await asyncio.wait_for(ensure_topics(
                    self.bootstrap, [INGEST_PULL_OWNERS], prefix=self.prefix,
                    partitions=self.coordination_partitions,
                ), self.ack_timeout * 3)
            producer = KafkaProducer(self._config())
            await producer.start(self.ack_timeout * 3)
        except (KafkaError, ProduceError, OSError, TimeoutError) as exc:
            raise KafkaUnavailable(f"cannot reach Kafka at {self.bootstrap}: {exc!r}") from exc
        self._producer = producer
        if self.transactional_id is not None:
            # Before anything reads the watermarks: starting the transactional producer fences an
            # earlier incarnation (a killed ingest) and aborts its open transaction, so the
            # read_committed load sees everything committed after it began (not only up to it).
            try:
                async with self._tx_lock:
                    await self._transactional_producer()
            except BaseException:  # a start that raises leaves no producer running
                await self.stop()
                raise
        self.kafka_ok = True
        self.metrics.kafka_up.set(1)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        tx, self._tx = self._tx, None
        if not self._owns_plain:
            producer = None
            # A page still running after its partition was released must not start a producer
            # under the partition's id again: that would fence the partition's new owner.
            self.broken = True
        # Bounded: against a dead broker what is still queued fails after ack_timeout.
        for p in (tx, producer):
            if p is not None:
                await p.stop(self.ack_timeout)

    async def probe(self) -> bool:
        """Can the producer reach a broker right now? (for /readyz)."""
        if self._producer is None:
            return False
        return await self._producer.probe(2.0)

    async def publish(self, records: Sequence[KalturaRecord]) -> None:
        """Produce contract records keyed partner:event:user and wait for every ack."""
        await self.send(outgoing_records(records))

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        await self.send(outgoing_letters(letters))

    async def put_watermark(self, mark: IngestWatermark) -> None:
        await self.send([outgoing_watermark(mark)])

    async def send_atomically(self, items: Sequence[Outgoing]) -> None:
        """All of ``items`` in one Kafka transaction (records and the watermark that covers them):
        read_committed consumers see all or nothing. A transaction that fails or times out is never
        committed: its producer is dropped and the next one (same transactional id) fences it, so
        the coordinator aborts it. Without a transactional id: an ordinary acknowledged send."""
        if self.transactional_id is None:
            await self.send(items)
            return
        if self.broken:
            raise KafkaUnavailable("the partition's transactional producer failed; it must be taken over again")
        async with self._tx_lock:
            producer = await self._transactional_producer()

            timeout = self.ack_timeout * max(1.0, len(items) / self.batch_size)

            async def in_transaction() -> None:
                producer.begin_transaction()
                # Every record stored before the commit: librdkafka's commit does not fail for a record it
                # refused itself (MSG_SIZE_TOO_LARGE), and the rest must never be committed without it.
                await await_delivery(await producer.send_many(self._records(items)))
                await producer.commit_transaction(timeout)

            try:
                await asyncio.wait_for(in_transaction(), timeout)
            except (ProduceError, TimeoutError) as exc:
                self._tx = None
                self.broken = not self._owns_plain
                await self._abort(producer)
                self._failed()
                raise KafkaUnavailable(
                    f"Kafka did not commit a transaction of {len(items)} record(s) within {timeout:g}s: {exc!r}"
                ) from exc
            self._succeeded(items)

    async def _abort(self, producer: KafkaProducer) -> None:
        """A transaction never committed: aborted if Kafka answers in time, else the next holder of the
        id fences it (or Kafka's transaction timeout ends it); the producer is dropped either way."""
        try:
            await asyncio.wait_for(producer.abort_transaction(self.ack_timeout), self.ack_timeout)
        except (ProduceError, TimeoutError) as exc:
            log.info("transaction not aborted (%r); the next producer of its id fences it", exc)
        await producer.stop(0)

    async def _transactional_producer(self) -> KafkaProducer:
        if self._tx is not None:
            return self._tx
        producer = KafkaProducer(self._config(**{
            "transactional.id": self.transactional_id,
            # librdkafka refuses message.timeout.ms above it; 60 s is its default and aiokafka's
            "transaction.timeout.ms": max(60_000, int(self.ack_timeout * 1000)),
        }))
        try:
            await producer.start(self.ack_timeout)
            await producer.init_transactions(self.ack_timeout)
        except BaseException as exc:  # cancelled too (a released partition's take-over): never left running
            await producer.stop(0)
            if not isinstance(exc, ProduceError):
                raise
            self._failed()
            raise KafkaUnavailable(f"cannot start a transactional producer: {exc!r}") from exc
        self._tx = producer
        return producer

    def _failed(self) -> None:
        self.kafka_ok = False
        self.metrics.kafka_up.set(0)
        self.metrics.errors.labels("kafka").inc()

    def _succeeded(self, items: Sequence[Outgoing]) -> None:
        self.kafka_ok = True
        self.metrics.kafka_up.set(1)
        for stream, n in Counter(i.stream for i in items).items():
            self.metrics.records_out.labels(stream).inc(n)

    def _config(self, **overrides: object) -> dict[str, object]:
        timeout_ms = int(self.ack_timeout * 1000)
        return producer_config(self.bootstrap, **{"request.timeout.ms": timeout_ms, "message.timeout.ms": timeout_ms},
                               **overrides)

    def _records(self, items: Sequence[Outgoing]) -> list[Record]:
        """Each item encoded once; its key's partition is librdkafka's murmur2_random, kmsync_ingest.partitioning's
        partition_for hashed in C."""
        return [Record(self.topic(i.spec), encode(i.value), i.key.encode()) for i in items]

    async def send_to_partition(self, item: Outgoing, partition: int) -> None:
        """One record to a given partition, acknowledged (a trigger for a coordination partition)."""
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the Kafka producer is not running")
        try:
            future = await producer.send(self.topic(item.spec), encode(item.value), item.key.encode(),
                                         partition=partition)
            await asyncio.wait_for(await_delivery(future), self.ack_timeout)
        except (ProduceError, TimeoutError) as exc:
            self._failed()
            raise KafkaUnavailable(f"Kafka did not acknowledge a record within {self.ack_timeout:g}s: {exc!r}") from exc
        self._succeeded([item])

    async def partitions_of(self, spec: TopicSpec) -> int:
        """How many partitions a topic has (from the broker's metadata)."""
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the Kafka producer is not running")
        try:
            return await producer.partition_count(self.topic(spec), self.ack_timeout)
        except ProduceError as exc:
            raise KafkaUnavailable(f"cannot read the partitions of {self.topic(spec)}: {exc!r}") from exc

    async def send(self, items: Sequence[Outgoing]) -> None:
        for start in range(0, len(items), self.batch_size):
            await self._send_batch(items[start : start + self.batch_size])

    async def _send_batch(self, items: Sequence[Outgoing]) -> None:
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the Kafka producer is not running")

        try:
            await asyncio.wait_for(producer.send_batch(self._records(items)), self.ack_timeout)
        except (ProduceError, TimeoutError) as exc:
            self._failed()
            raise KafkaUnavailable(
                f"Kafka did not acknowledge {len(items)} record(s) within {self.ack_timeout:g}s: {exc!r}"
            ) from exc
        self._succeeded(items)
