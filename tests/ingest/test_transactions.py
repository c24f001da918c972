"""A pull page and its watermark are one Kafka transaction: a failed page leaves nothing visible to
read_committed consumers (so a retry cannot duplicate it), and the next page commits normally."""

from __future__ import annotations

from kmsync_contracts import DeadLetter, utc_now
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import INGEST_DLQ, INGEST_WATERMARKS
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.publisher import KafkaUnavailable, Publisher, outgoing_letters
from kmsync_ingest.watermarks import WatermarkStore
from kmsync_kafka import topic_name
from kmsync_kafka.producer import await_delivery
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic


def letter(n: int, size: int = 10) -> DeadLetter:
    return DeadLetter(stage="ingest", reason_code=ReasonCode.BAD_ROW.value, reason=f"row {n}", source_key=f"k{n}",
                      payload="x" * size, failed_at=utc_now())


async def test_a_failed_transaction_is_invisible_and_the_next_one_commits(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    publisher = Publisher(kafka_broker.bootstrap, topic_prefix, IngestMetrics(), ack_timeout_seconds=10,
                          transactional_id=f"tx-test/{topic_prefix}")
    await publisher.start()
    store = WatermarkStore(publisher)
    try:
        # Two good dead letters, then one the broker cannot take: the whole transaction aborts.
        items = outgoing_letters([letter(1), letter(2), letter(3, size=2_000_000)])
        try:
            await publisher.send_atomically(items)
        except KafkaUnavailable:
            pass
        else:
            raise AssertionError("an oversized record must fail its transaction")
        assert await read_topic(kafka_broker.bootstrap, INGEST_DLQ, topic_prefix) == []

        await store.commit(1, 2, "statuses", "", utc_now(), frozenset({"a"}), letters=[letter(4)])
    finally:
        await publisher.stop()
    dlq = [v for _, v in await read_topic(kafka_broker.bootstrap, INGEST_DLQ, topic_prefix)]
    marks = [v for _, v in await read_topic(kafka_broker.bootstrap, INGEST_WATERMARKS, topic_prefix)]
    assert [d.reason for d in dlq] == ["row 4"]
    assert [(m.stream, m.seen_ids) for m in marks] == [("statuses", ("a",))]


async def test_a_restart_sees_marks_committed_after_a_killed_ingests_open_transaction(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    # A killed ingest leaves its transaction open; read_committed readers stop at its start until
    # it is aborted. The restarted ingest fences it before loading, so marks committed after it
    # (by the same ingest, before the kill) are loaded, not silently missed.
    from aiokafka import AIOKafkaProducer

    from kmsync_contracts import IngestWatermark, encode
    from kmsync_kafka import topic_name

    tx_id = f"tx-test/{topic_prefix}"
    first = Publisher(kafka_broker.bootstrap, topic_prefix, IngestMetrics(), ack_timeout_seconds=10)
    await first.start()
    zombie = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, transactional_id=tx_id,
                              enable_idempotence=True, acks="all")
    topic = topic_name(INGEST_WATERMARKS, topic_prefix)
    try:
        try:
            await zombie.start()
            await zombie.begin_transaction()
            stale = IngestWatermark(partner_id=1, virtual_event_id=2, stream="statuses", watermark=utc_now(),
                                    seen_ids=("never-committed",), recorded_at=utc_now())
            await (await zombie.send(topic, encode(stale), key=stale.partition_key().encode()))
            await WatermarkStore(first).commit(1, 2, "engagement", "window:e1", utc_now(), frozenset())
        finally:
            await first.stop()
        # ... the process dies here: the zombie's transaction is never ended.
        restarted = Publisher(kafka_broker.bootstrap, topic_prefix, IngestMetrics(), ack_timeout_seconds=10,
                              transactional_id=tx_id)
        await restarted.start()
        try:
            store = WatermarkStore(restarted, load_timeout_seconds=20)
            await store.load()
            assert store.get(1, 2, "engagement", "window:e1") is not None
            assert store.get(1, 2, "statuses") is None  # the aborted transaction's mark is not visible
        finally:
            await restarted.stop()
    finally:
        # Only now, after the restart fenced it (aiokafka's stop ends no transaction). A client not stopped (only its
        # connections closed) is an ERROR "Unclosed AIOKafkaProducer" whenever the garbage collector finalises it.
        await zombie.stop()


async def test_a_load_waits_for_another_partitions_open_transaction_instead_of_missing_marks_behind_it(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    # Replicas share ingest.watermarks.v1 (one transactional id per coordination partition). A mark
    # committed after another replica's transaction began sits behind that transaction's first
    # offset: a load that stopped at the last stable offset would miss it and resume from an older
    # watermark (pages twice). The load reads to the log's end, so it waits for the transaction.
    from kmsync_ingest.publisher import KafkaUnavailable as Unavailable

    other = Publisher(kafka_broker.bootstrap, topic_prefix, IngestMetrics(), ack_timeout_seconds=10,
                      transactional_id=f"tx-test/{topic_prefix}/p1")
    mine = Publisher(kafka_broker.bootstrap, topic_prefix, IngestMetrics(), ack_timeout_seconds=10,
                     transactional_id=f"tx-test/{topic_prefix}/p0")
    await other.start()
    await mine.start()
    try:
        producer = await other._transactional_producer()
        producer.begin_transaction()
        await await_delivery(await producer.send(topic_name(INGEST_WATERMARKS, topic_prefix), b"{}", b"9:9:statuses:"))
        await WatermarkStore(mine).commit(1, 2, "statuses", "", utc_now(), frozenset({"behind"}))

        waiting = WatermarkStore(mine, load_timeout_seconds=3)
        try:
            await waiting.load(keep=lambda pid, vid: (pid, vid) == (1, 2))
        except Unavailable:
            pass  # it waited for the open transaction rather than returning without the mark
        else:
            assert waiting.get(1, 2, "statuses") is not None, "the load returned without the mark behind"
            raise AssertionError("the load cannot have passed an open transaction")
        await producer.abort_transaction(10)
        store = WatermarkStore(mine, load_timeout_seconds=20)
        await store.load(keep=lambda pid, vid: (pid, vid) == (1, 2))
        mark = store.get(1, 2, "statuses")
        assert mark is not None and mark.seen_ids == ("behind",)
    finally:
        await mine.stop()
        await other.stop()
