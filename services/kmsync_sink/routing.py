"""Routing: each operation read from marketo.ops.v1 (live) or marketo.ops.backfill.v1 (backfill) to its
Marketo instance's worker of that lane (one per instance and lane, made on first use), or, for an
instance the tenants file lacks or cannot configure, an outcome at once (dead-lettered; it never stops
the other instances)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError

from kmsync_config.tenants import TenantsConfig
from kmsync_contracts import ContractError, decode
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import MARKETO_OPS
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.from_config import settings_from_instance
from kmsync_marketo.lanes import BACKFILL, LIVE, Lane
from kmsync_marketo.settings import MarketoSettings
from kmsync_sink.decisions import Decision
from kmsync_sink.durable import PublishAbandoned
from kmsync_sink.intents import IntentLog
from kmsync_sink.lanes import LaneGate
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.pending import PendingOp, Source
from kmsync_sink.publishing import OutcomePublisher
from kmsync_sink.worker import InstanceWorker, WorkerContext
from kmsync_sink.writer import MarketoWriter

log = logging.getLogger(__name__)

#: The operations topics' contract validator (``decode``'s, kmsync_contracts.topics.MARKETO_OPS).
_OPS_VALIDATOR = MARKETO_OPS.value.validator
#: Distinct record keys remembered as text (a malformed producer's keys could be anything), and the longest
#: one remembered: a Munchkin id is 11 bytes; a key of up to a megabyte from a misconfigured producer is not
#: kept for the life of the process.
_KEYS_REMEMBERED = 1024
_KEY_REMEMBERED_MAX_BYTES = 32

#: Builds the writer of one instance from its client settings (tests may adjust the settings).
WriterFactory = Callable[[MarketoSettings], MarketoWriter]


def default_writer(settings: MarketoSettings) -> MarketoWriter:
    return MarketoClient(settings)


@dataclass
class Broken:
    """An instance that cannot be used (bad config): its operations are dead-lettered at once."""

    code: str
    reason: str


def backfill_key(munchkin_id: str) -> str:
    """Where an instance's backfill worker is in ``InstanceRouter.workers``."""
    return f"{munchkin_id}|{BACKFILL}"


class InstanceRouter:
    def __init__(
        self, tenants: TenantsConfig, context: WorkerContext, tracker: OffsetTracker, outcomes: OutcomePublisher,
        *, writer_factory: WriterFactory = default_writer, rng: random.Random | None = None,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        """``on_failure``: told when a worker fails (not when a stop gave up on Kafka)."""
        self.tenants = tenants
        self.context = context
        self.tracker = tracker
        self.outcomes = outcomes
        self.writer_factory = writer_factory
        self._rng = rng or random.Random()
        self._on_failure = on_failure
        #: Live workers by Munchkin id, backfill workers by ``backfill_key`` (lanes.py).
        self.workers: dict[str, InstanceWorker] = {}
        #: The topic whose operations are of the backfill lane (set by the sink).
        self.backfill_topic: str | None = None
        self.broken: dict[str, Broken] = {}
        self.writers: list[MarketoWriter] = []
        outcomes.known_lead_id = self.known_lead_id
        #: Record keys (bytes) → their text (ops are keyed by Munchkin id: a handful of keys).
        self._keys: dict[bytes, str] = {}

    def known_lead_id(self, munchkin_id: str, email: str) -> int | None:
        """The lead id the instance's worker has cached for this email (outcomes carry it, issue #19)."""
        worker = self.workers.get(munchkin_id)
        return worker.cache.peek(email) if worker is not None else None

    def use_intent_log(self, intent_log: IntentLog) -> None:
        """Workers made from now on record custom activity intents there."""
        self.context = dataclasses.replace(self.context, intent_log=intent_log)

    async def route(self, tp: TopicPartition, m: ConsumerRecord[bytes, bytes], give_up: asyncio.Event) -> None:
        topic, value = tp.topic, m.value or b""
        self.tracker.read(topic, tp.partition, m.offset)
        raw_key = m.key
        key = (self._keys.get(raw_key) or self._key(raw_key)) if raw_key else None
        try:
            # The contract's validator itself (what ``decode`` calls, without its wrapper's layers, issue #22);
            # a record it refuses goes through ``decode`` for the contract's error.
            op = _OPS_VALIDATOR.validate_json(value)
        except ValidationError:
            try:
                op = decode(MARKETO_OPS, value)
            except ContractError as exc:
                await self.outcomes.dead_letter_raw(tp, m, key, exc, give_up)
                return
        pending = PendingOp(Source(topic, tp.partition, m.offset), op, len(value), time.monotonic(), key=key)
        # The worker of the operation's instance and lane, straight from ``workers`` (the key is the lane's);
        # made (or found broken) by ``worker_for`` the first time.
        munchkin_id = op.munchkin_id
        if topic == self.backfill_topic:
            worker = self.workers.get(backfill_key(munchkin_id)) or self.worker_for(munchkin_id, BACKFILL)
        else:
            worker = self.workers.get(munchkin_id) or self.worker_for(munchkin_id, LIVE)
        if isinstance(worker, Broken):
            await self.outcomes.publish([Decision(pending, "failed", reason_code=worker.code, reason=worker.reason)],
                                        give_up)
            return
        worker.add(pending)

    def _key(self, raw: bytes) -> str:
        """A record key as text; the few distinct ones (Munchkin ids) remembered, up to ``_KEYS_REMEMBERED``."""
        key = raw.decode(errors="replace")
        if len(self._keys) < _KEYS_REMEMBERED and len(raw) <= _KEY_REMEMBERED_MAX_BYTES:
            self._keys[raw] = key
        return key

    def note_lags(self, lags: dict[tuple[str, int], int]) -> None:
        """Each worker's lag: what Kafka holds for its partitions and the sink has not read (adaptive windows)."""
        for worker in self.workers.values():
            worker.note_lag(sum(lags.get(tp, 0) for tp in worker.partitions))

    def lane_of(self, topic: str) -> Lane:
        return BACKFILL if topic == self.backfill_topic else LIVE

    def worker_for(self, munchkin_id: str, lane: Lane = LIVE) -> InstanceWorker | Broken:
        if lane == BACKFILL:
            return self._backfill_worker(munchkin_id)
        worker = self.workers.get(munchkin_id)
        if worker is not None:
            return worker
        if munchkin_id in self.broken:
            return self.broken[munchkin_id]
        found = self.tenants.instance_by_munchkin(munchkin_id)
        if found is None:
            return self._broken(munchkin_id, ReasonCode.INSTANCE_UNKNOWN, (
                f"Marketo instance {munchkin_id} is not in the tenants file; add it under marketo_instances, "
                "restart the sink, then replay"))
        name, instance = found
        try:
            writer = self.writer_factory(settings_from_instance(instance))
        except ValueError as exc:
            # A bad secret reference or setting of one instance never stops the others.
            broken = self._broken(munchkin_id, ReasonCode.INSTANCE_CONFIG,
                                  f"marketo_instances.{name}: {exc}; fix it, restart, then replay")
            log.error("instance %s unusable: %s", munchkin_id, broken.reason)
            return broken
        self.writers.append(writer)
        worker = InstanceWorker(munchkin_id, writer, self.context, rng=random.Random(self._rng.random()),
                                bulk=writer.bulk(), bulk_min_records=instance.bulk_min_records,
                                member_fields=instance.program_member_fields, gate=LaneGate())
        self._start(munchkin_id, worker)
        return worker

    def _backfill_worker(self, munchkin_id: str) -> InstanceWorker | Broken:
        """The instance's backfill worker: the live worker's writer (one limiter), lead cache and gate."""
        worker = self.workers.get(backfill_key(munchkin_id))
        if worker is not None:
            return worker
        live = self.worker_for(munchkin_id)
        if isinstance(live, Broken):
            return live
        worker = InstanceWorker(munchkin_id, live.writer, self.context, rng=random.Random(self._rng.random()),
                                bulk=live.writer.bulk(), bulk_min_records=live.bulk_configured,
                                member_fields=live.member_fields, lane=BACKFILL, cache=live.cache, gate=live.gate)
        self._start(backfill_key(munchkin_id), worker)
        return worker

    def _start(self, key: str, worker: InstanceWorker) -> None:
        worker.start()
        assert worker.task is not None
        worker.task.add_done_callback(self._worker_done)
        self.workers[key] = worker

    def _broken(self, munchkin_id: str, code: ReasonCode, reason: str) -> Broken:
        broken = self.broken[munchkin_id] = Broken(code, reason)
        return broken

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, PublishAbandoned):  # a stop gave up on Kafka
            log.error("instance worker %s failed: %r", task.get_name(), exc)
            self._on_failure(exc)
