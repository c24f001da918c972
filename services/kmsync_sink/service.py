"""The sink process: consume marketo.ops.v1 with manual commits, route each operation to its
instance's worker, publish outcomes and dead letters, commit only what has an outcome.

Reliability model: Kafka Connect's sink (docs/reference/streaming.md §4). ``put`` = add to the instance window;
``preCommit`` = the offset tracker's committable positions; retriable failures are retried per record
with backoff; permanent ones go to marketo.dlq.v1 with Marketo's code; on revocation the partition's
windows in flight are drained (up to a timeout; longer for a window whose lead call the Marketo client holds
by its replay delay, worker.py), unsent records abandoned, and only decided offsets committed
(docs/reference/streaming.md §3: commit in on_partitions_revoked).

:class:`MarketoSink` runs the consumer loop and the rebalance protocol; its three jobs are pieces of
their own: routing (routing.py), outcome publishing (publishing.py) and commit control (commits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError

from kmsync_config.tenants import TenantsConfig
from kmsync_contracts.topics import ACTIVITY_INTENTS, MARKETO_DLQ, MARKETO_OPS, MARKETO_OPS_BACKFILL, MARKETO_RESULTS
from kmsync_kafka.clients import (
    DEFAULT_ISOLATION,
    ensure_topics,
    manual_commit_consumer,
    topic_name,
)
from kmsync_kafka.lag import consumer_lags
from kmsync_kafka.producer import KafkaProducer, producer_config
from kmsync_sink.commits import CommitControl
from kmsync_sink.hanging_check import start_hanging_check
from kmsync_sink.intents import IntentLog
from kmsync_sink.ledger_reader import LedgerReader
from kmsync_sink.memory import ActivityWrites
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.pending import PendingOp
from kmsync_sink.publishing import OutcomePublisher
from kmsync_sink.routing import Broken, InstanceRouter, WriterFactory, default_writer
from kmsync_sink.settings import MAX_POLL_INTERVAL_SECONDS, SinkSettings
from kmsync_sink.worker import InstanceWorker, WorkerContext
from kmsync_sink.writer import MarketoWriter

log = logging.getLogger(__name__)

__all__ = ["MarketoSink", "SinkState", "WriterFactory", "default_writer"]


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
        self.metrics = metrics or SinkMetrics()
        p = settings.topic_prefix
        self.ops_topic = topic_name(MARKETO_OPS, p)
        #: The backfill lane (lanes.py): served after live, on the instance's backfill share.
        self.backfill_topic = topic_name(MARKETO_OPS_BACKFILL, p)
        self.results_topic = topic_name(MARKETO_RESULTS, p)
        self.dlq_topic = topic_name(MARKETO_DLQ, p)
        self.intents_topic = topic_name(ACTIVITY_INTENTS, p)
        self.intent_log: IntentLog | None = None
        #: The run's stop: Kafka writes of the main loop (raw dead letters) give up when it is set.
        self._stop = asyncio.Event()
        #: Bumped at the start of every rebalance (the revocation, which aiokafka calls on every rebalance, with
        #: an empty set on the first): a batch polled before it is not routed further. Not bumped by the
        #: assignment: aiokafka hands the new assignment to ``getmany`` before it calls ``on_partitions_assigned``
        #: (its ``_on_join_complete``), so a batch of the new assignment can be polled before that callback; it
        #: waits for ``_settled`` instead, and dropping it would lose it (its positions are not reset again).
        self._generation = 0
        #: Set while no rebalance is in progress: cleared by the revocation, set once the assignment's ledger
        #: catch-up has read every other replica's intents and outcomes (an activity re-read from a partition
        #: taken over must not be routed before the ledger knows what its previous owner sent).
        self._settled = asyncio.Event()
        self._settled.set()
        self.ledger = ActivityWrites()
        self.state = SinkState()
        self.tracker = OffsetTracker()
        self.outcomes = OutcomePublisher(self.results_topic, self.dlq_topic, self.tracker, self.metrics)
        self.commits = CommitControl(self.tracker, settings.sink_max_buffered_per_partition, self.metrics)
        context = WorkerContext(settings, self.ledger, self.outcomes.publish, self.metrics, time.monotonic,
                                verify_delay_seconds=settings.sink_activity_verify_delay_seconds,
                                # A stop waits this much longer for a window whose lead call is held (worker.py).
                                held_drain_seconds=settings.marketo_ambiguous_replay_delay_seconds,
                                stays_paused=self.commits.stays_paused)
        self.router = InstanceRouter(tenants, context, self.tracker, self.outcomes, writer_factory=writer_factory,
                                     rng=rng, on_failure=self._worker_failed)
        self.router.backfill_topic = self.outcomes.backfill_topic = self.backfill_topic
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._ledger_reader: LedgerReader | None = None
        #: The ledger's catch-up for the current assignment (on_assigned starts it, a revocation cancels it).
        self._catch_up: asyncio.Task[None] | None = None
        #: Set when the run ends: a rebalance during the shutdown's drain starts no catch-up.
        self._stopping = False
        self._failure: BaseException | None = None

    @property
    def workers(self) -> dict[str, InstanceWorker]:
        return self.router.workers

    @property
    def _writers(self) -> list[MarketoWriter]:
        return self.router.writers

    def _worker_for(self, munchkin_id: str) -> InstanceWorker | Broken:
        return self.router.worker_for(munchkin_id)

    def _worker_failed(self, exc: BaseException) -> None:
        self._failure = exc

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: a graceful stop drains windows in flight, abandons open windows
        (uncommitted, replayed later) and commits what has an outcome. Cancelling the task stops the
        same way; a failed worker or Kafka error ends the run with that error."""
        s = self.settings
        self._stop = stop
        # The sink's own topic (intents.py): created here, so every deployment has it.
        await ensure_topics(s.kafka_bootstrap, (ACTIVITY_INTENTS, MARKETO_OPS_BACKFILL), s.topic_prefix)
        # Outcomes, dead letters and intents on librdkafka (issue #22): each key's partition as aiokafka and Java
        # give it (murmur2), hashed in C; a broker outage is retried by durable.produce_until_acked.
        self._producer = KafkaProducer(producer_config(s.kafka_bootstrap))
        await self._producer.start()
        self.intent_log = IntentLog(self._producer, self.intents_topic, self.ledger)
        self.outcomes.producer, self.outcomes.intent_log = self._producer, self.intent_log
        self.router.use_intent_log(self.intent_log)
        self._ledger_reader = LedgerReader(s.kafka_bootstrap, self.results_topic, self.ledger,
                                           s.sink_ledger_lookback_hours, intents_topic=self.intents_topic)
        self._consumer = self.commits.consumer = manual_commit_consumer(
            s.kafka_bootstrap, s.sink_group_id,
            # The group waits this long for a revocation's drain (the longest: a window whose lead call is held by
            # the replay delay, settings.py) and commit before it hands the partitions on; a JoinGroup is answered
            # only then, and a rejoin needs a poll within max_poll_interval_ms (checked in settings.py).
            rebalance_timeout_ms=int(s.rebalance_timeout_seconds * 1000),
            request_timeout_ms=int(s.request_timeout_seconds * 1000),
            max_poll_interval_ms=int(MAX_POLL_INTERVAL_SECONDS * 1000),
            # Range assignment gives a replica the same partition numbers of both ops topics (same key, same
            # partition count), so an instance's live and backfill lanes, and its budget, are one replica's.
            partition_assignment_strategy=(RangePartitionAssignor,))
        # Off the consume loop: says when a hanging transaction stalls an input partition for good.
        hanging = start_hanging_check(s, [self.ops_topic, self.backfill_topic], self.metrics.registry, stop)
        try:
            await self._ledger_reader.start()
            await self._ledger_reader.catch_up()
            await self._consumer.start()
            self._consumer.subscribe([self.ops_topic, self.backfill_topic], listener=_Listener(self))
            self.state.ready = True
            await self._consume(stop)
        finally:
            self.state.ready = False
            if hanging is not None:
                hanging.cancel()
            await self._shutdown()

    async def _consume(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        last_commit = time.monotonic()
        while not stop.is_set():
            if self._failure is not None:
                raise self._failure
            batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            await self._route_batch(batch)
            self.commits.flow_control(self.workers)
            await self._report_lag()
            if time.monotonic() - last_commit >= self.settings.sink_commit_interval_seconds:
                await self.commits.commit()
                last_commit = time.monotonic()

    async def _report_lag(self) -> None:
        """The lag gauge of every assigned partition, from what the consumer learnt in its last fetch
        response (no broker round trip; paused partitions keep their last figure). Operations read
        and not yet decided are ``kmsync_sink_undecided_records``, not lag."""
        assert self._consumer is not None
        lags = await consumer_lags(self._consumer, DEFAULT_ISOLATION)
        by_partition: dict[int, int] = {}
        for tp, records in lags.items():  # an instance's partition: its live and backfill topics add up
            by_partition[tp.partition] = by_partition.get(tp.partition, 0) + records
        for partition, records in by_partition.items():
            self.metrics.consumer_lag.labels(str(partition)).set(records)
        self.router.note_lags({(tp.topic, tp.partition): records for tp, records in lags.items()})

    async def _shutdown(self) -> None:
        self._stopping = True
        await self._cancel_catch_up()
        # Both paths let windows in flight finish (bounded) so accepted writes get their outcomes;
        # open windows are abandoned uncommitted and replayed by whoever owns the partition next.
        await self._stop_workers(list(self.workers.values()))
        self.workers.clear()
        if self.intent_log is not None:  # tombstones still waiting for intents: out before the producer stops
            self.intent_log.send_queued()
            await asyncio.gather(*self.intent_log.pending(), return_exceptions=True)
        if self._consumer is not None and self.state.assigned:
            with contextlib.suppress(KafkaError, CommitFailedError):
                await self.commits.commit()
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

    async def _route_batch(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Route a polled batch. Routing can await (a dead letter, a broken instance's outcome), and a
        rebalance can run meanwhile: the rest of a batch polled before it is dropped (its partitions
        were revoked, or reassigned and fetched again from the committed offset). Routing it anyway
        would start a partition's offset tracking mid-partition and let the commit jump past the
        records abandoned at the revocation."""
        generation = self._generation
        if not self._settled.is_set():  # polled after a new assignment, before its catch-up finished
            await _first_set(self._settled, self._stop)
            if not self._settled.is_set():  # the run stops first: not routed, uncommitted, read again later
                return
        if self._failure is not None:  # a catch-up (or a worker) failed: the run ends, nothing more is routed
            return
        for tp, msgs in batch.items():
            for m in msgs:
                if self._generation != generation or tp not in self.state.assigned:
                    break
                await self.router.route(tp, m, self._stop)

    # ------------------------------------------------------------------ rebalance
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._generation += 1
        self._settled.clear()
        await self._cancel_catch_up()  # the next assignment catches up again, from where this one got to
        if not revoked:
            return
        keys = {(tp.topic, tp.partition) for tp in revoked}
        # An instance lives on one partition: its workers stop when that partition leaves (the windows in
        # flight drain, unsent records are abandoned to the next owner). All of them at once, within one
        # drain (the longest: settings.longest_drain_seconds): stopped one after another, an instance's two
        # lanes (or several instances) could outlast the rebalance timeout (that drain + 10 s), and the group
        # would hand their partitions to another replica while this one still sends. An instance's two lanes share
        # one Marketo client, and a drain extended for a lead call stops that client's new lead requests for good
        # (held_leads.py): so a lane that has read nothing yet (no partition of its own, e.g. the live worker the
        # backfill lane made) leaves with the other, and the next record makes both afresh, with a new client.
        leaving_ids = {w.munchkin_id for w in self.workers.values() if w.partitions & keys}
        leaving = [(m, w) for m, w in self.workers.items() if w.partitions & keys or w.munchkin_id in leaving_ids]
        for munchkin, _ in leaving:
            del self.workers[munchkin]
        dropped = await self._stop_workers([w for _, w in leaving])
        kept = [p for p in dropped if (p.source.topic, p.source.partition) not in keys]
        for p in kept:  # records of partitions still ours go back to a fresh worker
            w = self.router.worker_for(p.op.munchkin_id, self.router.lane_of(p.source.topic))
            if isinstance(w, InstanceWorker):
                w.add(p)
        with contextlib.suppress(KafkaError, CommitFailedError):
            await self.commits.commit(only=set(revoked))
        for tp in revoked:
            self.commits.revoked(tp)
            with contextlib.suppress(KeyError):  # another replica reports it now
                self.metrics.consumer_lag.remove(str(tp.partition))
        self.state.assigned -= revoked
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned - self.state.assigned:
            # Fetching starts again at the committed offset: no state of an earlier ownership counts.
            self.tracker.forget(tp.topic, tp.partition)
        self.state.assigned |= assigned
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))
        if self._stopping:  # a rebalance during the shutdown's drain: nothing is routed any more
            return
        if self._ledger_reader is None:
            self._settled.set()
            return
        # The catch-up runs on a task of its own, not in this callback: aiokafka sends no heartbeats while a
        # rebalance callback runs (GroupCoordinator stops its heartbeat task for the rebalance and starts it again
        # after the callback), so a catch-up longer than the session timeout (10 s; ~1.5 million outcomes to
        # read, docs/benchmarks.md "The activity ledger's catch-up") had the group evict this replica
        # mid-assignment and hand its partitions on while it went on to send. Routing waits at ``_settled``.
        self._catch_up = asyncio.create_task(self._catch_up_ledger(self._ledger_reader), name="ledger-catch-up")

    async def _catch_up_ledger(self, reader: LedgerReader) -> None:
        """Read every replica's outcomes and intents up to now, then open the gate to routing. A failure stops
        the sink (``_failure``: the consume loop raises it, and no batch is routed after it); a revocation
        cancels the catch-up and leaves the gate closed for the next assignment's."""
        try:
            await reader.catch_up()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("the activity ledger's catch-up failed after an assignment; the sink stops: %r", exc)
            self._failure = exc
        self._settled.set()  # routing goes on, or sees the failure and stops

    async def _cancel_catch_up(self) -> None:
        task, self._catch_up = self._catch_up, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _stop_workers(self, workers: list[InstanceWorker]) -> list[PendingOp]:
        """Stop ``workers`` together under one drain timeout (a window whose lead call is held by the replay
        delay: that delay more, worker.py); what they buffered and did not send."""
        timeout = self.settings.sink_drain_timeout_seconds
        dropped = await asyncio.gather(*(w.stop(timeout) for w in workers))
        return [p for ops in dropped for p in ops]


async def _first_set(*events: asyncio.Event) -> None:
    """Until one of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, sink: MarketoSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.sink.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.sink.on_assigned(set(assigned))
