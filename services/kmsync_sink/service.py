"""The sink process: consume marketo.ops.v1 with manual commits, route each operation to its
instance's worker, publish outcomes and dead letters, commit only what has an outcome.

Reliability model: Kafka Connect's sink (docs/reference/streaming.md §4). ``put`` = add to the instance window;
``preCommit`` = the offset tracker's committable positions; retriable failures are retried per record
with backoff; permanent ones go to marketo.dlq.v1 with Marketo's code; on revocation the partition's
windows in flight are drained (up to a timeout), unsent records abandoned, and only decided offsets
committed (docs/reference/streaming.md §3: commit in on_partitions_revoked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from kmsync_config.tenants import TenantsConfig
from kmsync_contracts import ContractError, DeadLetter, decode, encode, utc_now
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import ACTIVITY_INTENTS, MARKETO_DLQ, MARKETO_OPS, MARKETO_RESULTS
from kmsync_kafka.clients import (
    DEFAULT_ISOLATION,
    ensure_topics,
    manual_commit_consumer,
    reliable_producer,
    topic_name,
)
from kmsync_kafka.lag import consumer_lags
from kmsync_marketo.bulk import BulkImporter
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.from_config import settings_from_instance
from kmsync_marketo.settings import MarketoSettings
from kmsync_sink.decisions import (
    Decision,
    to_dead_letter,
    to_outcome,
)
from kmsync_sink.durable import Message, PublishAbandoned, produce_until_acked
from kmsync_sink.intents import IntentLog
from kmsync_sink.ledger_reader import LedgerReader
from kmsync_sink.memory import ActivityLedger
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.pending import PendingOp, Source
from kmsync_sink.settings import SinkSettings
from kmsync_sink.worker import InstanceWorker
from kmsync_sink.writer import MarketoWriter

log = logging.getLogger(__name__)

#: Builds the writer of one instance from its client settings (tests may adjust the settings).
WriterFactory = Callable[[MarketoSettings], MarketoWriter]


def default_writer(settings: MarketoSettings) -> MarketoWriter:
    return MarketoClient(settings)


@dataclass
class _Broken:
    """An instance that cannot be used (bad config): its operations are dead-lettered at once."""

    code: str
    reason: str


@dataclass
class SinkState:
    ready: bool = False
    assigned: set[TopicPartition] = field(default_factory=set)


class MarketoSink:
    def __init__(
        self,
        settings: SinkSettings,
        tenants: TenantsConfig,
        *,
        writer_factory: WriterFactory = default_writer,
        metrics: SinkMetrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.tenants = tenants
        self.writer_factory = writer_factory
        self.metrics = metrics or SinkMetrics()
        self._rng = rng or random.Random()
        p = settings.topic_prefix
        self.ops_topic = topic_name(MARKETO_OPS, p)
        self.results_topic = topic_name(MARKETO_RESULTS, p)
        self.dlq_topic = topic_name(MARKETO_DLQ, p)
        self.intents_topic = topic_name(ACTIVITY_INTENTS, p)
        self.intent_log: IntentLog | None = None
        #: The run's stop: Kafka writes of the main loop (raw dead letters) give up when it is set.
        self._stop = asyncio.Event()
        #: Bumped by every revocation and assignment: a batch polled before one is not routed further.
        self._generation = 0
        self.ledger = ActivityLedger()
        self.state = SinkState()
        self.workers: dict[str, InstanceWorker] = {}
        self._broken: dict[str, _Broken] = {}
        self._writers: list[MarketoWriter] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._ledger_reader: LedgerReader | None = None
        self.tracker = OffsetTracker()
        self._paused: set[TopicPartition] = set()
        self._failure: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: a graceful stop drains windows in flight, abandons open windows
        (uncommitted, replayed later) and commits what has an outcome. Cancelling the task stops the
        same way; a failed worker or Kafka error ends the run with that error."""
        s = self.settings
        self._stop = stop
        # The sink's own topic (intents.py): created here, so every deployment has it.
        await ensure_topics(s.kafka_bootstrap, (ACTIVITY_INTENTS,), s.topic_prefix)
        self._producer = reliable_producer(s.kafka_bootstrap)
        await self._producer.start()
        self.intent_log = IntentLog(self._producer, self.intents_topic, self.ledger)
        self._ledger_reader = LedgerReader(s.kafka_bootstrap, self.results_topic, self.ledger,
                                           s.sink_ledger_lookback_hours, intents_topic=self.intents_topic)
        self._consumer = manual_commit_consumer(s.kafka_bootstrap, s.sink_group_id,
                                                rebalance_timeout_ms=int(s.sink_drain_timeout_seconds * 1000)
                                                + 10_000)
        try:
            await self._ledger_reader.start()
            await self._ledger_reader.catch_up()
            await self._consumer.start()
            self._consumer.subscribe([self.ops_topic], listener=_Listener(self))
            self.state.ready = True
            last_commit = time.monotonic()
            while not stop.is_set():
                if self._failure is not None:
                    raise self._failure
                batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
                await self._route_batch(batch)
                self._flow_control()
                await self._report_lag()
                if time.monotonic() - last_commit >= s.sink_commit_interval_seconds:
                    await self._commit()
                    last_commit = time.monotonic()
        finally:
            self.state.ready = False
            await self._shutdown()

    async def _report_lag(self) -> None:
        """The lag gauge of every assigned partition, from what the consumer learnt in its last fetch
        response (no broker round trip; paused partitions keep their last figure). Operations read
        and not yet decided are ``kmsync_sink_buffered_operations``, not lag."""
        assert self._consumer is not None
        for tp, records in (await consumer_lags(self._consumer, DEFAULT_ISOLATION)).items():
            self.metrics.consumer_lag.labels(str(tp.partition)).set(records)

    async def _shutdown(self) -> None:
        # Both paths let windows in flight finish (bounded) so accepted writes get their outcomes;
        # open windows are abandoned uncommitted and replayed by whoever owns the partition next.
        for worker in list(self.workers.values()):
            await worker.stop(self.settings.sink_drain_timeout_seconds)
        self.workers.clear()
        if self._consumer is not None and self.state.assigned:
            with contextlib.suppress(KafkaError, CommitFailedError):
                await self._commit()
        for closer in (self._consumer, self._ledger_reader, self._producer):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer.stop()
        for w in self._writers:
            with contextlib.suppress(Exception):
                await w.aclose()
        self._writers.clear()

    def ready(self) -> bool:
        return self.state.ready

    # ------------------------------------------------------------------ routing
    async def _route_batch(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Route a polled batch. Routing can await (a dead letter, a broken instance's outcome), and a
        rebalance can run meanwhile: the rest of a batch polled before it is dropped (its partitions
        were revoked, or reassigned and fetched again from the committed offset). Routing it anyway
        would start a partition's offset tracking mid-partition and let the commit jump past the
        records abandoned at the revocation."""
        generation = self._generation
        for tp, msgs in batch.items():
            for m in msgs:
                if self._generation != generation or tp not in self.state.assigned:
                    break
                await self._route(tp, m)

    async def _route(self, tp: TopicPartition, m: ConsumerRecord[bytes, bytes]) -> None:
        self.tracker.read(tp.topic, tp.partition, m.offset)
        key = m.key.decode(errors="replace") if m.key else None
        try:
            op = decode(MARKETO_OPS, m.value or b"")
        except ContractError as exc:
            await self._dead_letter_raw(tp, m, key, exc)
            return
        pending = PendingOp(Source(tp.topic, tp.partition, m.offset), op, len(m.value or b""),
                            time.monotonic(), key=key)
        worker = self._worker_for(op.munchkin_id)
        if isinstance(worker, _Broken):
            await self.publish([Decision(pending, "failed", reason_code=worker.code, reason=worker.reason)],
                               self._stop)
            return
        worker.add(pending)

    def _worker_for(self, munchkin_id: str) -> InstanceWorker | _Broken:
        worker = self.workers.get(munchkin_id)
        if worker is not None:
            return worker
        if munchkin_id in self._broken:
            return self._broken[munchkin_id]
        found = self.tenants.instance_by_munchkin(munchkin_id)
        if found is None:
            broken = _Broken(ReasonCode.INSTANCE_UNKNOWN, f"Marketo instance {munchkin_id} is not in the tenants file; "
                             "add it under marketo_instances, restart the sink, then replay")
            self._broken[munchkin_id] = broken
            return broken
        name, instance = found
        try:
            client_settings = settings_from_instance(instance)
            writer = self.writer_factory(client_settings)
        except ValueError as exc:
            # A bad secret reference or setting of one instance never stops the others.
            broken = _Broken(ReasonCode.INSTANCE_CONFIG,
                             f"marketo_instances.{name}: {exc}; fix it, restart, then replay")
            log.error("instance %s unusable: %s", munchkin_id, broken.reason)
            self._broken[munchkin_id] = broken
            return broken
        self._writers.append(writer)
        bulk = BulkImporter(writer) if isinstance(writer, MarketoClient) else None
        worker = InstanceWorker(munchkin_id, writer, self.settings, self.ledger, self.publish, self.metrics,
                                time.monotonic, random.Random(self._rng.random()), bulk=bulk,
                                bulk_min_records=instance.bulk_min_records, intent_log=self.intent_log,
                                verify_delay_seconds=self.settings.sink_activity_verify_delay_seconds)
        worker.start()
        assert worker.task is not None
        worker.task.add_done_callback(self._worker_done)
        self.workers[munchkin_id] = worker
        return worker

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, PublishAbandoned):  # a stop gave up on Kafka
            log.error("instance worker %s failed: %r", task.get_name(), exc)
            self._failure = exc

    # ------------------------------------------------------------------ publishing
    async def publish(self, decisions: list[Decision], give_up: asyncio.Event) -> None:
        """Outcomes (and dead letters) acknowledged by Kafka, then the records count as decided.

        A broker outage does not fail the sink: the records are sent again until Kafka acknowledges
        them, or ``give_up`` is set (a stop's drain deadline; ``PublishAbandoned``, the records stay
        undecided). Then the intents of custom activities whose outcome is certain are dropped."""
        if not decisions:
            return
        assert self._producer is not None
        now = utc_now()
        messages: list[Message] = []
        for d in decisions:
            key = d.pending.op.munchkin_id.encode()
            messages.append(Message(self.results_topic, encode(to_outcome(d, now)), key))
            if d.failed:
                messages.append(Message(self.dlq_topic, encode(to_dead_letter(d, now)), key))
        await produce_until_acked(self._producer, messages, give_up)
        if self.intent_log is not None:
            # Only after the outcome is acknowledged: a kill before that must leave the intent.
            self.intent_log.resolve(d.pending.op.op_id for d in decisions
                                    if d.pending.op.kind == "custom_activity" and not d.maybe_applied)
        for d in decisions:
            src, op = d.pending.source, d.pending.op
            self.tracker.done(src.topic, src.partition, src.offset)
            self.metrics.outcomes.labels(op.munchkin_id, op.kind, d.status).inc()
            if d.failed:
                self.metrics.dlq.labels(op.munchkin_id, d.reason_code or "unknown").inc()
            else:
                self.metrics.latency.labels(op.munchkin_id, op.kind).observe(
                    max(0.0, (now - op.source_time).total_seconds()))

    async def _dead_letter_raw(
        self, tp: TopicPartition, m: ConsumerRecord[bytes, bytes], key: str | None, exc: ContractError
    ) -> None:
        assert self._producer is not None
        raw = (m.value or b"").decode(errors="replace")
        letter = DeadLetter(stage="sink", reason_code=ReasonCode.CONTRACT, reason=str(exc)[:2000],
                            source_topic=tp.topic, source_partition=tp.partition, source_offset=m.offset,
                            source_key=key, payload=raw, failed_at=utc_now())
        await produce_until_acked(self._producer, [Message(self.dlq_topic, encode(letter), m.key)], self._stop)
        self.tracker.done(tp.topic, tp.partition, m.offset)
        self.metrics.dlq.labels(key or "unknown", ReasonCode.CONTRACT).inc()

    # ------------------------------------------------------------------ offsets and flow
    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        offsets = {
            TopicPartition(t, p): pos for (t, p), pos in self.tracker.to_commit().items()
            if TopicPartition(t, p) in assigned and (only is None or TopicPartition(t, p) in only)
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("commit refused (group rebalanced): %s", exc)
            return
        except KafkaError as exc:  # the broker is away: committed later, nothing is lost by waiting
            log.warning("commit failed (%r); retried at the next interval", exc)
            return
        self.tracker.mark_committed({(tp.topic, tp.partition): pos for tp, pos in offsets.items()})

    def _flow_control(self) -> None:
        """Pause a partition whose undecided records pile up (a parked instance), resume it later."""
        assert self._consumer is not None
        cap = self.settings.sink_max_buffered_per_partition
        for tp in self._consumer.assignment():
            open_n = self.tracker.open_count(tp.topic, tp.partition)
            if open_n >= cap and tp not in self._paused:
                self._consumer.pause(tp)
                self._paused.add(tp)
                log.warning("partition %s paused: %d operations undecided", tp, open_n)
            elif open_n < cap // 2 and tp in self._paused:
                self._consumer.resume(tp)
                self._paused.discard(tp)
        for munchkin, worker in self.workers.items():
            self.metrics.buffered.labels(munchkin).set(worker.buffered)

    # ------------------------------------------------------------------ rebalance
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._generation += 1
        if not revoked:
            return
        keys = {(tp.topic, tp.partition) for tp in revoked}
        kept: list[PendingOp] = []
        for munchkin, worker in list(self.workers.items()):
            # An instance lives on one partition: its worker stops when that partition leaves
            # (the window in flight drains, unsent records are abandoned to the next owner).
            if worker.partitions & keys:
                del self.workers[munchkin]
                dropped = await worker.stop(self.settings.sink_drain_timeout_seconds)
                kept += [p for p in dropped if (p.source.topic, p.source.partition) not in keys]
        for p in kept:  # records of partitions still ours go back to a fresh worker
            w = self._worker_for(p.op.munchkin_id)
            if isinstance(w, InstanceWorker):
                w.add(p)
        with contextlib.suppress(KafkaError, CommitFailedError):
            await self._commit(only=set(revoked))
        for tp in revoked:
            self.tracker.forget(tp.topic, tp.partition)
            self._paused.discard(tp)
            with contextlib.suppress(KeyError):  # another replica reports it now
                self.metrics.consumer_lag.remove(str(tp.partition))
        self.state.assigned -= revoked
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._generation += 1
        for tp in assigned - self.state.assigned:
            # Fetching starts again at the committed offset: no state of an earlier ownership counts.
            self.tracker.forget(tp.topic, tp.partition)
        self.state.assigned |= assigned
        if self._ledger_reader is not None:
            await self._ledger_reader.catch_up()
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, sink: MarketoSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.sink.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.sink.on_assigned(set(assigned))
