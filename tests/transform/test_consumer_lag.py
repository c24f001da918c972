"""kmsync_transform_consumer_lag_records: the worker reports how far behind it is, per input partition,
from its fetch responses; against the real broker, and the pure end-offset rule."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from kmsync_contracts import SessionEngagement, encode
from kmsync_contracts.topics import SESSION_ENGAGEMENT
from kmsync_kafka import reliable_producer, topic_name
from kmsync_kafka.lag import lag, log_end
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.app import TransformWorker, ensure_transform_topics
from kmsync_transform.settings import TransformSettings

from .conftest import tenants_config

LAG = "kmsync_transform_consumer_lag_records"
BATCH = 10
DEADLINE = 60.0


def test_log_end_is_the_last_stable_offset_for_read_committed_else_the_high_watermark() -> None:
    assert log_end(120, 100, "read_committed") == 100  # an open transaction: 100.. not readable yet
    assert log_end(120, 100, "read_uncommitted") == 120
    assert log_end(120, -1, "read_committed") == 120  # the broker gave no LSO
    assert log_end(120, None, "read_committed") == 120
    assert log_end(None, None, "read_committed") is None  # not fetched yet
    assert lag(120, 20) == 100 and lag(5, 5) == 0
    assert lag(5, 7) == 0, "a position past a stale end is no negative lag"


def lag_samples(worker: TransformWorker) -> dict[tuple[str, str], float]:
    return {(s.labels["topic"], s.labels["partition"]): s.value
            for family in worker.metrics.registry.collect() for s in family.samples if s.name == LAG}


async def produce_one_partition(broker: KafkaBroker, prefix: str, records: list[SessionEngagement]) -> None:
    """All on one key, so on one partition, in this order."""
    producer = reliable_producer(broker.bootstrap)
    await producer.start()
    try:
        for record in records:
            await producer.send(topic_name(SESSION_ENGAGEMENT, prefix), encode(record),
                                key=record.partition_key().encode())
        await producer.flush()
    finally:
        await producer.stop()


@asynccontextmanager
async def worker(broker: KafkaBroker, prefix: str) -> AsyncIterator[TransformWorker]:
    settings = TransformSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, transform_partitions=1,
                                 transform_batch_max_records=BATCH, transform_batch_wait_ms=200)
    w = TransformWorker(settings, tenants_config())
    try:
        await w.start()
        yield w
    finally:
        await w.close()


async def first_batch(w: TransformWorker) -> int:
    """Poll until a poll returns records (the first fetch after start may come back empty)."""
    n: int = await wait_for(w.poll_once, within=DEADLINE, what="a poll that returns input records")
    return n


async def until_caught_up(w: TransformWorker, processed: int, total: int) -> list[float]:
    """Poll until every record is processed; the total lag reported after each poll."""
    reported: list[float] = []

    async def caught_up() -> bool:
        nonlocal processed
        if processed >= total and sum(lag_samples(w).values()) == 0:
            return True
        processed += await w.poll_once()
        reported.append(sum(lag_samples(w).values()))
        return False

    await wait_for(caught_up, within=DEADLINE, what=f"all {total} records processed and no lag")
    assert processed == total
    return reported


async def test_lag_counts_unread_records_and_reaches_zero(
    kafka_broker: KafkaBroker, topic_prefix: str, engagement_record: Callable[..., SessionEngagement],
) -> None:
    n = 60
    settings = TransformSettings(kafka_bootstrap=kafka_broker.bootstrap, topic_prefix=topic_prefix,
                                 transform_partitions=1)
    await ensure_transform_topics(settings)
    await produce_one_partition(kafka_broker, topic_prefix,
                                [engagement_record(final=False, plays=i) for i in range(n)])
    async with worker(kafka_broker, topic_prefix) as w:
        assert lag_samples(w) == {}, "no lag is reported before the first fetch"
        processed = await first_batch(w)
        assert 0 < processed <= BATCH
        samples = lag_samples(w)
        behind = {k: v for k, v in samples.items() if v}
        [(topic, _)] = behind  # one partition has all the records
        assert topic == SESSION_ENGAGEMENT.name, "labelled with the catalogue name, without the prefix"
        assert behind.popitem()[1] == n - processed
        reported = await until_caught_up(w, processed, n)
        assert reported[-1] == 0 and reported == sorted(reported, reverse=True)
        assert b'kmsync_transform_consumer_lag_records{partition="' in w.metrics.exposition()

    # Stopped, 25 more records arrive: a new worker resumes from the committed offsets, so its lag
    # is the new records only, not the whole log.
    more = 25
    await produce_one_partition(kafka_broker, topic_prefix,
                                [engagement_record(final=False, plays=100 + i) for i in range(more)])
    async with worker(kafka_broker, topic_prefix) as w:
        processed = await first_batch(w)
        assert sum(lag_samples(w).values()) == more - processed
        assert (await until_caught_up(w, processed, more))[-1] == 0
