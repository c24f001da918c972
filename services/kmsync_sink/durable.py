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

from kmsync_kafka.producer import KafkaProducer, ProduceError, Record

log = logging.getLogger(__name__)


class PublishAbandoned(Exception):
    """Kafka did not acknowledge before a stop asked to give up; the records stay undecided."""


#: A record for the sink's topics (topic, value, key): each goes to its key's partition, as the Java client
#: and aiokafka put it (librdkafka's murmur2_random, docs/reference/streaming.md §3.1).
Message = Record


@dataclass(frozen=True)
class Backoff:
    first_seconds: float = 0.2
    max_seconds: float = 5.0


async def produce_until_acked(
    producer: KafkaProducer, messages: Sequence[Message], give_up: asyncio.Event,
    backoff: Backoff = Backoff(),
) -> None:
    """Every message acknowledged (acks=all), retried through broker outages; raises
    ``PublishAbandoned`` once ``give_up`` is set while some are not acknowledged, and a fatal
    ``ProduceError`` (the producer can produce nothing more: the sink stops, its records undecided).
    librdkafka batches per topic-partition and keeps each partition's order (idempotence)."""
    if not messages:
        return
    delay = backoff.first_seconds
    attempt = 0
    while True:
        attempt += 1
        sending = asyncio.ensure_future(producer.send_batch(messages))
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
            with contextlib.suppress(asyncio.CancelledError, ProduceError):
                await sending
            raise PublishAbandoned(f"{len(messages)} record(s) not acknowledged by Kafka before the stop")
        try:
            sending.result()
            if attempt > 1:
                log.info("kafka acknowledged %d record(s) after %d attempts", len(messages), attempt)
            return
        except ProduceError as exc:
            if exc.fatal:
                raise
            if give_up.is_set():
                raise PublishAbandoned(f"Kafka unavailable at the stop: {exc!r}") from exc
            log.warning("kafka did not acknowledge %d record(s) (%r); sending again in %.1fs",
                        len(messages), exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(give_up.wait(), delay)
        if give_up.is_set():
            raise PublishAbandoned(f"{len(messages)} record(s) not acknowledged by Kafka before the stop")
        delay = min(backoff.max_seconds, delay * 2)
