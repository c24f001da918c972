"""An ingest killed (SIGKILL) inside a pull page's transaction leaves that transaction open on the broker
until its transaction.timeout.ms (60 s), and read_committed readers of ingest.watermarks.v1 cannot pass it.
The successor's takeover of the coordination partition starts the partition's transactional producer
first: ``init_transactions`` under the same transactional id fences the dead owner and has the broker
abort its open transaction (docs/reference/streaming.md §3.1), and it returns only once the abort is
written, so the watermark load that follows passes at once instead of waiting for the timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from kmsync_config import TenantsConfig, parse_tenants
from kmsync_contracts import AttendanceStatus, AttendeeStatus, IngestWatermark, decode, encode, utc_now
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    INGEST_WATERMARKS,
    SESSION_ENGAGEMENT,
    TopicSpec,
    is_left_open_marker,
)
from kmsync_ingest.kaltura_source import KalturaPullSource, client_for
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.ownership import owner_partition, partition_transactional_id
from kmsync_ingest.publisher import Publisher
from kmsync_ingest.service import IngestService
from kmsync_ingest.settings import IngestSettings
from kmsync_kafka import ensure_topics, topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.hanging import Put, leave_hanging_transaction
from kmsync_testing.ingest import settings_for
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic
from kmsync_testing.waiting import wait_for

PARTITIONS = 3
PARTNER, EVENT = 2_000_001, 50_001
#: Far below the killed transaction's transaction.timeout.ms (60 s): only the fence lets a load pass.
LOAD_TIMEOUT = 5.0

#: The killed ingest: ingest's own Publisher and WatermarkStore under the partition's transactional id.
#: It commits one page's watermark, then writes the next one in a transaction it never ends.
ZOMBIE = textwrap.dedent("""
    import asyncio, sys
    from kmsync_contracts import encode, utc_now
    from kmsync_contracts.topics import INGEST_WATERMARKS
    from kmsync_ingest.metrics import IngestMetrics
    from kmsync_ingest.publisher import Publisher
    from kmsync_ingest.watermarks import WatermarkStore
    from kmsync_kafka.producer import await_delivery

    async def main(bootstrap, prefix, tx_id, partner, event):
        publisher = Publisher(bootstrap, prefix, IngestMetrics(), transactional_id=tx_id)
        await publisher.start()
        store = WatermarkStore(publisher)
        await store.commit(partner, event, "statuses", "", utc_now(), frozenset({"committed"}))
        mark = store.get(partner, event, "statuses").model_copy(update={"seen_ids": ("never-committed",)})
        producer = await publisher._transactional_producer()
        producer.begin_transaction()
        topic = publisher.topic(INGEST_WATERMARKS)
        await await_delivery(await producer.send(topic, encode(mark), mark.partition_key().encode()))
        print("open", flush=True)
        await asyncio.Event().wait()  # killed here, inside the transaction

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
""")


def _tenants(tmp_path: Path) -> TenantsConfig:
    secret = tmp_path / "secret"
    secret.write_text("not-used")
    nowhere = "http://127.0.0.1:1"  # nothing is pulled: pull_enabled is off
    return parse_tenants({
        "marketo_instances": {"main": {"munchkin_id": "123-ABC-456", "endpoint": nowhere, "client_id": "ingest-tests",
                                       "client_secret": {"file": str(secret)}}},
        "kaltura_partners": {PARTNER: {"service_url": nowhere, "user_profile_url": nowhere,
                                       "admin_secret": {"file": str(secret)}}},
        "events": [{"name": "e", "partner_id": PARTNER, "virtual_event_id": EVENT, "app_guid": "g",
                    "marketo_instance": "main", "program_id": 1001, "sessions": []}],
    }, "test tenants")


def _settings(kafka_broker: KafkaBroker, topic_prefix: str) -> tuple[IngestSettings, str]:
    """Settings of a one-replica ingest group, and the transactional id of the event's partition."""
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, ingest_coordination_partitions=PARTITIONS,
                            ingest_handover_timeout_seconds=20, ingest_session_timeout_seconds=6)
    tx_id = partition_transactional_id(settings.transactional_id, topic_prefix,
                                       owner_partition(PARTNER, EVENT, PARTITIONS))
    assert tx_id is not None
    return settings, tx_id


@asynccontextmanager
async def killed_inside_a_transaction(settings: IngestSettings, tx_id: str) -> AsyncIterator[None]:
    """Run the zombie until its transaction is open on the broker, then SIGKILL it (no abort, no close)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ZOMBIE, settings.kafka_bootstrap, settings.topic_prefix, tx_id, str(PARTNER),
        str(EVENT), stdout=asyncio.subprocess.PIPE, env=dict(os.environ),
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.strip() == b"open", "the zombie did not open its transaction"
        process.send_signal(signal.SIGKILL)
        await process.wait()
        stable, end = await _stable_and_log_end(settings.kafka_bootstrap, settings.topic_prefix)
        assert stable < end, "the killed ingest's transaction is not open on the broker"
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()


async def _stable_and_log_end(bootstrap: str, prefix: str, spec: TopicSpec = INGEST_WATERMARKS) -> tuple[int, int]:
    """(last stable offset, log end) of partition 0 of ``spec`` (ingest.watermarks.v1 has one): they
    differ while a transaction is open on it."""
    tp = TopicPartition(topic_name(spec, prefix), 0)
    offsets = []
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation)
        await consumer.start()
        try:
            offsets.append((await consumer.end_offsets([tp]))[tp])
        finally:
            await consumer.stop()
    return offsets[0], offsets[1]


def _successor(settings: IngestSettings, tenants: TenantsConfig) -> IngestService:
    """The real service (its first assignment takes the event's partition over), loading with LOAD_TIMEOUT."""
    service = IngestService(settings, tenants, lambda e: KalturaPullSource(
        client_for(e.partner_id, tenants.kaltura_partners[e.partner_id], settings), settings))
    service.watermarks.load_timeout = LOAD_TIMEOUT
    return service


async def _took_over_the_committed_mark(service: IngestService, prefix: str) -> None:
    await wait_for(lambda: (PARTNER, EVENT) in service.pullers, within=20, what="the takeover of the event's partition")
    mark = service.watermarks.get(PARTNER, EVENT, "statuses")
    assert mark is not None and mark.seen_ids == ("committed",), "not the last committed watermark"
    stable, end = await _stable_and_log_end(service.settings.kafka_bootstrap, prefix)
    assert stable == end, "a transaction of the previous owner is still open after the takeover"


async def test_a_takeover_fences_a_killed_owners_open_transaction_instead_of_waiting_for_its_timeout(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path
) -> None:
    settings, tx_id = _settings(kafka_broker, topic_prefix)
    tenants = _tenants(tmp_path)
    async with killed_inside_a_transaction(settings, tx_id):
        service = _successor(settings, tenants)
        await service.start()
        try:
            await _took_over_the_committed_mark(service, topic_prefix)
        finally:
            await service.stop()


async def test_init_transactions_returns_once_the_previous_holders_transaction_is_aborted(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    # What the takeover's order relies on: the load's end offsets, read after the fence, are past
    # the abort marker (OBSERVED with librdkafka 2.12 against Kafka 4.4).
    settings, tx_id = _settings(kafka_broker, topic_prefix)
    async with killed_inside_a_transaction(settings, tx_id):
        successor = Publisher(kafka_broker.bootstrap, topic_prefix, IngestMetrics(), transactional_id=tx_id)
        await successor.start_transactions()
        try:
            stable, end = await _stable_and_log_end(kafka_broker.bootstrap, topic_prefix)
            assert stable == end, "init_transactions returned before the open transaction was aborted"
        finally:
            await successor.stop()


def _mark(seen: str) -> IngestWatermark:
    return IngestWatermark(partner_id=PARTNER, virtual_event_id=EVENT, stream="statuses", watermark=utc_now(),
                           seen_ids=(seen,), recorded_at=utc_now())



def _status() -> AttendeeStatus:
    now = utc_now()
    return AttendeeStatus(partner_id=PARTNER, virtual_event_id=EVENT, user_id="u-left-open", email="left@example.com",
                          source="pull", source_time=now, ingested_at=now, status=AttendanceStatus("registered"),
                          status_time=now)


async def _leave_a_hanging_transaction(bootstrap: str, prefix: str, tx_id: str) -> AttendeeStatus:
    """Commit a watermark under ``tx_id``, then append a page's records of the id (a status and the
    watermark), transactional, behind its coordinator's back: the partitions hold an open transaction its
    coordinator does not know (the id is at CompleteCommit). A broker crash mid-page left exactly that (OBSERVED, Kafka 4.4, SIGKILL of the
    broker under a pulling ingest: DescribeProducers showed the watermark partition's open transaction of
    producer epoch 0, DescribeTransactions the id at CompleteCommit, then Empty at epoch 2 after the fence,
    and the watermark loads timed out for good). Returns the page's status."""
    committed, hanging, status = _mark("committed"), _mark("never-committed"), _status()
    await leave_hanging_transaction(
        bootstrap, tx_id,
        [Put(topic_name(INGEST_WATERMARKS, prefix), 0, committed.partition_key().encode(), encode(committed))],
        [Put(topic_name(ATTENDEE_STATUS, prefix), 0, status.partition_key().encode(), encode(status)),
         Put(topic_name(INGEST_WATERMARKS, prefix), 0, hanging.partition_key().encode(), encode(hanging))])
    return status


async def _nothing_open(bootstrap: str, prefix: str, spec: TopicSpec = INGEST_WATERMARKS) -> bool:
    stable, end = await _stable_and_log_end(bootstrap, prefix, spec)
    return stable == end


@pytest.mark.kafka
async def test_a_takeover_ends_a_transaction_a_broker_crash_left_open_unknown_to_its_coordinator(
    unverified_broker: KafkaBroker, tmp_path: Path
) -> None:
    # No fence ends such a transaction and no timeout either: the coordinator does not know it. Before
    # end_left_open the takeover's load timed out again and again (the partition stalled for good).
    prefix = "hanging."
    settings, tx_id = _settings(unverified_broker, prefix)
    await ensure_topics(unverified_broker.bootstrap, [INGEST_WATERMARKS, ATTENDEE_STATUS], prefix=prefix)
    status = await _leave_a_hanging_transaction(unverified_broker.bootstrap, prefix, tx_id)
    for spec in (INGEST_WATERMARKS, ATTENDEE_STATUS):
        assert not await _nothing_open(unverified_broker.bootstrap, prefix, spec), "no transaction was left open"
    service = _successor(settings, _tenants(tmp_path))
    await service.start()
    try:
        await _took_over_the_committed_mark(service, prefix)
        # Transform's input too: a status partition it held would stall transform for good.
        assert await _nothing_open(unverified_broker.bootstrap, prefix, ATTENDEE_STATUS)
        # A partition no transaction held gets nothing (no aborted record, no marker).
        assert await _stable_and_log_end(unverified_broker.bootstrap, prefix, SESSION_ENGAGEMENT) == (0, 0)
    finally:
        await service.stop()
    # The watermark's ended aborted: committed, a page its coordinator had aborted would move the pull past
    # records never delivered (the pull reads them again instead).
    marks = [v for _, v in await read_topic(unverified_broker.bootstrap, INGEST_WATERMARKS, prefix)]
    assert [m.seen_ids for m in marks] == [("committed",)]
    # The status's ended committed, so a page its coordinator had committed (the watermark past it) is not lost
    # (session 11's CI lost 6 leads that way); after it, the markers that carried the commit, which readers
    # skip: one per coordination partition taken over while the partition was held (each id's end is its own).
    statuses = await read_to_end(unverified_broker.bootstrap, topic_name(ATTENDEE_STATUS, prefix), markers=True)
    assert [decode(ATTENDEE_STATUS, m.value) for m in statuses[:1]] == [status]
    assert [is_left_open_marker(m.key, m.value) for m in statuses[1:]] == [True] * (len(statuses) - 1)
    assert 1 <= len(statuses) - 1 <= PARTITIONS
