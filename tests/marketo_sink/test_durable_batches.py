"""Outcomes and dead letters go to Kafka through the confluent-kafka producer (issue #22): every record lands on
the partition aiokafka's default partitioner gives its key, in order, acknowledged, across more than one batch;
a broker that is away is waited out, and a stop gives up with PublishAbandoned."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.partitioner import DefaultPartitioner

from kmsync_contracts.topics import MARKETO_DLQ, MARKETO_RESULTS
from kmsync_kafka.clients import ensure_topics, topic_name
from kmsync_kafka.producer import KafkaProducer, producer_config
from kmsync_kafka.reading import read_to_end
from kmsync_sink.durable import Backoff, Message, PublishAbandoned, produce_until_acked
from kmsync_testing.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def test_records_land_on_their_keys_partitions_in_order_across_batches(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    await ensure_topics(kafka_broker.bootstrap, (MARKETO_RESULTS, MARKETO_DLQ), topic_prefix, partitions=3)
    results, dlq = topic_name(MARKETO_RESULTS, topic_prefix), topic_name(MARKETO_DLQ, topic_prefix)
    keys = [f"{i}-AAA-{i}".encode() for i in range(5)]
    messages = [Message(results, f"r{i}".encode() * 40, keys[i % 5]) for i in range(600)]
    messages += [Message(dlq, f"d{i}".encode(), keys[i % 2]) for i in range(20)]
    producer = KafkaProducer(producer_config(kafka_broker.bootstrap, **{"batch.size": 2_000}))  # ~15 per batch
    await producer.start()
    try:
        await produce_until_acked(producer, messages, asyncio.Event())
    finally:
        await producer.stop()
    for topic in (results, dlq):
        sent = [m for m in messages if m.topic == topic]
        read = await read_to_end(kafka_broker.bootstrap, topic)
        assert len(read) == len(sent)
        for key in {m.key for m in sent}:
            assert key is not None
            assert {r.partition for r in read if r.key == key} == {DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2])}
            assert [r.value for r in read if r.key == key] == [m.value for m in sent if m.key == key]


async def test_records_kafka_does_not_acknowledge_are_sent_again_until_the_stop_gives_up(
    kafka_broker: KafkaBroker, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    await ensure_topics(kafka_broker.bootstrap, (MARKETO_RESULTS,), topic_prefix, partitions=3)
    results = topic_name(MARKETO_RESULTS, topic_prefix)
    producer = KafkaProducer(producer_config(kafka_broker.bootstrap))
    await producer.start()
    give_up = asyncio.Event()
    try:
        # Partition 7 of a 3-partition topic: librdkafka refuses it on every attempt, as it would fail an outage.
        asyncio.get_running_loop().call_later(1.0, give_up.set)
        with pytest.raises(PublishAbandoned, match="1 record"):
            await produce_until_acked(producer, [Message(results, b"v", b"k", 7)], give_up, Backoff(0.05, 0.1))
    finally:
        await producer.stop()
    attempts = [r for r in caplog.records if "kafka did not acknowledge 1 record(s)" in r.getMessage()]
    assert len(attempts) >= 2 and "UNKNOWN_PARTITION" in attempts[0].getMessage()
