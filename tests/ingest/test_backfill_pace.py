"""A history load yields to live data (issue #18): `kmsync backfill` loads its next chunk only while
transform's backlog on the Kaltura topics is at most KMSYNC_BACKFILL_MAX_TRANSFORM_LAG records."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from kmsync_common.errors import DependencyUnavailable
from kmsync_contracts.topics import ALL_TOPICS, ATTENDEE_STATUS, SESSION_ENGAGEMENT
from kmsync_ingest.backfill_pace import TransformBacklogGate, wait_below
from kmsync_kafka import ensure_topics, reliable_producer
from kmsync_kafka.clients import topic_name
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.leaks import no_unclosed_kafka_clients
from kmsync_testing.processes import free_port


async def test_the_load_waits_while_the_backlog_is_above_the_limit() -> None:
    backlog = iter([5000, 3100, 2001, 2000, 10])
    pauses: list[float] = []

    async def read() -> int:
        return next(backlog)

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    assert await wait_below(read, 2000, sleep, 0.5) == 3
    assert pauses == [0.5, 0.5, 0.5]
    assert await wait_below(read, 0, sleep) == 0  # 0: no pacing, the backlog is not even read
    assert next(backlog) == 10


async def test_the_backlog_is_what_transforms_group_has_not_committed(kafka_broker: KafkaBroker,
                                                                     topic_prefix: str) -> None:
    bootstrap = kafka_broker.bootstrap
    await ensure_topics(bootstrap, ALL_TOPICS, topic_prefix)
    engagement, status = topic_name(SESSION_ENGAGEMENT, topic_prefix), topic_name(ATTENDEE_STATUS, topic_prefix)
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        for i in range(30):
            await producer.send_and_wait(engagement, b"{}", key=f"k{i}".encode())
        for i in range(12):
            await producer.send_and_wait(status, b"{}", key=f"s{i}".encode())
    finally:
        await producer.stop()
    gate = TransformBacklogGate(bootstrap, topic_prefix, "kmsync-transform", limit=10)
    await gate.start()
    try:
        assert await gate.backlog() == 42  # the group has committed nothing: everything is ahead of it
        # Transform's group reads the engagement topic to its end and commits.
        group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{topic_prefix}kmsync-transform",
                                 enable_auto_commit=False)
        await group.start()
        try:
            parts = [TopicPartition(engagement, p) for p in range(SESSION_ENGAGEMENT.partitions)]
            group.assign(parts)
            ends = await group.end_offsets(parts)
            await group.commit({tp: end for tp, end in ends.items()})
        finally:
            await group.stop()
        assert await gate.backlog() == 12
        gate.limit = 12
        await gate.wait()  # at the limit: no wait
        assert gate.waited_seconds == 0
    finally:
        await gate.stop()


async def test_a_gate_leaves_no_kafka_client_open_whether_started_or_not() -> None:
    """`kmsync backfill` with Kafka down never starts its gate (the producer fails first); a live load (limit 0)
    starts and stops it without pacing; a start against a broker that is down fails. None of them may leave an
    aiokafka client for the garbage collector to report (an ERROR line in whatever runs then)."""
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    with no_unclosed_kafka_clients():
        TransformBacklogGate(down, "t.", "kmsync-transform", limit=10)  # never started, never stopped
        unpaced = TransformBacklogGate(down, "t.", "kmsync-transform", limit=0)
        await unpaced.start()
        assert await unpaced.backlog() == 0
        await unpaced.stop()
        failed = TransformBacklogGate(down, "t.", "kmsync-transform", limit=10)
        with pytest.raises(DependencyUnavailable):
            await failed.start()
        with pytest.raises(RuntimeError, match="before start"):
            await failed.backlog()  # not paced silently
        del unpaced, failed
