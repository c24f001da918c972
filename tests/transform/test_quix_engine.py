"""`kmsync transform` on the exactly-once engines (quix, and lean: the same guarantees on a confluent-kafka loop)
against the real broker: replicas share the partitions and a replica killed with SIGKILL mid-stream is taken over
with every operation committed exactly once; an ended event's state expires after the retention; the marker ingest
commits to end a left-open transaction is skipped."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import BaseModel

from kmsync_common.metrics_text import sample_sum
from kmsync_contracts import AttendeeStatus, CustomActivity, PollResponse, SessionEngagement, encode
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    LEFT_OPEN_MARKER_KEY,
    MARKETO_OPS,
    POLL_RESPONSES,
    SESSION_ENGAGEMENT,
    TRANSFORM_DECISIONS,
    TRANSFORM_DLQ,
    TopicSpec,
)
from kmsync_kafka import ensure_topics, reliable_producer, topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.app import all_partitions

from .conftest import LEGACY_EVENT
from .test_integration import EXACTLY_ONCE_ENGINES, expected_ops, transform_process

INPUTS = (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES)
DEADLINE = 150.0  # a generous bound: group joins, topic creation and recovery on a loaded 2-core CI machine


async def produce_at(broker: KafkaBroker, prefix: str, items: list[tuple[TopicSpec, BaseModel]],
                     timestamp: datetime | None = None) -> None:
    """Produce with the records' Kafka timestamps set to `timestamp` (now when None)."""
    producer = reliable_producer(broker.bootstrap)
    await producer.start()
    try:
        ts = int(timestamp.timestamp() * 1000) if timestamp else None
        for spec, record in items:
            await producer.send(topic_name(spec, prefix), encode(record),
                                key=record.partition_key().encode(), timestamp_ms=ts)  # type: ignore[attr-defined]
        await producer.flush()
    finally:
        await producer.stop()


async def committed_op_ids(broker: KafkaBroker, prefix: str) -> list[str]:
    """Every op id of marketo.ops.v1 a read_committed reader sees, in order, up to the log end."""
    return [json.loads(m.value)["op_id"] for m in await read_to_end(broker.bootstrap, topic_name(MARKETO_OPS, prefix))]


async def wait_for_ops(broker: KafkaBroker, prefix: str, done: Callable[[list[str]], bool], what: str,
                       logs: Path) -> list[str]:
    async def ids_when_done() -> list[str] | None:
        ids = await committed_op_ids(broker, prefix)
        return ids if done(ids) else None

    found: list[str] = await wait_for(ids_when_done, within=DEADLINE, what=f"{what} (logs in {logs})")
    return found


async def group_caught_up(broker: KafkaBroker, prefix: str) -> bool:
    """True when transform's group has committed every input record and every repartitioned poll.

    Read from the committed offsets read_committed up to the high watermark: a transactional writer's
    commit marker takes an offset, and a position passes an open transaction only once it ends."""
    group = f"{prefix}kmsync-transform"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                              enable_auto_commit=False)
    await admin.start()
    await reader.start()
    try:
        internal = [t for t in await reader.topics() if t.startswith(f"repartition__{group}")]
        tps = await all_partitions(reader, [topic_name(s, prefix) for s in INPUTS] + internal)
        committed = await admin.list_consumer_group_offsets(group)
        reader.assign(tps)
        for tp in tps:
            reader.seek(tp, committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
        highs = await high_watermarks(broker, tps)
        for _ in range(10):
            pending = [tp for tp in tps if await reader.position(tp) < highs[tp]]
            if not pending:
                return True
            if any(await reader.getmany(*pending, timeout_ms=100)):
                return False
        return False
    finally:
        await reader.stop()
        await admin.close()


#: What a group's coordinator answers while it is loading or moving: ask again.
COORDINATOR_NOT_READY = (KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
                         KafkaError.NOT_COORDINATOR)


async def replicas_holding_partitions(broker: KafkaBroker, prefix: str) -> int:
    """How many members of transform's group hold partitions, once the group is stable (0 while it rebalances)."""
    group = f"{prefix}kmsync-transform"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # alive until its future resolves
    try:
        found = await asyncio.to_thread(admin.describe_consumer_groups([group])[group].result, 30)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        if error.retriable() or error.code() in COORDINATOR_NOT_READY:
            return 0
        raise
    if found.state != ConsumerGroupState.STABLE:
        return 0
    return sum(1 for m in found.members if m.assignment.topic_partitions)


async def high_watermarks(broker: KafkaBroker, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    probe = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_uncommitted")
    await probe.start()
    try:
        return await probe.end_offsets(tps)
    finally:
        await probe.stop()


async def records_in(port: int) -> float:
    """kmsync_transform_records_in_total summed over its labels, from the replica's /metrics (0 while
    the process is not serving yet)."""
    try:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.ConnectError:
        return 0.0
    return sample_sum(text, "kmsync_transform_records_in_total")


@pytest.mark.parametrize("engine", EXACTLY_ONCE_ENGINES)
async def test_two_replicas_share_the_partitions_and_a_sigkilled_one_is_taken_over_exactly_once(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
    status_record: Callable[..., AttendeeStatus], engagement_record: Callable[..., SessionEngagement],
    poll_record: Callable[..., PollResponse], engine: str,
) -> None:
    await ensure_topics(kafka_broker.bootstrap, [*INPUTS, MARKETO_OPS, TRANSFORM_DLQ], topic_prefix)
    people = [(f"u{i}", f"person{i}@x.io") for i in range(400)]
    items: list[tuple[TopicSpec, BaseModel]] = []
    for n, (user, email) in enumerate(people):
        items += [
            (ATTENDEE_STATUS, status_record("registered", user=user, email=email)),
            (SESSION_ENGAGEMENT, engagement_record(user=user, email=email, final=True, plays=1)),
            # one poll per session: slots follow the order polls are first seen
            (POLL_RESPONSES, poll_record("p1", answer=f"a{n}", user=user, email=email)),
            (ATTENDEE_STATUS, status_record("attended", user=user, email=email, minutes=5)),
            # lower than Attended: no operation, one forward_only_skip decision (transform.decisions.v1)
            (ATTENDEE_STATUS, status_record("confirmed", user=user, email=email, minutes=6)),
        ]
    expected = expected_ops(list(items))
    want = [op.op_id for op in expected]
    assert len(want) == len(set(want))
    # A long checkpoint interval: plenty is produced but not yet committed when the kill comes.
    env = {"KMSYNC_TRANSFORM_ENGINE": engine, "KMSYNC_TRANSFORM_COMMIT_INTERVAL_MS": "1500",
           "KMSYNC_TRANSFORM_SESSION_TIMEOUT_MS": "6000", "KMSYNC_TRANSFORM_TRANSACTION_TIMEOUT_MS": "5000"}
    with transform_process(kafka_broker, topic_prefix, tmp_path, "a", **env) as a, \
            transform_process(kafka_broker, topic_prefix, tmp_path, "b", **env) as b:
        # Both in the group first: the lean engine did the first half before the second replica had joined, and a
        # kill then (the join waiting for the killed member's session) left nothing shared.
        async def sharing() -> bool:
            return await replicas_holding_partitions(kafka_broker, topic_prefix) == 2

        await wait_for(sharing, within=DEADLINE, what=f"both replicas to hold partitions (logs in {tmp_path})")
        await produce_at(kafka_broker, topic_prefix, items[: len(items) // 2])
        # The replicas work on the first half; the one that has done more is killed mid-stream.
        # (In full make test runs one replica sometimes processed nothing for minutes although it
        # had partitions: an open finding of issue #14, see the closing note; this test keeps the
        # exactly-once take-over check whichever replica does the work.)
        async def some_work() -> bool:
            return await records_in(a.port) > 0 or await records_in(b.port) > 0

        await wait_for(some_work, within=DEADLINE, what=f"a replica to process records (logs in {tmp_path})")
        await produce_at(kafka_broker, topic_prefix, items[len(items) // 2:])
        if await records_in(b.port) > await records_in(a.port):
            a, b = b, a  # `a` is the victim from here on
        at_kill = await records_in(a.port)
        a.proc.send_signal(signal.SIGKILL)
        assert a.proc.wait(timeout=30) == -signal.SIGKILL
        ids = await wait_for_ops(kafka_broker, topic_prefix, lambda got: set(want) <= set(got),
                                 "every operation after the kill", tmp_path)
        await wait_for(lambda: group_caught_up(kafka_broker, topic_prefix), within=DEADLINE,
                       what=f"the group to catch up (logs in {tmp_path})")
        ids = await committed_op_ids(kafka_broker, topic_prefix)
        decisions = await read_to_end(kafka_broker.bootstrap, topic_name(TRANSFORM_DECISIONS, topic_prefix))
        survivor = await records_in(b.port)
    assert 0 < at_kill < len(items), "the kill came before or after the replica's work"
    assert survivor > len(items) - at_kill - 1, "the survivor did not take over the killed replica's partitions"
    repeated = {op_id: n for op_id, n in Counter(ids).items() if n > 1}
    assert not repeated, f"{len(repeated)} op ids committed more than once, e.g. {list(repeated)[:3]}"
    assert sorted(ids) == sorted(want)  # nothing lost, nothing unexpected
    # the decisions are in the same transactions as the operations: each person's skip exactly once,
    # and no decision (of any kind) about one input record twice
    found = [json.loads(m.value) for m in decisions]
    skipped = Counter(d["user_id"] for d in found if d["decision"] == "forward_only_skip")
    assert skipped == Counter(user for user, _ in people), \
        f"skips lost or repeated: {len(skipped)} people, max {max(skipped.values(), default=0)} each"
    twice = [k for k, n in Counter((d["decision"], d["source_topic"], d["source_partition"], d["source_offset"])
                                   for d in found).items() if n > 1]
    assert not twice, f"{len(twice)} decisions committed more than once, e.g. {twice[:3]}"
    activities = [op for op in expected if isinstance(op, CustomActivity)]
    assert len(activities) == len(people)


@pytest.mark.parametrize("engine", EXACTLY_ONCE_ENGINES)
async def test_an_ended_events_state_expires_after_the_retention(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
    status_record: Callable[..., AttendeeStatus], engagement_record: Callable[..., SessionEngagement], engine: str,
) -> None:
    """Event A's records are 10 hours old, the retention is 1 hour: once event B's records move the
    partition's time on, A's activity ledger and member statuses are gone, so a replay of A's final
    snapshot and status counts as new (with the retention they would be a ledger hit and a repeat)."""
    # One partition per input topic: A's and B's records share the partition whose time expires state.
    await ensure_topics(kafka_broker.bootstrap, INPUTS, topic_prefix, partitions=1)
    await ensure_topics(kafka_broker.bootstrap, [MARKETO_OPS, TRANSFORM_DLQ], topic_prefix)
    now = datetime.now(UTC)
    event_a: list[tuple[TopicSpec, BaseModel]] = [
        (ATTENDEE_STATUS, status_record("registered", user="u1", email="ann@x.io")),
        (SESSION_ENGAGEMENT, engagement_record(user="u1", email="ann@x.io", final=True, plays=1)),
    ]
    event_b: list[tuple[TopicSpec, BaseModel]] = [
        (ATTENDEE_STATUS, status_record("registered", user="u9", email="bob@x.io", event=LEGACY_EVENT)),
        (SESSION_ENGAGEMENT, engagement_record(user="u9", email="bob@x.io", event=LEGACY_EVENT, final=True)),
    ]
    a_ops = [op.op_id for op in expected_ops(list(event_a))]
    activity = next(op.op_id for op in expected_ops(list(event_a)) if isinstance(op, CustomActivity))
    b_ops = [op.op_id for op in expected_ops(list(event_b))]
    await produce_at(kafka_broker, topic_prefix, event_a, now - timedelta(hours=10))
    with transform_process(kafka_broker, topic_prefix, tmp_path, "retention", KMSYNC_TRANSFORM_ENGINE=engine,
                           KMSYNC_TRANSFORM_STATE_RETENTION_SECONDS="3600") as running:
        await wait_for_ops(kafka_broker, topic_prefix, lambda got: set(a_ops) <= set(got), "event A's ops", tmp_path)
        await produce_at(kafka_broker, topic_prefix, event_b, now)
        await wait_for_ops(kafka_broker, topic_prefix, lambda got: set(b_ops) <= set(got), "event B's ops", tmp_path)
        await produce_at(kafka_broker, topic_prefix, event_a, now)  # a late replay of event A
        ids = await wait_for_ops(kafka_broker, topic_prefix, lambda got: Counter(got)[activity] >= 2,
                                 "event A's activity again, its ledger entry expired", tmp_path)
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{running.port}/metrics")).text
    # the lag gauge follows the input: everything read, nothing behind
    assert 'kmsync_transform_consumer_lag_records{partition="0",topic="kaltura.session-engagement.v1"} 0.0' \
        in metrics
    counts = Counter(ids)
    assert all(counts[op_id] == 2 for op_id in a_ops)  # the status was not a repeat either: state gone
    assert all(counts[op_id] == 1 for op_id in b_ops)


@pytest.mark.parametrize("engine", EXACTLY_ONCE_ENGINES)
async def test_the_marker_ingest_commits_to_end_a_left_open_transaction_is_skipped_not_dead_lettered(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
    status_record: Callable[..., AttendeeStatus], engagement_record: Callable[..., SessionEngagement],
    poll_record: Callable[..., PollResponse], engine: str,
) -> None:
    """Ingest ends what a broker crash left open on a kaltura.* partition with a committed transaction holding a
    record with no value (kmsync_contracts.topics.LEFT_OPEN_MARKER_KEY): transform reads past it, sends nothing
    and dead-letters nothing for it, and the records around it are transformed as ever."""
    await ensure_topics(kafka_broker.bootstrap, INPUTS, topic_prefix, partitions=1)
    await ensure_topics(kafka_broker.bootstrap, [MARKETO_OPS, TRANSFORM_DLQ], topic_prefix)
    before: list[tuple[TopicSpec, BaseModel]] = [
        (ATTENDEE_STATUS, status_record("registered", user="u1", email="ann@x.io")),
        (POLL_RESPONSES, poll_record("p1", user="u1", email="ann@x.io")),
    ]
    after: list[tuple[TopicSpec, BaseModel]] = [
        (SESSION_ENGAGEMENT, engagement_record(user="u1", email="ann@x.io", final=True, plays=1)),
        (ATTENDEE_STATUS, status_record("attended", user="u1", email="ann@x.io", minutes=5)),
    ]
    want = [op.op_id for op in expected_ops([*before, *after])]
    await produce_at(kafka_broker, topic_prefix, before)
    producer = reliable_producer(kafka_broker.bootstrap)
    await producer.start()
    try:
        for spec in INPUTS:
            await producer.send_and_wait(topic_name(spec, topic_prefix), None, key=LEFT_OPEN_MARKER_KEY)
    finally:
        await producer.stop()
    await produce_at(kafka_broker, topic_prefix, after)
    with transform_process(kafka_broker, topic_prefix, tmp_path, "marker", KMSYNC_TRANSFORM_ENGINE=engine):
        ids = await wait_for_ops(kafka_broker, topic_prefix, lambda got: set(want) <= set(got), "every op", tmp_path)
        await wait_for(lambda: group_caught_up(kafka_broker, topic_prefix), within=DEADLINE,
                       what="transform past every input record")
    assert sorted(ids) == sorted(want)
    assert await read_to_end(kafka_broker.bootstrap, topic_name(TRANSFORM_DLQ, topic_prefix)) == []
