"""`kmsync transform` against the real broker: a scenario end to end (every engine), and for the aiokafka worker
and the lean engine a graceful restart mid-stream and a SIGKILL mid-batch followed by a restart (the quix engine's
kill and take-over is test_quix_engine.py's, run over the lean engine too)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel

from kmsync_contracts import (
    AttendeeStatus,
    CustomActivity,
    DeadLetter,
    MarketoOperation,
    PollResponse,
    SessionEngagement,
    decode,
    encode,
)
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    MARKETO_OPS,
    POLL_RESPONSES,
    SESSION_ENGAGEMENT,
    TRANSFORM_DLQ,
    TopicSpec,
)
from kmsync_kafka import ensure_topics, manual_commit_consumer, reliable_producer, topic_name
from kmsync_testing.kafka_broker import KafkaBroker, free_port
from kmsync_testing.waiting import wait_for
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.routing import route
from kmsync_transform.transformer import Transformer, TransformState

from .conftest import MUNCHKIN, T0, TENANTS, tenants_config

REPO = Path(__file__).resolve().parents[2]
KMSYNC = REPO / ".venv" / "bin" / "kmsync"
DEADLINE = 90.0
#: The engines with Kafka transactions (exactly-once), whose engine-level tests run over both: quix and lean
#: (engine_lean.py, the default), which must keep every guarantee of quix.
EXACTLY_ONCE_ENGINES = ("quix", "lean")
#: The restart and SIGKILL tests here run on the aiokafka worker (at-least-once replays) and on the lean engine
#: (exactly-once; a restarted process's state comes from the changelogs); test_quix_engine.py has the quix engine's.
RESTARTED_ENGINES = ("worker", "lean")


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


@contextmanager
def transform_process(broker: KafkaBroker, prefix: str, tmp: Path, name: str,
                      **extra_env: str) -> Iterator[Running]:
    """Start `kmsync transform` as a subprocess and always stop it (SIGTERM, then SIGKILL)."""
    tenants = tmp / "tenants.yaml"
    tenants.write_text(yaml.safe_dump(TENANTS))
    port = free_port()
    log = tmp / f"{name}.log"
    env = dict(os.environ, KMSYNC_KAFKA_BOOTSTRAP=broker.bootstrap, KMSYNC_TOPIC_PREFIX=prefix,
               KMSYNC_TENANTS_FILE=str(tenants), KMSYNC_HTTP_HOST="127.0.0.1", KMSYNC_HTTP_PORT=str(port),
               KMSYNC_LOG_LEVEL="INFO", **extra_env)
    with log.open("wb") as out:
        proc = subprocess.Popen([str(KMSYNC), "transform"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield Running(proc, port, log)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=30)


async def produce(broker: KafkaBroker, prefix: str, items: Sequence[tuple[TopicSpec, BaseModel | bytes]]) -> None:
    producer = reliable_producer(broker.bootstrap)
    await producer.start()
    try:
        for spec, record in items:
            if isinstance(record, bytes):
                value, key = record, b"garbage"
            else:
                value, key = encode(record), record.partition_key().encode()  # type: ignore[attr-defined]
            await producer.send(topic_name(spec, prefix), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


class Collector:
    """Reads marketo.ops.v1 and transform.dlq.v1 from the start, in the background."""

    def __init__(self, broker: KafkaBroker, prefix: str) -> None:
        self.ops: list[tuple[bytes | None, MarketoOperation]] = []
        self.dead: list[DeadLetter] = []
        self.positions: dict[TopicPartition, int] = {}
        self.consumer = manual_commit_consumer(broker.bootstrap, f"{prefix}observer",
                                               topic_name(MARKETO_OPS, prefix), topic_name(TRANSFORM_DLQ, prefix))
        self.ops_topic = topic_name(MARKETO_OPS, prefix)

    async def poll_until(self, done: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
        async def polled() -> bool:
            if not done():
                await self.poll_once()
            return done()

        try:
            await wait_for(polled, within=deadline, what=what)
        except AssertionError as exc:
            kinds = sorted(o.kind for _, o in self.ops)
            raise AssertionError(f"{exc}: {len(self.ops)} ops {({k: kinds.count(k) for k in set(kinds)})}, "
                                 f"dead letters {[d.reason_code for d in self.dead]}") from None

    async def poll_once(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=500)
        for msgs in batches.values():
            for m in msgs:
                if m.topic == self.ops_topic:
                    self.ops.append((m.key, decode(MARKETO_OPS, m.value)))
                else:
                    self.dead.append(decode(TRANSFORM_DLQ, m.value))
        for tp in self.consumer.assignment():
            # the position, not the last record's offset + 1: a transactional writer's commit marker
            # takes an offset after its records
            self.positions[tp] = await self.consumer.position(tp)

    async def drain(self) -> None:
        """Read everything up to the current end of both topics."""
        ends = await self.consumer.end_offsets(list(self.consumer.assignment()))
        await self.poll_until(
            lambda: all(self.positions.get(tp, 0) >= end for tp, end in ends.items()), "the end of the output")

    def op_ids(self) -> set[str]:
        return {op.op_id for _, op in self.ops}


@pytest.fixture
async def collector(kafka_broker: KafkaBroker, topic_prefix: str) -> AsyncIterator[Collector]:
    await ensure_topics(kafka_broker.bootstrap, [ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES,
                                                 MARKETO_OPS, TRANSFORM_DLQ], topic_prefix)
    c = Collector(kafka_broker, topic_prefix)
    await c.consumer.start()
    try:
        yield c
    finally:
        await c.consumer.stop()


def expected_ops(items: Sequence[tuple[TopicSpec, BaseModel | bytes]]) -> list[MarketoOperation]:
    """What the pure pipeline makes of the same records, in order (op ids do not depend on time)."""
    tenants = tenants_config()
    state = TransformState.in_memory()
    ops: list[MarketoOperation] = []
    for spec, record in items:
        raw = record if isinstance(record, bytes) else encode(record)
        result = route(spec, raw, SourceRef(), tenants, T0)
        if result.routed is not None:
            ops += Transformer(tenants, state).apply(result.routed).ops
    return ops


@pytest.mark.parametrize("engine", [*EXACTLY_ONCE_ENGINES, "worker"])
async def test_scenario_becomes_the_expected_operations(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, collector: Collector,
    status_record: Callable[..., AttendeeStatus], engagement_record: Callable[..., SessionEngagement],
    poll_record: Callable[..., PollResponse], engine: str,
) -> None:
    items: list[tuple[TopicSpec, BaseModel | bytes]] = [
        (ATTENDEE_STATUS, status_record("registered", first_name="Ann")),
        (ATTENDEE_STATUS, status_record("attended", minutes=1)),
        (ATTENDEE_STATUS, status_record("confirmed", minutes=2)),  # regression: dropped
        (ATTENDEE_STATUS, status_record("registered", user="u2", email="bob@x.io")),
        (ATTENDEE_STATUS, b"{not json"),
        (ATTENDEE_STATUS, status_record("registered", user="u3", email="")),
        (ATTENDEE_STATUS, status_record("registered", user="u4", email="dan@x.io", event=999)),
        (SESSION_ENGAGEMENT, engagement_record(final=False, plays=1, good_live_engagement_rate=40.0)),
        (SESSION_ENGAGEMENT, engagement_record(final=True, plays=2, good_live_engagement_rate=0.6, minutes=30)),
        (SESSION_ENGAGEMENT, engagement_record(final=True, plays=2, good_live_engagement_rate=0.6, minutes=30)),
        *[(POLL_RESPONSES, poll_record(f"p{i}", answer=f"a{i}")) for i in range(1, 12)],
    ]
    expected = expected_ops(items)
    assert sum(isinstance(op, CustomActivity) for op in expected) == 1
    await produce(kafka_broker, topic_prefix, items)
    with transform_process(kafka_broker, topic_prefix, tmp_path, "scenario",
                           KMSYNC_TRANSFORM_ENGINE=engine) as running:
        want = {op.op_id for op in expected}
        await collector.poll_until(lambda: want <= collector.op_ids() and len(collector.dead) >= 4,
                                   "the scenario's operations and dead letters")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}") as http:
            health = await http.get("/healthz")
            metrics = (await http.get("/metrics")).text
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert collector.op_ids() == want
    assert all(key == MUNCHKIN.encode() for key, _ in collector.ops)
    got = {op.op_id: op for _, op in collector.ops}
    for op in expected:  # same content, not just the same ids
        assert got[op.op_id].model_dump(exclude={"emitted_at"}) == op.model_dump(exclude={"emitted_at"})
    assert sorted(d.reason_code for d in collector.dead) == [
        ReasonCode.EVENT_NOT_CONFIGURED, ReasonCode.TOO_MANY_POLLS, ReasonCode.UNDECODABLE, ReasonCode.UNUSABLE_EMAIL]
    assert 'kmsync_transform_status_regressions_dropped_total{tenant="acme-summit"} 1.0' in metrics
    assert 'kmsync_transform_dead_lettered_total{reason="kmsync.too_many_polls",tenant="acme-summit"} 1.0' in metrics
    assert 'kmsync_transform_records_in_total{tenant="acme-summit",topic="kaltura.poll-responses.v1"} 11.0' \
        in metrics
    assert 'kmsync_transform_ops_out_total{kind="custom_activity",tenant="acme-summit"} 1.0' in metrics


async def wait_caught_up(broker: KafkaBroker, prefix: str, deadline: float = DEADLINE) -> None:
    """Until transform's consumer group has committed every input record there is."""
    names = [topic_name(s, prefix) for s in (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES)]
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await admin.start()
    await probe.start()
    try:
        tps = [TopicPartition(t, p) for t in names for p in sorted(probe.partitions_for_topic(t) or ())]

        async def caught_up() -> bool:
            ends = await probe.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(f"{prefix}kmsync-transform")
            return all(ends[tp] <= (committed[tp].offset if tp in committed else 0) for tp in tps)

        await wait_for(caught_up, within=deadline, what="transform to commit every input record")
    finally:
        await probe.stop()
        await admin.close()


@pytest.mark.parametrize("engine", RESTARTED_ENGINES)
@pytest.mark.parametrize("when", ["mid-stream"])
async def test_restart_loses_nothing_and_duplicates_no_activity(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, collector: Collector,
    status_record: Callable[..., AttendeeStatus], engagement_record: Callable[..., SessionEngagement],
    when: str, engine: str,
) -> None:
    people = [(f"u{i}", f"person{i}@x.io") for i in range(50)]
    first: list[tuple[TopicSpec, BaseModel | bytes]] = []
    for user, email in people:
        first += [
            (ATTENDEE_STATUS, status_record("registered", user=user, email=email)),
            (SESSION_ENGAGEMENT, engagement_record(user=user, email=email, final=True, plays=1)),
        ]
    second: list[tuple[TopicSpec, BaseModel | bytes]] = []
    for user, email in people:
        second += [
            (ATTENDEE_STATUS, status_record("attended", user=user, email=email, minutes=5)),
            # a late final snapshot: the object is updated, the activity is not sent again
            (SESSION_ENGAGEMENT, engagement_record(user=user, email=email, final=True, plays=3, minutes=9)),
        ]
    expected = expected_ops(first + second)
    want = {op.op_id for op in expected}
    await produce(kafka_broker, topic_prefix, first)
    want_first = {op.op_id for op in expected_ops(first)}
    # the worker's small batches, so the stop lands with input left over (one batch could hold all of the first
    # half); the lean engine commits the checkpoint in hand at SIGTERM and its successor, with a fresh state dir,
    # recovers the ledger from the changelogs
    with transform_process(kafka_broker, topic_prefix, tmp_path, "before", KMSYNC_TRANSFORM_ENGINE=engine,
                           KMSYNC_TRANSFORM_BATCH_MAX_RECORDS="10") as running:
        if when == "mid-stream":
            await collector.poll_until(lambda: len(collector.ops) >= 20, "the first operations")
        else:
            await collector.poll_until(lambda: want_first <= collector.op_ids(), "the first half's operations")
            await wait_caught_up(kafka_broker, topic_prefix)
        assert stop(running.proc) == 0
    before = collector.op_ids()
    await produce(kafka_broker, topic_prefix, second)
    with transform_process(kafka_broker, topic_prefix, tmp_path, "after", KMSYNC_TRANSFORM_ENGINE=engine):
        # an upstream replay of the first half: nothing new may come of it but upserts
        await produce(kafka_broker, topic_prefix, first)
        await wait_for_every_op(collector, expected, tmp_path)
        await wait_caught_up(kafka_broker, topic_prefix)
        await collector.drain()
    assert before and not want <= before, "the restart happened after everything was done"
    activities = [op for _, op in collector.ops if isinstance(op, CustomActivity)]
    assert len(activities) == len({a.op_id for a in activities}) == len(people)
    assert {(a.email, a.primary_attribute_value) for a in activities} == {(e, "0_keynote") for _, e in people}
    assert all(a.attributes["plays"] == 1 for a in activities)  # the first final snapshot won
    assert collector.op_ids() == want  # nothing lost, nothing unexpected
    if engine != "worker":  # the upserts of the replay come again, as often as one pass over the input makes them
        assert_exactly(collector, expected_ops(first + second + first))


def assert_exactly(collector: Collector, expected: list[MarketoOperation]) -> None:
    """An exactly-once engine commits each operation as often as the pure pipeline makes it of the input read once
    (the worker may replay one under its op id)."""
    got, want = Counter(op.op_id for _, op in collector.ops), Counter(op.op_id for op in expected)
    repeated = {op_id: n for op_id, n in got.items() if n > want[op_id]}
    assert not repeated, f"{len(repeated)} op ids committed more often than made, e.g. {list(repeated.items())[:3]}"
    assert got == want


async def wait_for_every_op(collector: Collector, expected: list[MarketoOperation], tmp_path: Path) -> None:
    """Every expected operation arrives, or the failure names some missing ones and the logs."""
    want = {op.op_id for op in expected}
    try:
        await collector.poll_until(lambda: want <= collector.op_ids(), "every expected operation", 45.0)
    except AssertionError:
        missing = [(m.kind, m.email) for m in expected if m.op_id not in collector.op_ids()]
        raise AssertionError(f"{len(missing)} operations missing, e.g. {missing[:5]}; "
                             f"logs in {tmp_path}") from None


async def committed_inputs(broker: KafkaBroker, prefix: str) -> int:
    """Input records transform's group has committed (the lean engine's group commits the polls' repartition
    topic too, with transaction markers among its offsets: not counted)."""
    inputs = {topic_name(s, prefix) for s in (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES)}
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{prefix}kmsync-transform")
        return sum(o.offset for tp, o in committed.items() if o.offset > 0 and tp.topic in inputs)
    finally:
        await admin.close()


@pytest.mark.parametrize("engine", RESTARTED_ENGINES)
async def test_sigkill_mid_batch_then_restart_loses_nothing(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, collector: Collector,
    status_record: Callable[..., AttendeeStatus], engagement_record: Callable[..., SessionEngagement],
    poll_record: Callable[..., PollResponse], engine: str,
) -> None:
    people = [(f"u{i}", f"person{i}@x.io") for i in range(150)]
    items: list[tuple[TopicSpec, BaseModel | bytes]] = []
    for n, (user, email) in enumerate(people):
        items += [
            (ATTENDEE_STATUS, status_record("registered", user=user, email=email)),
            (SESSION_ENGAGEMENT, engagement_record(user=user, email=email, final=True, plays=1)),
            # one poll: slots follow the order polls are first seen, which Kafka defines per partition only
            (POLL_RESPONSES, poll_record("p1", answer=f"a{n}", user=user, email=email)),
            (ATTENDEE_STATUS, status_record("attended", user=user, email=email, minutes=5)),
        ]
    expected = expected_ops(items)
    want = {op.op_id for op in expected}
    activity_ids = {op.op_id for op in expected if isinstance(op, CustomActivity)}
    assert len(activity_ids) == len(people)
    half = len(items) // 2
    await produce(kafka_broker, topic_prefix, items[:half])
    # The worker's batches are small; the lean engine's first checkpoint holds the whole first half, and the
    # second half, produced just before the kill, is in its next one, 1.5 s long: killed open. The lean replica
    # restarts under its name, as a pod does: it ends its killed incarnation's open checkpoint at start (left_open.py;
    # test_quix_engine.py's take-over waits for the broker to abort a random id's) and joins once the killed member's
    # session has timed out.
    env = {"KMSYNC_TRANSFORM_ENGINE": engine, "KMSYNC_TRANSFORM_INSTANCE_ID": "transform-0",
           "KMSYNC_TRANSFORM_SESSION_TIMEOUT_MS": "6000"}
    with transform_process(kafka_broker, topic_prefix, tmp_path, "killed", **env, KMSYNC_TRANSFORM_BATCH_MAX_RECORDS="7",
                           KMSYNC_TRANSFORM_COMMIT_INTERVAL_MS="1500") as running:
        await collector.poll_until(lambda: len(collector.ops) >= 100, "the first operations")
        await produce(kafka_broker, topic_prefix, items[half:])
        running.proc.kill()  # SIGKILL: no chance to finish the batch or commit
        assert running.proc.wait(timeout=30) == -signal.SIGKILL
    at_kill = collector.op_ids()
    committed = await committed_inputs(kafka_broker, topic_prefix)
    assert at_kill and not want <= at_kill and committed < len(items), "the kill came after everything was done"
    with transform_process(kafka_broker, topic_prefix, tmp_path, "restarted", **env):
        await wait_for_every_op(collector, expected, tmp_path)
        await wait_caught_up(kafka_broker, topic_prefix)
        await collector.drain()
    assert collector.op_ids() == want  # nothing lost, nothing unexpected
    # A batch replayed after the kill may repeat its activities, but only under the same op id and
    # with the same content (the sink drops a repeated activity op id); never a second activity.
    activities = [op for _, op in collector.ops if isinstance(op, CustomActivity)]
    assert {a.op_id for a in activities} == activity_ids
    assert all(a.attributes["plays"] == 1 for a in activities)
    assert not [op for _, op in collector.ops if op.op_id in at_kill and op.op_id not in want]
    if engine != "worker":
        assert_exactly(collector, expected)
