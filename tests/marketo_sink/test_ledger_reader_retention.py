"""The activity ledger's catch-up after marketo.results.v1's retention deleted its position (a real broker).

A sink replica reads the results topic at start and again at every assignment, from where its last
catch-up stopped. A replica that saw no rebalance for longer than the topic's retention finds that
position deleted; the catch-up must then read from the oldest record kept, not jump to the end
(aiokafka's default reset), or every custom activity written in between is unknown to it, and an
activity its previous owner wrote would be sent again (insert-only, docs/reference/marketo-api.md §7.1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import TopicPartition

from kmsync_contracts import RecordOutcome, encode
from kmsync_contracts.topics import MARKETO_RESULTS
from kmsync_kafka.clients import ensure_topics, reliable_producer, topic_name
from kmsync_sink.ledger_reader import LedgerReader
from kmsync_sink.memory import ActivityWrites

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _written(op_id: str) -> bytes:
    return encode(RecordOutcome(op_id=op_id, munchkin_id="111-AAA-111", kind="custom_activity", status="created",
                                source_time=T0, decided_at=T0))


async def test_a_position_deleted_by_retention_is_read_from_the_oldest_record_kept(
        kafka_broker: Any, topic_prefix: str) -> None:
    await ensure_topics(kafka_broker.bootstrap, (MARKETO_RESULTS,), topic_prefix)
    topic = topic_name(MARKETO_RESULTS, topic_prefix)
    producer = reliable_producer(kafka_broker.bootstrap)
    await producer.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    ledger = ActivityWrites()
    # Read from the start (no lookback), the way a catch-up reads what it has not seen yet.
    reader = LedgerReader(kafka_broker.bootstrap, topic, ledger, lookback_hours=24 * 365)
    try:
        tp = TopicPartition(topic, 0)
        for i in range(3):
            await producer.send_and_wait(topic, _written(f"early-{i}"), partition=0)
        await reader.start()
        await reader.catch_up()
        assert all(f"early-{i}" in ledger for i in range(3))
        for i in range(5):
            await producer.send_and_wait(topic, _written(f"later-{i}"), partition=0)
        # Retention removes the oldest segments: the reader's position (3) and the next two are gone.
        await admin.delete_records({tp: RecordsToDelete(before_offset=5)})
        await reader.catch_up()
        kept = [f"later-{i}" for i in range(2, 5)]
        assert all(op in ledger for op in kept), "read from the oldest record kept, not from the end"
    finally:
        await reader.stop()
        await admin.close()
        await producer.stop()
