"""The lean engine under what a happy path never shows (review findings, session 14): an expiry that stages more
changelog tombstones than librdkafka's queue holds, and a record the broker refuses. Real broker, the engine in
this process."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from pydantic import BaseModel

from kmsync_contracts import SessionEngagement
from kmsync_contracts.topics import MARKETO_OPS, SESSION_ENGAGEMENT, TopicSpec
from kmsync_kafka import ensure_topics, topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform import engine_lean
from kmsync_transform.engine_lean import LeanTransform, RecordRefused
from kmsync_transform.internal_topics import LeanTopics
from kmsync_transform.settings import TransformSettings

from .conftest import EVENT, LEGACY_EVENT, tenants_config
from .test_integration import expected_ops
from .test_quix_engine import INPUTS, produce_at

#: People of the event that expires: more than the producer queue the test gives the engine.
EXPIRING = 1_500
QUEUE = 500


def snapshots(event: int, users: range, when: datetime) -> list[tuple[TopicSpec, BaseModel]]:
    return [(SESSION_ENGAGEMENT, SessionEngagement(
        partner_id=100, virtual_event_id=event, user_id=f"u{i}", email=f"p{i}@example.com", source="pull",
        source_time=when, ingested_at=when, entry_id="0_keynote", is_final=True, plays=1)) for i in users]


def settings_for(broker: KafkaBroker, prefix: str, state: Path) -> TransformSettings:
    return TransformSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, transform_state_dir=state,
                             transform_state_retention_seconds=3600, transform_commit_interval_ms=200)


def run_until(engine: LeanTransform, done: Callable[[], Awaitable[bool]]) -> tuple[bool, BaseException | None]:
    """Run the engine on this thread until ``done()`` (then it is stopped) or until it fails, within 150 s:
    whether ``done()`` came true, and what ``run()`` raised, if anything."""
    ended, reached = threading.Event(), threading.Event()

    async def finished() -> bool:
        if await done():
            reached.set()
            return True
        return ended.is_set()

    def watch() -> None:
        try:
            asyncio.run(wait_for(finished, within=150, what="the engine's work"))
        finally:
            engine.stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    failure: BaseException | None = None
    try:
        engine.run()
    except Exception as exc:  # the outcome under test
        failure = exc
    finally:
        ended.set()
        watcher.join(timeout=30)
    return reached.is_set(), failure


async def op_ids(broker: KafkaBroker, prefix: str) -> list[str]:
    return [json.loads(m.value)["op_id"] for m in await read_to_end(broker.bootstrap, topic_name(MARKETO_OPS, prefix))]


@pytest.mark.kafka
def test_an_expiry_of_more_entries_than_the_producer_queue_holds_is_swept_in_one_checkpoint(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Event A's 1,500 ledger entries expire when event B's snapshot moves the partition's time on: that
    checkpoint's sweep stages 1,500 tombstones, three times the 500 records librdkafka's queue is given here (in
    production 100,000 against a sweep of up to 150,000). The engine serves the queue and commits them; without
    that, produce() raised BufferError and transform exited, again at every restart."""
    monkeypatch.setattr(engine_lean, "PRODUCER_QUEUE_MESSAGES", QUEUE)
    asyncio.run(ensure_topics(kafka_broker.bootstrap, INPUTS, topic_prefix, partitions=1))
    now = datetime.now(UTC)
    event_a = snapshots(EVENT, range(EXPIRING), now)
    event_b = snapshots(LEGACY_EVENT, range(EXPIRING, EXPIRING + 1), now)
    a_ops, b_ops = [op.op_id for op in expected_ops(event_a)], [op.op_id for op in expected_ops(event_b)]
    asyncio.run(produce_at(kafka_broker, topic_prefix, event_a, now - timedelta(hours=10)))
    settings = settings_for(kafka_broker, topic_prefix, tmp_path / "state")
    engine = LeanTransform(settings, tenants_config())
    changelog = LeanTopics.of(settings, polls_partitions=1).changelog_of(topic_name(SESSION_ENGAGEMENT, topic_prefix))
    assert changelog is not None
    b_sent = threading.Event()

    async def swept() -> bool:
        """Event B is produced once A's operations are committed (A's entries then in the store, not staged);
        done when the changelog holds A's tombstones and B's operations are out."""
        ops = set(await op_ids(kafka_broker, topic_prefix))
        if not b_sent.is_set():
            if set(a_ops) <= ops:
                await produce_at(kafka_broker, topic_prefix, event_b, now)
                b_sent.set()
            return False
        tombstones = sum(1 for m in await read_to_end(kafka_broker.bootstrap, changelog) if m.value is None)
        return tombstones >= EXPIRING and set(b_ops) <= ops

    assert run_until(engine, swept) == (True, None)


@pytest.mark.kafka
def test_a_record_the_broker_refuses_stops_the_engine_with_nothing_committed(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
) -> None:
    """marketo.ops.v1 takes batches of at most 512 bytes here, so the broker refuses the engine's operations in
    their delivery reports. librdkafka can still commit a transaction one of whose records it refused
    (docs/reference/streaming.md §3.1): the operation would be lost with its input committed, and nothing said.
    The engine checks every delivery before it sends the offsets: it stops with the reason, its transaction
    aborted, the input uncommitted (a restart meets the same refusal: loud, not lost)."""
    asyncio.run(ensure_topics(kafka_broker.bootstrap, [*INPUTS, MARKETO_OPS], topic_prefix))
    ops_topic = topic_name(MARKETO_OPS, topic_prefix)
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    entry = ConfigEntry("max.message.bytes", "512", incremental_operation=AlterConfigOpType.SET)
    for future in admin.incremental_alter_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, ops_topic, incremental_configs=[entry])]).values():
        future.result(timeout=30)
    now = datetime.now(UTC)
    asyncio.run(produce_at(kafka_broker, topic_prefix, snapshots(EVENT, range(3), now), now))
    settings = settings_for(kafka_broker, topic_prefix, tmp_path / "state")
    engine = LeanTransform(settings, tenants_config())
    async def never() -> bool:
        return False

    _, failure = run_until(engine, never)
    assert isinstance(failure, RecordRefused), failure
    assert ops_topic in str(failure)
    assert asyncio.run(op_ids(kafka_broker, topic_prefix)) == []
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": engine.group_id})
    try:  # the group's committed offsets on the input: none
        committed = consumer.committed([TopicPartition(topic_name(SESSION_ENGAGEMENT, topic_prefix), p)
                                        for p in range(SESSION_ENGAGEMENT.partitions)], timeout=30)
    finally:
        consumer.close()
    assert all(tp.offset < 0 for tp in committed), committed
