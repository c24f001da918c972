"""The activity intent log (issue #22, second round): tombstones wait for the next intents and go out in the
same send, ahead of them, so an op id's tombstone never lands after its new intent; tombstones no intents
take are sent alone after the delay. Real Kafka, six partitions as deployed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from kmsync_contracts.outcomes import ActivityIntent
from kmsync_contracts.topics import ACTIVITY_INTENTS
from kmsync_kafka.clients import ensure_topics, topic_name
from kmsync_kafka.producer import KafkaProducer, producer_config
from kmsync_kafka.reading import read_to_end
from kmsync_sink.intents import IntentLog
from kmsync_sink.memory import ActivityWrites
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]
T = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def intent(op_id: str) -> ActivityIntent:
    return ActivityIntent(op_id=op_id, munchkin_id="111-AAA-111", lead_id=5, activity_type_id=100001,
                          primary_attribute_value="1_abc", activity_date=T, recorded_at=T)


class CountingProducer(KafkaProducer):
    """The real producer, counting its sends (each is one produce request per partition it touches)."""

    sends: list[list[tuple[bytes | None, bool]]]

    async def send_many(self, records):  # type: ignore[no-untyped-def]
        self.sends.append([(r.key, r.value is None) for r in records])
        return await super().send_many(records)


async def test_tombstones_ride_with_the_next_intents_ahead_of_them_and_alone_after_the_delay(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    await ensure_topics(kafka_broker.bootstrap, (ACTIVITY_INTENTS,), topic_prefix, partitions=6)
    topic = topic_name(ACTIVITY_INTENTS, topic_prefix)
    producer = CountingProducer(producer_config(kafka_broker.bootstrap))
    producer.sends = []
    ledger = ActivityWrites()
    log = IntentLog(producer, topic, ledger, tombstone_delay_seconds=0.5)
    await producer.start()
    try:
        await log.record([intent(f"op-{i}") for i in range(12)], asyncio.Event())
        log.resolve(f"op-{i}" for i in range(12))
        assert len(producer.sends) == 1 and ledger.intent("op-0") is None  # forgotten at once, not yet sent
        # op-0 is sent again (a replay): its tombstone must land before its new intent.
        await log.record([intent("op-0"), intent("op-20")], asyncio.Event())
        assert len(producer.sends) == 2  # the twelve tombstones and the two intents in one send
        assert producer.sends[1][:12] == [(f"op-{i}".encode(), True) for i in range(12)]
        log.resolve(["op-20"])  # no intents follow: sent alone after the delay
        await wait_for(lambda: len(producer.sends) == 3, within=10, what="the lone tombstone")
        assert producer.sends[2] == [(b"op-20", True)]
        await asyncio.gather(*log.pending())
    finally:
        await producer.stop()
    read = await read_to_end(kafka_broker.bootstrap, topic)
    by_key: dict[bytes, list[bool]] = {}
    for r in read:
        by_key.setdefault(r.key, []).append(r.value is None)
    assert by_key[b"op-0"] == [False, True, False]  # intent, tombstone, the new intent: the intent stands
    assert by_key[b"op-20"] == [False, True]
    assert all(by_key[f"op-{i}".encode()] == [False, True] for i in range(1, 12))
    assert ledger.intent("op-0") is not None and ledger.intent("op-20") is None
