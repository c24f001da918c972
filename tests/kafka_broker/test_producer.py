"""kmsync_kafka.producer (issue #22): the confluent-kafka producer puts every key on the partition aiokafka and
Java put it on (co-partitioned topics and the sink's routing depend on it), acknowledges in order, and fails
with ProduceError, never silently."""

from __future__ import annotations

import socket

import pytest
from aiokafka.partitioner import DefaultPartitioner

from kmsync_contracts.topics import MARKETO_DLQ, MARKETO_RESULTS
from kmsync_kafka.clients import ensure_topics, topic_name
from kmsync_kafka.partitioning import CachedKeyPartitioner
from kmsync_kafka.producer import KafkaProducer, ProduceError, Record, producer_config
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def _keys() -> list[bytes]:
    munchkins = [f"{i:03d}-{chr(65 + i % 26) * 3}-{i * 7 % 1000:03d}".encode() for i in range(300)]
    people = [f"{1000 + i}:1_{i % 13:07d}:user-{i}@example.com".encode() for i in range(400)]
    return munchkins + people + [bytes([i % 256, 255 - i % 256, 0, 7]) for i in range(300)]


@pytest.mark.parametrize("partitions", [6, 7])
async def test_every_key_lands_on_the_partition_aiokafka_and_java_give_it(
    kafka_broker: KafkaBroker, topic_prefix: str, partitions: int
) -> None:
    await ensure_topics(kafka_broker.bootstrap, (MARKETO_RESULTS,), topic_prefix, partitions=partitions)
    topic = topic_name(MARKETO_RESULTS, topic_prefix)
    keys = _keys()
    producer = KafkaProducer(producer_config(kafka_broker.bootstrap))
    await producer.start()
    try:
        first = await (await producer.send(topic, b"first", keys[0]))
        await producer.send_batch([Record(topic, f"v{i}".encode(), key) for i, key in enumerate(keys[1:], 1)])
    finally:
        await producer.stop()
    numbers = list(range(partitions))
    expected = {key: DefaultPartitioner()(key, numbers, numbers) for key in keys}
    assert expected == {key: CachedKeyPartitioner()(key, numbers, numbers) for key in keys}
    assert first is not None and (first.topic, first.partition) == (topic, expected[keys[0]])
    read = await read_to_end(kafka_broker.bootstrap, topic)
    assert len(read) == len(keys)
    wrong = [(r.key, r.partition, expected[r.key]) for r in read if r.key is None or r.partition != expected[r.key]]
    assert wrong == []
    assert len({r.partition for r in read}) == partitions  # the keys spread: the check means something


async def test_records_are_acknowledged_in_order_with_explicit_partitions_and_headers(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    producer = KafkaProducer(producer_config(kafka_broker.bootstrap, **{"batch.size": 2_000}))
    await producer.start()
    await ensure_topics(kafka_broker.bootstrap, (MARKETO_DLQ,), topic_prefix, partitions=3)
    topic = topic_name(MARKETO_DLQ, topic_prefix)
    try:  # just created: the broker may not list it yet, the count is asked again
        assert await producer.partition_count(topic) == 3
        records = [Record(topic, f"r{i}".encode() * 30, b"k", 2, [("n", str(i).encode())]) for i in range(500)]
        await producer.send_batch(records)
        assert await producer.flush() == 0
    finally:
        await producer.stop()
    read = await read_to_end(kafka_broker.bootstrap, topic)
    assert [r.partition for r in read] == [2] * 500
    assert [r.value for r in read] == [r.value for r in records]
    assert [dict(r.headers)["n"] for r in read] == [str(i).encode() for i in range(500)]


async def test_a_record_kafka_refuses_fails_its_send(kafka_broker: KafkaBroker, topic_prefix: str) -> None:
    await ensure_topics(kafka_broker.bootstrap, (MARKETO_DLQ,), topic_prefix, partitions=1)
    topic = topic_name(MARKETO_DLQ, topic_prefix)
    producer = KafkaProducer(producer_config(kafka_broker.bootstrap))
    await producer.start()
    try:
        with pytest.raises(ProduceError, match="MSG_SIZE_TOO_LARGE") as failed:
            await producer.send_batch([Record(topic, b"ok", b"k"), Record(topic, b"x" * 2_000_000, b"k")])
        assert failed.value.code == "MSG_SIZE_TOO_LARGE" and not failed.value.fatal
        with pytest.raises(ProduceError, match="UNKNOWN_PARTITION|Unknown partition"):
            await producer.send_batch([Record(topic, b"v", b"k", 5)])
    finally:
        await producer.stop()
    with pytest.raises(ProduceError, match="not running"):
        await producer.send_batch([Record(topic, b"v", b"k")])


async def test_no_broker_fails_start_within_its_time() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    producer = KafkaProducer(producer_config(f"127.0.0.1:{port}"))
    with pytest.raises(ProduceError, match="no Kafka broker answered within 1s"):
        await producer.start(1.0)
