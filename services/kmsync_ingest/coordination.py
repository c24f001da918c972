"""Membership of the ingest consumer group on ``ingest.pull-owners.v1`` (docs/reference/streaming.md §3).

Kafka's own group assignment decides which replica owns which coordination partition; the
rebalance listener hands partitions over: ``release`` (revoked: stop starting pulls, let the page
in flight commit with its watermark) runs before Kafka gives the partition to another member, and
``take_over`` (assigned: fence the partition's transactional id, reload its events' watermarks)
before this replica pulls. The partitions also carry notifications that another replica received
for an event this one owns; each is handled (its pull acknowledged) before its offset is committed,
so a trigger survives any replica's death (a new owner reads it again; its pull is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from kmsync_contracts import ContractError, decode
from kmsync_contracts.topics import INGEST_PULL_OWNERS, PullTrigger
from kmsync_kafka import topic_name
from kmsync_kafka.reading import close_connections

log = logging.getLogger(__name__)


class Owner(Protocol):
    """What the service does when partitions move and when a forwarded trigger arrives."""

    async def take_over(self, partitions: set[int]) -> None: ...

    async def release(self, partitions: set[int]) -> None: ...

    async def handle_trigger(self, partition: int, trigger: PullTrigger) -> bool:
        """True once the trigger's pull is acknowledged (or it needs none); False: retry later."""
        ...


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: Owner, assigned: asyncio.Event) -> None:
        self.owner = owner
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            await self.owner.release({tp.partition for tp in revoked})
        except Exception as exc:  # never break the group protocol
            log.error("releasing coordination partitions failed: %r", exc)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self.owner.take_over({tp.partition for tp in assigned})
        except Exception as exc:
            log.error("taking over coordination partitions failed: %r", exc)
        self.assigned.set()


class PullCoordinator:
    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        group_id: str,
        owner: Owner,
        *,
        session_timeout_seconds: float,
        handover_timeout_seconds: float,
        retry_seconds: float,
    ) -> None:
        self.topic = topic_name(INGEST_PULL_OWNERS, prefix)
        self.group_id = group_id
        self.owner = owner
        self.retry_seconds = retry_seconds
        session_ms = int(session_timeout_seconds * 1000)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed",
            session_timeout_ms=session_ms, heartbeat_interval_ms=max(100, min(1000, session_ms // 3)),
            rebalance_timeout_ms=int(handover_timeout_seconds * 1000),
        )
        #: Set once the first assignment was handled (this replica may own nothing).
        self.assigned = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer.subscribe([self.topic], listener=_Listener(self.owner, self.assigned))
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name="ingest-coordination")

    async def stop(self) -> None:
        """Stop reading triggers and leave the group (the others take the partitions at once)."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
        # Against a dead broker the consumer's stop (leave group, last fetch) can hang: bounded,
        # then its connections are closed (the group notices the session timeout instead).
        stopping = asyncio.ensure_future(self.consumer.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        if not done:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await stopping
            with contextlib.suppress(Exception):
                await close_connections(self.consumer)
        elif not stopping.cancelled() and stopping.exception() is not None:
            log.warning("the coordination consumer did not stop cleanly: %r", stopping.exception())

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                batches = await self.consumer.getmany(timeout_ms=500)
            except KafkaError as exc:
                log.warning("reading the coordination topic failed: %r", exc)
                await self._pause()
                continue
            for tp, messages in batches.items():
                for message in messages:
                    if not await self._handle(tp, message.offset, message.value):
                        with contextlib.suppress(Exception):  # not ours any more: nothing to rewind
                            self.consumer.seek(tp, message.offset)
                        await self._pause()
                        break

    async def _handle(self, tp: TopicPartition, offset: int, value: bytes | None) -> bool:
        if value is None:
            done = True
        else:
            try:
                trigger = decode(INGEST_PULL_OWNERS, value)
            except ContractError as exc:
                log.error("ignoring an unreadable trigger at %s:%d: %s", tp.partition, offset, exc)
                trigger = None
            done = trigger is None or await self.owner.handle_trigger(tp.partition, trigger)
        if done:
            with contextlib.suppress(KafkaError):  # lost in a rebalance: the next owner repeats it
                await self.consumer.commit({tp: offset + 1})
        return done

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.retry_seconds)
