"""The activity intent log (issue #22): one record per Add Custom Activities call (an
``ActivityIntentBatch``, key: its batch id) and one tombstone per batch once every activity in it is
certain; tombstones wait for the next intents and go out in the same send, ahead of them; records of the
per-op shape of earlier sinks are read at start and tombstoned once certain. Real Kafka, six partitions
as deployed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from kmsync_contracts import encode
from kmsync_contracts.outcomes import ActivityIntent, RecordOutcome, intent_batch_id
from kmsync_contracts.seed import ENGAGEMENT_ACTIVITY_API_NAME
from kmsync_contracts.topics import ACTIVITY_INTENTS, MARKETO_RESULTS
from kmsync_kafka.clients import ensure_topics, topic_name
from kmsync_kafka.producer import KafkaProducer, Record, producer_config
from kmsync_kafka.reading import read_to_end
from kmsync_marketo.client import ActivityRecord, LeadActivity
from kmsync_marketo.errors import ErrorClass
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_marketo.outcomes import Outcome
from kmsync_sink.decisions import Decision
from kmsync_sink.executor import WindowExecutor
from kmsync_sink.intents import IntentLog
from kmsync_sink.ledger_reader import LedgerReader
from kmsync_sink.memory import ActivityWrites, LeadCache
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.pending import PendingOp
from kmsync_sink.planner import PlannerConfig, plan_window
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]
T = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
MUNCHKIN = "111-AAA-111"


def intent(op_id: str) -> ActivityIntent:
    return ActivityIntent(op_id=op_id, munchkin_id=MUNCHKIN, lead_id=5, activity_type_id=100001,
                          primary_attribute_value="1_abc", activity_date=T, recorded_at=T)


def written(op_id: str) -> RecordOutcome:
    return RecordOutcome(op_id=op_id, munchkin_id=MUNCHKIN, kind="custom_activity", status="created",
                         source_time=T, decided_at=T)


class CountingProducer(KafkaProducer):
    """The real producer, counting its sends (each is one produce request per partition it touches)."""

    sends: list[list[tuple[bytes | None, bool]]]

    async def send_many(self, records):  # type: ignore[no-untyped-def]
        self.sends.append([(r.key, r.value is None) for r in records])
        return await super().send_many(records)


async def _topics(broker: KafkaBroker, prefix: str) -> tuple[str, str]:
    await ensure_topics(broker.bootstrap, (ACTIVITY_INTENTS, MARKETO_RESULTS), prefix, partitions=6)
    return topic_name(ACTIVITY_INTENTS, prefix), topic_name(MARKETO_RESULTS, prefix)


async def _history(broker: KafkaBroker, topic: str) -> dict[bytes, list[bool]]:
    """Key → whether each of its records is a tombstone, in order."""
    by_key: dict[bytes, list[bool]] = {}
    for r in await read_to_end(broker.bootstrap, topic):
        by_key.setdefault(r.key, []).append(r.value is None)
    return by_key


async def _produce(broker: KafkaBroker, records: Iterable[Record]) -> None:
    producer = KafkaProducer(producer_config(broker.bootstrap))
    await producer.start()
    try:
        await (await producer.send_many(list(records)))
    finally:
        await producer.stop()


async def _resolve_now(log: IntentLog, op_ids: Iterable[str]) -> None:
    """Resolved, and the tombstones this settles handed to the producer at once (not after the delay)."""
    log.resolve(op_ids)
    log.send_queued()
    await asyncio.gather(*log.pending())


async def _restart(broker: KafkaBroker, intents_topic: str, results_topic: str,
                   producer: KafkaProducer) -> tuple[ActivityWrites, IntentLog, LedgerReader]:
    """A fresh sink's ledger, intent log and reader, caught up as at start."""
    ledger = ActivityWrites()
    log = IntentLog(producer, intents_topic, ledger, tombstone_delay_seconds=0.2)
    reader = LedgerReader(broker.bootstrap, results_topic, ledger, 24.0, intents_topic=intents_topic,
                          tombstone=log.tombstone, metrics=SinkMetrics())
    await reader.start()
    await reader.catch_up()
    return ledger, log, reader


async def test_one_record_per_call_and_tombstones_ride_with_the_next_intents(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    topic, _ = await _topics(kafka_broker, topic_prefix)
    producer = CountingProducer(producer_config(kafka_broker.bootstrap))
    producer.sends = []
    ledger = ActivityWrites()
    log = IntentLog(producer, topic, ledger, tombstone_delay_seconds=0.5)
    first, second = intent_batch_id(f"op-{i}" for i in range(12)), intent_batch_id(["op-0", "op-20"])
    await producer.start()
    try:
        await log.record([intent(f"op-{i}") for i in range(12)], asyncio.Event())
        assert producer.sends == [[(first.encode(), False)]]  # twelve activities, one record
        log.resolve(f"op-{i}" for i in range(11))
        assert ledger.live_records() == {first: frozenset({"op-11"})}  # one activity left: no tombstone
        log.resolve(["op-11"])
        assert len(producer.sends) == 1 and ledger.intent("op-0") is None  # forgotten at once, not yet sent
        # op-0 is sent again (a replay) with op-20: the settled batch's tombstone rides ahead of the new one.
        await log.record([intent("op-0"), intent("op-20")], asyncio.Event())
        assert producer.sends[1] == [(first.encode(), True), (second.encode(), False)]
        log.resolve(["op-20"])  # op-0 still open: the batch stays
        log.resolve(["op-0"])  # no intents follow: the tombstone is sent alone after the delay
        await wait_for(lambda: len(producer.sends) == 3, within=10, what="the lone tombstone")
        assert producer.sends[2] == [(second.encode(), True)]
        # The first batch sent again (a replay of the same op ids) rewrites its key.
        await log.record([intent(f"op-{i}") for i in range(12)], asyncio.Event())
        await asyncio.gather(*log.pending())
    finally:
        await producer.stop()
    by_key = await _history(kafka_broker, topic)
    assert by_key == {first.encode(): [False, True, False], second.encode(): [False, True]}
    assert ledger.live_records() == {first: frozenset(f"op-{i}" for i in range(12))}


async def test_a_batch_stays_until_its_uncertain_activity_is_resolved_and_a_restart_verifies_only_it(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    """A call of two activities: "done" written (its outcome acknowledged on marketo.results.v1), "maybe"
    answered ambiguously. The batch is not tombstoned. A restart in between finds "done" written (its
    intent resolved from the results, so never verified) and "maybe" uncertain (verified before any
    resend): only the uncertain one, because the written one's outcome is durable. (An activity
    certainly *not* applied in such a batch would be verified too after a restart — the batch does not
    say which were — which costs a read, never a duplicate.) Once "maybe" is resolved, the batch is
    tombstoned, and a later start finds nothing open."""
    intents_topic, results_topic = await _topics(kafka_broker, topic_prefix)
    key = intent_batch_id(["done", "maybe"])
    producer = CountingProducer(producer_config(kafka_broker.bootstrap))
    producer.sends = []
    await producer.start()
    try:
        ledger = ActivityWrites()
        log = IntentLog(producer, intents_topic, ledger, tombstone_delay_seconds=0.2)
        await log.record([intent("done"), intent("maybe")], asyncio.Event())
        ledger.add("done")
        await _produce(kafka_broker, [Record(results_topic, encode(written("done")), MUNCHKIN.encode())])
        await _resolve_now(log, ["done"])  # the publisher, once the outcome is acknowledged; "maybe" stays open
        assert len(producer.sends) == 1 and ledger.uncertain("maybe") is not None

        ledger2, log2, reader2 = await _restart(kafka_broker, intents_topic, results_topic, producer)
        try:
            assert ledger2.uncertain("done") is None and ledger2.intent("done") is None and "done" in ledger2
            assert ledger2.uncertain("maybe") == intent("maybe")
            assert ledger2.live_records() == {key: frozenset({"maybe"})}
            log2.send_queued()
            assert len(producer.sends) == 1  # nothing settled at start
            await _resolve_now(log2, ["maybe"])  # verified absent and not applied, or found written
        finally:
            await reader2.stop()
        assert producer.sends[-1] == [(key.encode(), True)]
        assert (await _history(kafka_broker, intents_topic)) == {key.encode(): [False, True]}

        ledger3, _, reader3 = await _restart(kafka_broker, intents_topic, results_topic, producer)
        await reader3.stop()
        assert ledger3.intents == 0 and ledger3.live_records() == {}
    finally:
        await producer.stop()


async def test_per_op_records_of_earlier_sinks_are_read_and_tombstoned_once_certain_and_bad_ones_reported(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    """Upgrade: the topic holds records of the per-op shape (key op_id, value ActivityIntent). At start,
    "old-written" is known written from marketo.results.v1: its record is tombstoned; "old-open" stays
    uncertain until resolved, then its record (key: its op id) is tombstoned. A record that breaks its
    topic's contract (or an intent whose key is not its id) is logged and counted, and the records after
    it are read."""
    intents_topic, results_topic = await _topics(kafka_broker, topic_prefix)
    batch = intent_batch_id(["new-1"])
    good_batch = encode(intent("new-1")).join([b'{"schema_version":1,"batch_id":"' + batch.encode()
                                               + b'","intents":[', b"]}"])
    await _produce(kafka_broker, [
        Record(intents_topic, encode(intent("old-written")), b"old-written"),
        Record(intents_topic, encode(intent("old-open")), b"old-open"),
        Record(intents_topic, b'{"schema_version":1,"op_id":"broken"}', b"broken"),
        Record(intents_topic, encode(intent("elsewhere")), b"not-its-key"),
        Record(intents_topic, good_batch, batch.encode()),
        Record(results_topic, b'{"op_id":"no-contract"}', MUNCHKIN.encode()),
        Record(results_topic, encode(written("old-written")), MUNCHKIN.encode()),
    ])
    producer = CountingProducer(producer_config(kafka_broker.bootstrap))
    producer.sends = []
    await producer.start()
    try:
        ledger, log, reader = await _restart(kafka_broker, intents_topic, results_topic, producer)
        try:
            assert reader.bad_records == 3
            assert reader.metrics is not None
            assert reader.metrics.ledger_bad_records.labels(intents_topic)._value.get() == 2
            assert reader.metrics.ledger_bad_records.labels(results_topic)._value.get() == 1
            assert ledger.uncertain("old-open") == intent("old-open")
            assert ledger.uncertain("new-1") == intent("new-1")
            assert ledger.intent("old-written") is None and ledger.intent("broken") is None
            assert ledger.live_records() == {"old-open": frozenset({"old-open"}), batch: frozenset({"new-1"})}
            await _resolve_now(log, ["old-open"])
        finally:
            await reader.stop()
    finally:
        await producer.stop()
    by_key = await _history(kafka_broker, intents_topic)
    assert by_key[b"old-written"] == [False, True] and by_key[b"old-open"] == [False, True]
    assert by_key[batch.encode()] == [False]


class OneAmbiguous:
    """Marketo's activity endpoints for the executor: an activity whose primary value is "1_maybe" gets
    an ambiguous answer (not applied) on its first call; the others are written. Get Lead Activities reads
    what was written."""

    def __init__(self) -> None:
        self.limiter = InstanceLimiter("memory")
        self.stored: list[ActivityRecord] = []
        self.activity_calls: list[list[str]] = []
        self.reads: list[list[int]] = []
        self._ambiguous = True

    async def add_custom_activities(self, activities: Sequence[ActivityRecord]) -> list[Outcome]:
        self.activity_calls.append([a.primary_attribute_value for a in activities])
        out = []
        for i, a in enumerate(activities):
            if a.primary_attribute_value == "1_maybe" and self._ambiguous:
                self._ambiguous = False
                out.append(Outcome(seq=i, status="failed", reason_code="604", reason="Request timed out",
                                   classification=ErrorClass.RETRY_SOON, maybe_applied=True))
                continue
            self.stored.append(a)
            out.append(Outcome(seq=i, status="created", marketo_id=f"g{len(self.stored)}"))
        return out

    async def custom_activity_types(self) -> list[dict[str, Any]]:
        return [{"id": 100001, "apiName": ENGAGEMENT_ACTIVITY_API_NAME}]

    async def lead_activities(self, activity_type_ids: Sequence[int], lead_ids: Sequence[int],
                              since: datetime) -> list[LeadActivity]:
        self.reads.append(sorted(lead_ids))
        return [LeadActivity("g", a.lead_id, a.activity_type_id, a.primary_attribute_value,
                             a.activity_date.isoformat()) for a in self.stored if a.lead_id in lead_ids]


async def _execute(window: list[PendingOp], writer: OneAmbiguous, cache: LeadCache, ledger: ActivityWrites,
                   log: IntentLog) -> dict[str, Decision]:
    plan = plan_window(window, PlannerConfig(batch_max=300), known_lead=lambda e: e in cache,
                       already_written=lambda op_id: op_id in ledger)
    executor = WindowExecutor(writer, cache, ledger, intents=log.for_worker(asyncio.Event()))  # type: ignore[arg-type]
    return {d.pending.op.op_id: d for d in await executor.execute(plan)}


async def test_the_executor_keeps_a_batch_with_an_ambiguous_activity_and_a_restart_verifies_only_that_one(
    kafka_broker: KafkaBroker, topic_prefix: str, ops: Any
) -> None:
    """Through the executor: one call of "done" (written) and "maybe" (604, may be applied). The publisher
    resolves "done" once its outcome is acknowledged; the batch is not tombstoned. After a restart the
    planner answers "done" from the results (no call, no read) and the executor reads only the lead of
    "maybe" (absent: sent again in a new batch, written). Both batches are then tombstoned."""
    intents_topic, results_topic = await _topics(kafka_broker, topic_prefix)
    writer, cache = OneAmbiguous(), LeadCache(10)
    cache.put("done@x.com", 5)
    cache.put("maybe@x.com", 6)

    def window() -> list[PendingOp]:  # transform emits the same op ids again after its restarts
        return [ops.pending(ops.activity("done@x.com", "1_done", op_id="done")),
                ops.pending(ops.activity("maybe@x.com", "1_maybe", op_id="maybe"))]

    first, second = intent_batch_id(["done", "maybe"]), intent_batch_id(["maybe"])
    producer = CountingProducer(producer_config(kafka_broker.bootstrap))
    producer.sends = []
    await producer.start()
    try:
        ledger = ActivityWrites()
        log = IntentLog(producer, intents_topic, ledger, tombstone_delay_seconds=0.2)
        got = await _execute(window(), writer, cache, ledger, log)
        assert (got["done"].status, got["maybe"].maybe_applied) == ("created", True)
        await _produce(kafka_broker, [Record(results_topic, encode(written("done")), MUNCHKIN.encode())])
        # As publishing.py does once the outcomes are acknowledged:
        await _resolve_now(log, [op for op, d in got.items() if not d.maybe_applied])
        assert producer.sends == [[(first.encode(), False)]], "the batch stays while 'maybe' is uncertain"

        ledger2, log2, reader2 = await _restart(kafka_broker, intents_topic, results_topic, producer)
        try:
            got = await _execute(window(), writer, cache, ledger2, log2)
            assert (got["done"].status, got["done"].reason_code) == ("skipped", "kmsync.already_written")
            assert got["maybe"].status == "created"
            assert writer.reads == [[6]], "only the uncertain activity's lead is read"
            assert writer.activity_calls == [["1_done", "1_maybe"], ["1_maybe"]]
            await _resolve_now(log2, ["maybe"])
        finally:
            await reader2.stop()
    finally:
        await producer.stop()
    assert (await _history(kafka_broker, intents_topic)) == {first.encode(): [False, True],
                                                             second.encode(): [False, True]}
