"""Activity intents: what the sink is about to send to Add Custom Activities, recorded durably first.

Custom activities are insert-only (docs/reference/marketo-api.md §7.1): sending one twice writes it twice. Before
an activities call the sink writes one ``ActivityIntent`` per activity to the compacted
``marketo.activity-intents.v1`` (key: op_id) and waits for Kafka's acknowledgement. An op_id with an
intent and no certain outcome — the sink was killed, Kafka or the drain deadline cut the outcome
off, Marketo's answer was ambiguous — is verified against the lead's activity log before it is sent
again (executor.py). Once the operation's outcome is acknowledged (written, or certainly not
applied), a tombstone removes the intent; a lost tombstone costs one verification read, never a
duplicate.

The topic is the sink's own (only the sink reads and writes it); it is in the catalogue
(kmsync_contracts.topics.ACTIVITY_INTENTS) and the sink also creates it at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from kmsync_contracts import encode
from kmsync_contracts.outcomes import ActivityIntent
from kmsync_kafka.producer import KafkaProducer, ProduceError
from kmsync_sink.durable import Message, produce_until_acked
from kmsync_sink.memory import ActivityWrites

log = logging.getLogger(__name__)



class IntentRecorder(Protocol):
    """What the executor needs: record intents durably before a call, drop them once certain."""

    async def record(self, intents: list[ActivityIntent]) -> None:
        """Durable (acknowledged) before it returns; raises ``PublishAbandoned`` on a stop."""

    def resolve(self, op_ids: Iterable[str]) -> None:
        """These operations certainly were not applied (or are known written): forget their intents."""


class LedgerIntents:
    """Intents kept in the ledger only (no Kafka): for tests of the executor alone."""

    def __init__(self, ledger: ActivityWrites) -> None:
        self.ledger = ledger

    async def record(self, intents: list[ActivityIntent]) -> None:
        for i in intents:
            self.ledger.intend(i, own=True)

    def resolve(self, op_ids: Iterable[str]) -> None:
        for op_id in op_ids:
            self.ledger.resolve(op_id)


class IntentLog:
    """Writes intents and tombstones to ``marketo.activity-intents.v1`` and keeps the ledger in step.

    Tombstones wait for the next intents and go out in the same send, ahead of them: intents and tombstones
    are keyed by op id over the same partitions, and librdkafka sends one partition per produce request
    (docs/reference/streaming.md §3.1), so one send is one request per partition instead of two (issue #22).
    Queued tombstones not taken by intents within ``tombstone_delay_seconds`` (or at the sink's stop) are
    sent alone, as before."""

    def __init__(
        self, producer: KafkaProducer, topic: str, ledger: ActivityWrites, tombstone_delay_seconds: float = 1.0
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.ledger = ledger
        self.tombstone_delay_seconds = tombstone_delay_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    async def record(self, intents: list[ActivityIntent], give_up: asyncio.Event) -> None:
        if self._tasks:  # a tombstone of the same op_id must never land after its new intent
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Queued tombstones first, in the same send: each partition's order (idempotence) puts an op id's
        # tombstone before its new intent. Lost with the send if it is abandoned: a verification read.
        messages = [Message(self.topic, None, op_id.encode()) for op_id in self._take_queued()]
        messages += [Message(self.topic, encode(i), i.op_id.encode()) for i in intents]
        await produce_until_acked(self.producer, messages, give_up)
        for i in intents:
            self.ledger.intend(i, own=True)

    def resolve(self, op_ids: Iterable[str]) -> None:
        """Forgotten in memory at once; tombstones follow, not waited for (a lost one only costs a
        verification read if the operation is replayed)."""
        ids = [op_id for op_id in op_ids if self.ledger.intent(op_id) is not None]
        for op_id in ids:
            self.ledger.resolve(op_id)
        if ids:
            self._queued.extend(ids)
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.tombstone_delay_seconds, self.send_queued)

    def send_queued(self) -> None:
        """Send the queued tombstones now, alone (no intents took them in time, or the sink stops)."""
        ids = self._take_queued()
        if ids:
            task = asyncio.ensure_future(self._tombstones(ids))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def pending(self) -> list[asyncio.Task[None]]:
        """Tombstone sends not yet handed to the producer."""
        return list(self._tasks)

    def _take_queued(self) -> list[str]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ids, self._queued = self._queued, []
        return ids

    async def _tombstones(self, op_ids: list[str]) -> None:
        try:  # queued in order behind their intents: the acknowledgement is not waited for
            fut = await self.producer.send_many([Message(self.topic, None, op_id.encode()) for op_id in op_ids])
        except ProduceError as exc:
            log.info("intent tombstones not sent (%r); the operations are verified if replayed", exc)
            return
        fut.add_done_callback(_ignore_result)

    def for_worker(self, give_up: asyncio.Event) -> WorkerIntents:
        return WorkerIntents(self, give_up)


def _ignore_result(fut: asyncio.Future[Any]) -> None:
    with contextlib.suppress(asyncio.CancelledError, Exception):
        fut.result()


class WorkerIntents:
    """An instance worker's view of the intent log: gives up when that worker's stop says so."""

    def __init__(self, log_: IntentLog, give_up: asyncio.Event) -> None:
        self._log = log_
        self._give_up = give_up

    async def record(self, intents: list[ActivityIntent]) -> None:
        await self._log.record(intents, self._give_up)

    def resolve(self, op_ids: Iterable[str]) -> None:
        self._log.resolve(op_ids)
