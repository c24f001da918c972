"""A pull page and its watermark are one Kafka transaction: a failed page leaves nothing visible to
read_committed consumers (so a retry cannot duplicate it), and the next page commits normally."""

from __future__ import annotations

from ingest.metrics import IngestMetrics
from ingest.publisher import KafkaUnavailable, Publisher, outgoing_letters
from ingest.testing import read_topic
from ingest.watermarks import WatermarkStore
from kmsync_contracts import DeadLetter, utc_now
from kmsync_contracts.topics import INGEST_DLQ, INGEST_WATERMARKS
from kmsync_kafka import KafkaBroker


def letter(n: int, size: int = 10) -> DeadLetter:
    return DeadLetter(stage="ingest", reason_code="bad_row", reason=f"row {n}", source_key=f"k{n}",
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
