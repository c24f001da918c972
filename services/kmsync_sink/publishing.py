"""Outcome publishing: every decision to marketo.results.v1 (and a failure to marketo.dlq.v1 too),
acknowledged by Kafka before its record counts as decided for the commit.

A broker outage does not fail the sink: the records are sent again until Kafka acknowledges them,
or the caller's ``give_up`` is set (a stop's drain deadline; ``PublishAbandoned``, the records stay
undecided and are replayed by the next owner).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from aiokafka import ConsumerRecord, TopicPartition

from kmsync_config.tenants import MUNCHKIN_ID
from kmsync_contracts import ContractError, DeadLetter, encode, utc_now
from kmsync_contracts.reasons import ReasonCode
from kmsync_kafka.producer import KafkaProducer
from kmsync_sink.decisions import Decision, outcome_jsons, to_dead_letter
from kmsync_sink.durable import Message, produce_until_acked
from kmsync_sink.intents import IntentLog
from kmsync_sink.metrics import SinkMetrics, observe_many
from kmsync_sink.offsets import OffsetTracker


class OutcomePublisher:
    def __init__(self, results_topic: str, dlq_topic: str, tracker: OffsetTracker, metrics: SinkMetrics) -> None:
        self.results_topic = results_topic
        self.dlq_topic = dlq_topic
        self.tracker = tracker
        self.metrics = metrics
        #: Set when the sink starts (the run's producer and intent log).
        self.producer: KafkaProducer | None = None
        self.intent_log: IntentLog | None = None
        #: The backfill lane's topic (set by the sink): its outcomes are not live latency.
        self.backfill_topic: str | None = None
        #: (munchkin id, email) → the lead id the sink knows, for the outcomes' correlation keys.
        self.known_lead_id: Callable[[str, str], int | None] = lambda munchkin_id, email: None

    async def publish(self, decisions: list[Decision], give_up: asyncio.Event) -> None:
        """Outcomes (and dead letters) acknowledged by Kafka, then the records count as decided; then
        the intents of custom activities whose outcome is certain are dropped."""
        if not decisions:
            return
        assert self.producer is not None
        now = utc_now()
        await produce_until_acked(self.producer, self._messages(decisions, now), give_up)
        if self.intent_log is not None:
            # Only after the outcome is acknowledged: a kill before that must leave the intent.
            self.intent_log.resolve(d.pending.op.op_id for d in decisions
                                    if d.pending.op.kind == "custom_activity" and not d.maybe_applied)
        self._count(decisions, now)

    def _messages(self, decisions: list[Decision], now: datetime) -> list[Message]:
        """Each decision's outcome (a failure's dead letter after it), keyed by its Munchkin id: one pass, each
        instance's key encoded once per call, the outcomes written by ``decisions.outcome_jsons`` (issue #22)."""
        keys: dict[str, bytes] = {}
        messages: list[Message] = []
        results = self.results_topic
        for d, value in zip(decisions, outcome_jsons(decisions, now, self.known_lead_id), strict=True):
            munchkin_id = d.pending.op.munchkin_id
            key = keys.get(munchkin_id)
            if key is None:
                key = keys[munchkin_id] = munchkin_id.encode()
            messages.append(Message(results, value, key))
            if d.status == "failed":
                messages.append(Message(self.dlq_topic, encode(to_dead_letter(d, now)), key))
        return messages

    def _count(self, decisions: list[Decision], now: datetime) -> None:
        """Decided for the commit, and counted: one labelled child per series and call, not per record
        (``labels()`` on every outcome was 4 % of the sink's CPU, issue #22); the offsets marked in one call."""
        self.tracker.done_many(d.pending.source for d in decisions)
        outcomes: dict[tuple[str, str, str], int] = {}
        latencies: dict[tuple[str, str], list[float]] = {}
        backfill = self.backfill_topic
        for d in decisions:
            p = d.pending
            op = p.op
            decided = d.status
            key = (op.munchkin_id, op.kind, decided)
            outcomes[key] = outcomes.get(key, 0) + 1
            if decided == "failed":
                self.metrics.dlq.labels(op.munchkin_id, d.reason_code or ReasonCode.UNKNOWN).inc()
            elif p.source.topic != backfill:  # a backfill's source times are history, not a delay
                series = latencies.get(key[:2])
                if series is None:
                    series = latencies[key[:2]] = []
                delay = (now - op.source_time).total_seconds()
                series.append(delay if delay > 0.0 else 0.0)  # max(0.0, delay), without the call
        for (munchkin_id, kind, status), n in outcomes.items():
            self.metrics.outcomes.labels(munchkin_id, kind, status).inc(n)
        for (munchkin_id, kind), seconds in latencies.items():
            observe_many(self.metrics.latency.labels(munchkin_id, kind), seconds)

    async def dead_letter_raw(
        self, tp: TopicPartition, m: ConsumerRecord[bytes, bytes], key: str | None, exc: ContractError,
        give_up: asyncio.Event,
    ) -> None:
        """A record that is not a valid operation: dead-lettered as it came, then decided."""
        assert self.producer is not None
        raw = (m.value or b"").decode(errors="replace")
        letter = DeadLetter(stage="sink", reason_code=ReasonCode.CONTRACT, reason=str(exc)[:2000],
                            source_topic=tp.topic, source_partition=tp.partition, source_offset=m.offset,
                            source_key=key, payload=raw, failed_at=utc_now())
        await produce_until_acked(self.producer, [Message(self.dlq_topic, encode(letter), m.key)], give_up)
        self.tracker.done(tp.topic, tp.partition, m.offset)
        # The key labels the series only if it is a Munchkin id (ops are keyed by it): a malformed record's key
        # could be anything, an email included, and every distinct one would be a series of its own.
        munchkin = key if key is not None and MUNCHKIN_ID.match(key) else "unknown"
        self.metrics.dlq.labels(munchkin, ReasonCode.CONTRACT).inc()
