"""The launcher gives tests a real broker that round-trips records with the catalogue's settings."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from kmsync_contracts import AttendanceStatus, AttendeeStatus, decode, encode, utc_now
from kmsync_contracts.topics import ATTENDEE_STATUS, INGEST_WATERMARKS, LEFT_OPEN_MARKER_KEY
from kmsync_kafka import ensure_topics, manual_commit_consumer, reliable_producer
from kmsync_testing.kafka_broker import BrokerError, KafkaBroker, server_properties, start_broker


async def test_produce_and_consume_a_contract_record(kafka_broker: KafkaBroker, topic_prefix: str) -> None:
    [topic] = await ensure_topics(kafka_broker.bootstrap, [ATTENDEE_STATUS], prefix=topic_prefix)
    now = utc_now()
    record = AttendeeStatus(
        partner_id=1, virtual_event_id=2, user_id="u1", email="A@Example.com", source="pull",
        source_time=now, ingested_at=now, status=AttendanceStatus.ATTENDED, status_time=now,
    )
    producer = reliable_producer(kafka_broker.bootstrap)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, encode(record), key=record.partition_key().encode())
    finally:
        await producer.stop()
    consumer = manual_commit_consumer(kafka_broker.bootstrap, f"{topic_prefix}g", topic)
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert (msg.partition, msg.offset) == (meta.partition, meta.offset)
    assert msg.key == b"1:2:u1"
    assert decode(ATTENDEE_STATUS, msg.value) == record


async def test_topics_get_the_catalogue_partitions_and_cleanup(kafka_broker: KafkaBroker, topic_prefix: str) -> None:
    names = await ensure_topics(kafka_broker.bootstrap, [ATTENDEE_STATUS, INGEST_WATERMARKS], prefix=topic_prefix)
    assert await ensure_topics(kafka_broker.bootstrap, [ATTENDEE_STATUS], prefix=topic_prefix) == names[:1]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        partitions = {t["topic"]: len(t["partitions"]) for t in described}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, names[1])]
        )
    finally:
        await admin.close()
    assert partitions == {names[0]: ATTENDEE_STATUS.partitions, names[1]: INGEST_WATERMARKS.partitions}
    entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
    assert entries["cleanup.policy"] == "compact"


def test_a_dead_jvm_fails_fast_with_the_broker_log(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    work = Path(str(tmp_path))
    # An unparseable listener makes the JVM exit during start-up: the launcher must report it.
    original = server_properties

    def broken(*args: object, **kwargs: object) -> str:
        return original(*args, **kwargs).replace("listeners=PLAINTEXT", "listeners=NOPE")  # type: ignore[arg-type]

    import kmsync_testing.kafka_broker as launcher

    launcher.server_properties = broken  # type: ignore[assignment]
    try:
        with pytest.raises(BrokerError) as err:
            start_broker(work, startup_timeout=60)
    finally:
        launcher.server_properties = original
    assert "exited" in str(err.value) or "formatting" in str(err.value)


def test_leftover_data_from_an_earlier_run_does_not_break_a_new_broker(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    work = Path(str(tmp_path))
    first = start_broker(work)
    first.kill()  # a crash leaves formatted storage with another cluster id behind
    second = start_broker(work)
    try:
        assert second.is_running()
        assert second.port != first.port or second.controller_port != first.controller_port
    finally:
        second.stop()
    assert not second.is_running()


def test_cluster_ids_never_look_like_options() -> None:
    from kmsync_testing.kafka_broker import new_cluster_id

    ids = {new_cluster_id() for _ in range(3000)}  # ~47 would start with '-' without the guard
    assert len(ids) == 3000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_a_crashed_broker_restarts_on_the_same_ports_and_keeps_its_records(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    from kmsync_testing.kafka_broker import restart_broker

    broker = start_broker(Path(str(tmp_path)))
    try:
        async def produce() -> None:
            [topic] = await ensure_topics(broker.bootstrap, [INGEST_WATERMARKS], prefix="r.")
            producer = reliable_producer(broker.bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"kept", key=b"k")
            finally:
                await producer.stop()

        async def consume() -> bytes | None:
            consumer = manual_commit_consumer(broker.bootstrap, "r.g", f"r.{INGEST_WATERMARKS.name}")
            await consumer.start()
            try:
                msg = await asyncio.wait_for(consumer.getone(), timeout=60)
            finally:
                await consumer.stop()
            return msg.value

        asyncio.run(produce())
        ports, old_pid = (broker.port, broker.controller_port), broker.process.pid
        restart_broker(broker)  # SIGKILL, then the same storage and ports
        assert broker.is_running() and broker.process.pid != old_pid
        assert (broker.port, broker.controller_port) == ports
        assert asyncio.run(consume()) == b"kept"
    finally:
        broker.stop()


async def test_read_to_end_reads_every_committed_record_of_a_topic_a_fresh_consumer_never_saw(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    from kmsync_kafka.reading import read_to_end

    [topic] = await ensure_topics(kafka_broker.bootstrap, [ATTENDEE_STATUS], prefix=topic_prefix)
    producer = reliable_producer(kafka_broker.bootstrap)
    await producer.start()
    try:
        for n in range(12):
            await producer.send_and_wait(topic, f"v{n}".encode(), key=f"k{n}".encode())
    finally:
        await producer.stop()
    records = await read_to_end(kafka_broker.bootstrap, topic)
    assert sorted(r.value for r in records if r.value) == sorted(f"v{n}".encode() for n in range(12))
    assert await read_to_end(kafka_broker.bootstrap, f"{topic_prefix}no-such-topic") == []


async def test_read_to_end_and_scan_leave_out_the_left_open_markers_unless_asked(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    """The one place that skips the records ingest commits to end a transaction a broker crash left open
    (``LEFT_OPEN_MARKER_KEY``, no value): trace, the dead-letter census, dlq replay and the tests' read_topic read
    kaltura.* and the dead-letter topics through it. A record with the marker's key and a value, or a value-less
    record with another key, is data."""
    from kmsync_kafka.reading import read_to_end, scan

    [topic] = await ensure_topics(kafka_broker.bootstrap, [ATTENDEE_STATUS], prefix=topic_prefix)
    producer = reliable_producer(kafka_broker.bootstrap)
    await producer.start()
    try:
        for value, key in [(b"v0", b"k"), (None, LEFT_OPEN_MARKER_KEY), (b"v1", LEFT_OPEN_MARKER_KEY), (None, b"k")]:
            await producer.send_and_wait(topic, value, key=key, partition=0)
    finally:
        await producer.stop()
    data = [(b"k", b"v0"), (LEFT_OPEN_MARKER_KEY, b"v1"), (b"k", None)]
    assert [(r.key, r.value) for r in await read_to_end(kafka_broker.bootstrap, topic)] == data
    assert [(r.key, r.value) for r in await scan(kafka_broker.bootstrap, topic, keep=lambda m: True)] == data
    kept = await read_to_end(kafka_broker.bootstrap, topic, markers=True)
    assert [(r.key, r.value) for r in kept] == [data[0], (LEFT_OPEN_MARKER_KEY, None), *data[1:]]


async def test_scan_starts_at_a_time_keeps_only_what_it_is_asked_for_and_reports_progress(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    """kmsync trace reads topics bounded by time (--since) without holding what it does not want."""
    from kmsync_kafka.reading import scan

    [topic] = await ensure_topics(kafka_broker.bootstrap, [ATTENDEE_STATUS], prefix=topic_prefix)
    base_ms = 1_780_000_000_000
    producer = reliable_producer(kafka_broker.bootstrap)
    await producer.start()
    try:
        for n in range(12):  # one key, so one partition, in time order: v0 at base, v11 at base + 11 s
            await producer.send_and_wait(topic, f"v{n}".encode(), key=b"k", timestamp_ms=base_ms + n * 1000)
    finally:
        await producer.stop()
    seen: list[tuple[int, int]] = []
    records = await scan(kafka_broker.bootstrap, topic, since_ms=base_ms + 6000,
                         keep=lambda m: m.value is not None and int(m.value[1:]) % 2 == 0,
                         progress=lambda done, total: seen.append((done, total)))
    assert [r.value for r in records] == [b"v6", b"v8", b"v10"]
    assert seen and seen[-1] == (6, 6), "read 6 records (v6..v11), told so"
    assert await scan(kafka_broker.bootstrap, topic, since_ms=base_ms + 60_000) == []
