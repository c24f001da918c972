"""Producing ingest's records to Kafka: acknowledged (acks=all, idempotent) or an exception.

Every caller (pull, webhook, upload, backfill) goes through ``Publisher.publish``: it returns
only once Kafka has acknowledged every record, so ingest never answers success for something
Kafka did not store (architecture.md principle 1). When Kafka does not acknowledge within the
configured time, ``KafkaUnavailable`` is raised and the caller answers 503 / does not advance
its watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from ingest.metrics import IngestMetrics
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
    INGEST_WATERMARKS,
    POLL_RESPONSES,
    SESSION_ENGAGEMENT,
    TopicSpec,
)
from kmsync_kafka import ensure_topics, reliable_producer, topic_name

log = logging.getLogger(__name__)

#: Every topic ingest writes.
INGEST_TOPICS: tuple[TopicSpec, ...] = (
    ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES, INGEST_WATERMARKS, INGEST_DLQ,
)

#: The stream label (metrics) and topic of each record type.
STREAMS: dict[type[KalturaRecord], tuple[str, TopicSpec]] = {
    AttendeeStatus: ("statuses", ATTENDEE_STATUS),
    SessionEngagement: ("engagement", SESSION_ENGAGEMENT),
    PollResponse: ("polls", POLL_RESPONSES),
}


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge in time; nothing may be reported as accepted."""


@dataclass(frozen=True)
class Outgoing:
    spec: TopicSpec
    key: str
    value: BaseModel
    stream: str


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
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.metrics = metrics
        self.ack_timeout = ack_timeout_seconds
        self.batch_size = batch_size
        self._producer: AIOKafkaProducer | None = None
        self.kafka_ok = False

    def topic(self, spec: TopicSpec) -> str:
        return topic_name(spec, self.prefix)

    async def start(self) -> None:
        """Create ingest's topics (idempotent) and connect; raises KafkaUnavailable if it cannot."""
        try:
            await asyncio.wait_for(
                ensure_topics(self.bootstrap, INGEST_TOPICS, prefix=self.prefix), self.ack_timeout * 3
            )
            timeout_ms = int(self.ack_timeout * 1000)
            producer = reliable_producer(self.bootstrap, request_timeout_ms=timeout_ms)
            await asyncio.wait_for(producer.start(), self.ack_timeout * 3)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise KafkaUnavailable(f"cannot reach Kafka at {self.bootstrap}: {exc!r}") from exc
        self._producer = producer
        self.kafka_ok = True
        self.metrics.kafka_up.set(1)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # stop() flushes; against a dead broker an idempotent producer would wait for ever.
        try:
            await asyncio.wait_for(producer.stop(), self.ack_timeout)
        except (TimeoutError, KafkaError) as exc:
            log.warning("Kafka producer did not stop cleanly: %r", exc)
            with contextlib.suppress(Exception):
                await producer.client.close()

    async def probe(self) -> bool:
        """Can the producer reach a broker right now? (for /readyz)."""
        if self._producer is None:
            return False
        try:
            ok = await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2.0)
        except (KafkaError, OSError, TimeoutError):
            return False
        return bool(ok.brokers())

    async def publish(self, records: Sequence[KalturaRecord]) -> None:
        """Produce contract records keyed partner:event:user and wait for every ack."""
        out = [
            Outgoing(STREAMS[type(r)][1], r.partition_key(), r, STREAMS[type(r)][0]) for r in records
        ]
        await self.send(out)

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        await self.send([Outgoing(INGEST_DLQ, d.source_key or d.reason_code, d, "dlq") for d in letters])

    async def put_watermark(self, mark: IngestWatermark) -> None:
        await self.send([Outgoing(INGEST_WATERMARKS, mark.partition_key(), mark, "watermarks")])

    async def send(self, items: Sequence[Outgoing]) -> None:
        for start in range(0, len(items), self.batch_size):
            await self._send_batch(items[start : start + self.batch_size])

    async def _send_batch(self, items: Sequence[Outgoing]) -> None:
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the Kafka producer is not running")

        async def send_and_wait() -> None:
            futures = [
                await producer.send(self.topic(i.spec), encode(i.value), key=i.key.encode()) for i in items
            ]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_and_wait(), self.ack_timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            self.kafka_ok = False
            self.metrics.kafka_up.set(0)
            self.metrics.errors.labels("kafka").inc()
            raise KafkaUnavailable(
                f"Kafka did not acknowledge {len(items)} record(s) within {self.ack_timeout:g}s: {exc!r}"
            ) from exc
        self.kafka_ok = True
        self.metrics.kafka_up.set(1)
        for i in items:
            self.metrics.records_out.labels(i.stream).inc()
