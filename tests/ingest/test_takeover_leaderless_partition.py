"""A takeover of a coordination partition while one partition of a kaltura.* topic has no leader.

The takeover ends what its transactional id left open on ingest's partitions (``Publisher.end_left_open``). It
used to read the offsets of every partition of ingest's topics at once, so a single data partition without a
leader failed it, and it was retried for as long as that partition stayed unreadable: no event of the coordination
partition was pulled meanwhile. Now it leaves such a partition out (WARNING), ends what is held on the others and
goes on. A real broker cluster makes the partition leaderless: the topic's partition is placed on a second broker
of the cluster, which is then stopped (its only replica gone, the controller leaves it without a leader).
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2
from confluent_kafka.admin import AdminClient

from kaltura_sandbox.testing import RunningSandbox, running_sandbox
from kmsync_contracts import AttendanceStatus, AttendeeStatus, IngestWatermark, decode, encode, utc_now
from kmsync_contracts.kaltura_records import kaltura_key
from kmsync_contracts.topics import ATTENDEE_STATUS, INGEST_WATERMARKS, TopicSpec, is_left_open_marker
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.ownership import owner_partition, partition_transactional_id
from kmsync_ingest.publisher import INGEST_TOPICS, KafkaUnavailable, Publisher
from kmsync_ingest.settings import IngestSettings
from kmsync_kafka import ensure_topics, topic_name
from kmsync_testing.hanging import Put, leave_hanging_transaction
from kmsync_testing.ingest import running_ingest, settings_for, tenants_for

# The broker's own start-up pieces, for a second node of the same cluster (start_broker formats a new cluster).
from kmsync_testing.kafka_broker import (
    LOG4J_PROPERTIES,
    KafkaBroker,
    _java,
    _launch,
    _wait_until_ready,
    ensure_jars,
    free_port,
    server_properties,
)
from kmsync_testing.waiting import wait_for

SCENARIO = {"registrants": 2, "sessions": 1, "soft_deleted": 0, "malformed_users": 0}
#: The node id of the broker that holds the partition made leaderless.
SECOND = 2


def _second_node(first: KafkaBroker, work: Path) -> KafkaBroker:
    """A broker-only node ``SECOND`` of ``first``'s cluster (``first`` is its controller), started and serving."""
    work.mkdir(parents=True)
    meta = (first.work_dir / "data" / "meta.properties").read_text()
    found = re.search(r"^cluster\.id=(\S+)$", meta, re.MULTILINE)
    assert found, meta
    port = free_port()
    props = dict(line.split("=", 1) for line in server_properties(work, port, first.controller_port).splitlines()
                 if line)
    props.update({"process.roles": "broker", "node.id": str(SECOND), "listeners": f"PLAINTEXT://127.0.0.1:{port}"})
    (work / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (work / "log4j.properties").write_text(LOG4J_PROPERTIES)
    jars = ensure_jars()
    formatted = subprocess.run(
        [_java(), f"-Dlog4j.configuration=file:{work / 'log4j.properties'}", "-cp", f"{jars}/*",
         "kafka.tools.StorageTool", "format", "-t", found.group(1), "-c", str(work / "server.properties")],
        capture_output=True, text=True, check=False)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    (work / "broker.log").write_bytes(b"")
    broker = KafkaBroker(port, first.controller_port, work, _launch(work, jars, "256m"))
    try:
        _wait_until_ready(broker, 90.0)
    except BaseException:
        broker.stop(timeout=5)
        raise
    return broker


def _leader(bootstrap: str, tp: TopicPartition) -> tuple[int | None, set[int]]:
    """The partition's leader (-1: none; None: not in the metadata yet) and the brokers the metadata lists."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=tp.topic, timeout=10)
    partition = metadata.topics[tp.topic].partitions.get(tp.partition)
    return (None if partition is None else partition.leader), set(metadata.brokers)


def _led_as(bootstrap: str, tp: TopicPartition, leader: int, brokers: set[int]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await asyncio.to_thread(_leader, bootstrap, tp) == (leader, brokers)

    return check


@asynccontextmanager
async def without_a_leader(first: KafkaBroker, work: Path, spec: TopicSpec, prefix: str,
                           partition: int) -> AsyncIterator[TopicPartition]:
    """``spec``'s topic created with ``partition`` on a second broker and the others on ``first``; the second
    broker then stopped (a controlled shutdown): the partition has no leader, the rest of the cluster serves on."""
    second = await asyncio.to_thread(_second_node, first, work)
    tp = TopicPartition(topic_name(spec, prefix), partition)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=first.bootstrap)
        await admin.start()
        try:
            placed = {p: [SECOND if p == partition else 1] for p in range(spec.partitions)}
            await admin.create_topics([NewTopic(tp.topic, -1, -1, placed, spec.config())])
        finally:
            await admin.close()
        await wait_for(_led_as(first.bootstrap, tp, SECOND, {1, SECOND}), within=30,
                       what="the partition led by the second broker")
    finally:
        await asyncio.to_thread(second.stop)
    # Only the first broker listed: nothing created from now on is placed on the second one.
    await wait_for(_led_as(first.bootstrap, tp, -1, {1}), within=60, what=f"{tp} without a leader")
    yield tp


def _partition_of(key: str, partitions: int) -> int:
    """The partition ingest's producer gives a key (murmur2, as aiokafka and Java: kmsync_kafka.partitioning)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _free_partitions(sb: RunningSandbox) -> list[int]:
    """The partitions of the status topic no status of the sandbox's event goes to."""
    used = {_partition_of(kaltura_key(sb.partner_id, sb.virtual_event_id, a["user_id"]), ATTENDEE_STATUS.partitions)
            for a in sb.truth()["attendees"]}
    return [p for p in range(ATTENDEE_STATUS.partitions) if p not in used]


async def _read_committed(bootstrap: str, tps: Sequence[TopicPartition]) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of ``tps`` (partitions that can be read: kmsync_kafka.reading reads whole topics)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    try:
        consumer.assign(list(tps))
        ends = await consumer.end_offsets(list(tps))
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records += batch
        return records
    finally:
        await consumer.stop()


def _transactional_id(settings: IngestSettings, sb: RunningSandbox) -> str:
    partition = owner_partition(sb.partner_id, sb.virtual_event_id, settings.ingest_coordination_partitions)
    tx_id = partition_transactional_id(settings.transactional_id, settings.topic_prefix, partition)
    assert tx_id is not None
    return tx_id


async def _leave_open(bootstrap: str, tx_id: str, held: TopicPartition) -> AttendeeStatus:
    """A status of a page left open under ``tx_id`` on ``held``, unknown to its coordinator (what a broker crash
    mid-page leaves: kmsync_testing.hanging). What it commits first is another event's watermark (the sandbox
    event's pull must not move)."""
    now = utc_now()
    other = IngestWatermark(partner_id=1, virtual_event_id=1, stream="statuses", watermark=now, seen_ids=(),
                            recorded_at=now)
    status = AttendeeStatus(partner_id=1, virtual_event_id=1, user_id="u-left-open", email="left@example.com",
                            source="pull", source_time=now, ingested_at=now,
                            status=AttendanceStatus("registered"), status_time=now)
    prefix = held.topic.removesuffix(ATTENDEE_STATUS.name)
    await leave_hanging_transaction(
        bootstrap, tx_id,
        [Put(topic_name(INGEST_WATERMARKS, prefix), 0, other.partition_key().encode(), encode(other))],
        [Put(held.topic, held.partition, status.partition_key().encode(), encode(status))])
    return status


@pytest.mark.kafka
async def test_a_takeover_leaves_out_a_data_partition_without_a_leader_and_the_pull_goes_on(
    unverified_broker: KafkaBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = "leaderless."
    async with running_sandbox(SCENARIO, seed=3) as sb:
        sb.advance_to_end()
        unreadable, left_open = _free_partitions(sb)[:2]  # the event's statuses go to neither
        async with without_a_leader(unverified_broker, tmp_path / "second", ATTENDEE_STATUS, prefix,
                                    unreadable) as gone:
            await ensure_topics(unverified_broker.bootstrap, INGEST_TOPICS, prefix=prefix)
            settings = settings_for(unverified_broker.bootstrap, prefix, sb, kafka_ack_timeout_seconds=5)
            held = TopicPartition(gone.topic, left_open)
            status = await _leave_open(unverified_broker.bootstrap, _transactional_id(settings, sb), held)
            with caplog.at_level(logging.WARNING, logger="kmsync_ingest.publisher"):
                async with running_ingest(settings, tenants_for(sb, tmp_path / "secrets", with_sessions=False),
                                          sb) as ingest:
                    # Before: the takeover failed on the unreadable partition and was retried for good.
                    await wait_for(lambda: (sb.partner_id, sb.virtual_event_id) in ingest.service.pullers,
                                   within=60, what="the takeover of the event's coordination partition")
                    pulled = await ingest.service.pull_everything()
            readable = [TopicPartition(gone.topic, p) for p in range(ATTENDEE_STATUS.partitions) if p != unreadable]
            records = await _read_committed(unverified_broker.bootstrap, readable)
        truth = sb.truth()
    # The unreadable partition is named; what was left open on a readable one is ended, committed (a marker after).
    assert any(f"{gone.topic}[{unreadable}]" in r.getMessage() and "left out" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    on_held = [r for r in records if r.partition == left_open]
    assert [decode(ATTENDEE_STATUS, r.value) for r in on_held[:1]] == [status]
    assert on_held[1:] and all(is_left_open_marker(r.key, r.value) for r in on_held[1:])
    # The pull went on: every status of the event delivered.
    delivered = {s.user_id for r in records if not is_left_open_marker(r.key, r.value)
                 and (s := decode(ATTENDEE_STATUS, r.value)).virtual_event_id == sb.virtual_event_id}
    assert sum(p.produced for p in pulled) >= len(delivered) > 0
    assert delivered == {a["user_id"] for a in truth["attendees"] if not a["deleted"]}


@pytest.mark.kafka
async def test_a_takeover_still_fails_while_the_watermark_partition_has_no_leader(
    unverified_broker: KafkaBroker, tmp_path: Path
) -> None:
    # The watermark load cannot read ingest.watermarks.v1 without its leader: the takeover fails (and is retried)
    # rather than going on without the partition's watermarks.
    prefix = "leaderless."
    async with without_a_leader(unverified_broker, tmp_path / "second", INGEST_WATERMARKS, prefix, 0):
        await ensure_topics(unverified_broker.bootstrap, INGEST_TOPICS, prefix=prefix)
        publisher = Publisher(unverified_broker.bootstrap, prefix, IngestMetrics(), ack_timeout_seconds=2,
                              transactional_id="leaderless-watermarks")
        await publisher.start_transactions()
        try:
            with pytest.raises(KafkaUnavailable, match="watermark partition"):
                await publisher.end_left_open()
        finally:
            await publisher.stop()
