"""Producing to Kafka until the broker acknowledged, or until the caller gives up (a stop).

A broker outage longer than the producer's request timeout must not fail the sink: a record whose
write Marketo already applied would lose its outcome and be replayed (custom activities twice).
So records are sent again (idempotent producer, acks=all) with backoff until they are acknowledged,
or until ``give_up`` is set (a stop's drain deadline). Sending again after a timeout may store a
record twice on the topic; readers of the sink's topics take the last value per op_id, so that is
harmless, unlike a lost record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from kmsync_kafka.partitioning import CachedKeyPartitioner

log = logging.getLogger(__name__)


class PublishAbandoned(Exception):
    """Kafka did not acknowledge before a stop asked to give up; the records stay undecided."""


@dataclass(frozen=True)
class Message:
    topic: str
    value: bytes | None
    key: bytes | None


@dataclass(frozen=True)
class Backoff:
    first_seconds: float = 0.2
    max_seconds: float = 5.0


#: Where a keyed record goes: the default partitioner's partition, each key hashed once.
_PARTITIONER = CachedKeyPartitioner()


async def _send_all(producer: AIOKafkaProducer, messages: Sequence[Message]) -> None:
    """Every message in batches of its topic-partition, in order within each (one ``send_batch`` per
    batch instead of a ``send`` and a future per record: aiokafka's per-record path was 14 % of the
    sink's CPU, issue #22); the same partition as ``send`` would pick (the default partitioner's)."""
    groups: dict[tuple[str, int], list[Message]] = {}
    partitions: dict[str, list[int]] = {}
    for m in messages:
        known = partitions.get(m.topic)
        if known is None:
            known = partitions[m.topic] = sorted(await producer.partitions_for(m.topic))
        groups.setdefault((m.topic, _PARTITIONER(m.key, known, known)), []).append(m)
    futures: list[asyncio.Future[object]] = []
    for (topic, partition), group in groups.items():
        batch = producer.create_batch()
        for m in group:
            if batch.append(key=m.key, value=m.value, timestamp=None) is None:  # full: send it, start another
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=m.key, value=m.value, timestamp=None) is None:
                    raise MessageSizeTooLargeError(f"a record of {len(m.value or b'')} bytes fits no batch")
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    try:
        for future in futures:
            await future
    except BaseException:
        for future in futures:  # their errors are this call's: never "exception was never retrieved"
            future.add_done_callback(_retrieve)
        raise


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


async def produce_until_acked(
    producer: AIOKafkaProducer, messages: Sequence[Message], give_up: asyncio.Event,
    backoff: Backoff = Backoff(),
) -> None:
    """Every message acknowledged (acks=all), retried through broker outages; raises
    ``PublishAbandoned`` once ``give_up`` is set while some are not acknowledged."""
    if not messages:
        return
    delay = backoff.first_seconds
    attempt = 0
    while True:
        attempt += 1
        sending = asyncio.ensure_future(_send_all(producer, messages))
        stopper = asyncio.ensure_future(give_up.wait())
        try:
            await asyncio.wait({sending, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            sending.cancel()
            raise
        finally:
            stopper.cancel()
        if not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, KafkaError):
                await sending
            raise PublishAbandoned(f"{len(messages)} record(s) not acknowledged by Kafka before the stop")
        try:
            sending.result()
            if attempt > 1:
                log.info("kafka acknowledged %d record(s) after %d attempts", len(messages), attempt)
            return
        except KafkaError as exc:
            if give_up.is_set():
                raise PublishAbandoned(f"Kafka unavailable at the stop: {exc!r}") from exc
            log.warning("kafka did not acknowledge %d record(s) (%r); sending again in %.1fs",
                        len(messages), exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(give_up.wait(), delay)
        if give_up.is_set():
            raise PublishAbandoned(f"{len(messages)} record(s) not acknowledged by Kafka before the stop")
        delay = min(backoff.max_seconds, delay * 2)
