"""Fills the activity ledger from Kafka: written activities from marketo.results.v1 (the audit ledger
every sink replica writes) and open intents from marketo.activity-intents.v1 (intents.py).

Read on start and again on every partition assignment, so an instance taken over from another replica
knows which custom activities that replica already wrote, and which it may have written (an intent
with no certain outcome: verified before it is sent again; insert-only, docs/reference/marketo-api.md §7.1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from kmsync_contracts import ContractError, decode
from kmsync_contracts.topics import ACTIVITY_INTENTS, MARKETO_RESULTS
from kmsync_kafka.reading import topic_partitions
from kmsync_sink.memory import ActivityWrites

log = logging.getLogger(__name__)

#: The JSON string of RecordOutcome.kind for a custom activity, as the contract encodes it.
ACTIVITY_KIND = b'"custom_activity"'
#: A catch-up slower than this is logged as a warning: routing of the partitions just assigned waits for it
#: (service.py; it runs on its own task, so the group's heartbeats go on meanwhile).
SLOW_CATCH_UP_SECONDS = 5.0


class _TopicCatchUp:
    """Reads one topic up to its current end on each ``catch_up`` (from ``since_ms`` or the start)."""

    def __init__(self, bootstrap: str, topic: str, handle: Callable[[ConsumerRecord[bytes, bytes]], bool],
                 since_ms: int | None) -> None:
        self.topic = topic
        self.handle = handle
        self.since_ms = since_ms
        # earliest: a position the topic's retention deleted since the last catch-up (a replica that saw no
        # rebalance for longer than marketo.results.v1's retention) is read from the oldest record kept, never
        # from the end (aiokafka's default, "latest", would skip every outcome written in between).
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                          group_id=None, isolation_level="read_committed",
                                          auto_offset_reset="earliest")
        self._parts: list[TopicPartition] = []

    async def start(self) -> None:
        await self._consumer.start()
        await self._assign()

    async def _assign(self) -> None:
        self._parts = await topic_partitions(self._consumer, self.topic)
        if not self._parts:
            return
        self._consumer.assign(self._parts)
        if self.since_ms is None:
            await self._consumer.seek_to_beginning(*self._parts)
            return
        since = int(time.time() * 1000) - self.since_ms
        found = await self._consumer.offsets_for_times({tp: since for tp in self._parts})
        for tp in self._parts:
            at = found.get(tp)
            if at is None:
                await self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, at.offset)

    async def catch_up(self) -> int:
        """Read up to the current end of the topic; returns how many records the handler took."""
        if not self._parts:
            await self._assign()  # created after start (the first run of a sink)
            if not self._parts:
                return 0
        ends = await self._consumer.end_offsets(self._parts)
        taken = 0
        self._consumer.resume(*self._parts)
        try:
            while await self._behind(ends):
                batch = await self._consumer.getmany(*self._parts, timeout_ms=500)
                for msgs in batch.values():
                    for m in msgs:
                        taken += self.handle(m)
        finally:
            # Between catch-ups nothing is fetched: an assigned consumer's fetcher would otherwise go on
            # prefetching (up to a fetch per partition, buffered) outcomes nobody reads until the next
            # catch-up, and polling the broker for more.
            self._consumer.pause(*self._parts)
        return taken

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        for tp in self._parts:
            if await self._consumer.position(tp) < ends[tp]:
                return True
        return False

    async def stop(self) -> None:
        await self._consumer.stop()


class LedgerReader:
    def __init__(self, bootstrap: str, topic: str, ledger: ActivityWrites, lookback_hours: float,
                 intents_topic: str | None = None) -> None:
        """``topic``: marketo.results.v1 (read from ``lookback_hours`` ago); ``intents_topic``: the
        compacted marketo.activity-intents.v1 (read whole; None: not read)."""
        self.topic = topic
        self.ledger = ledger
        self._results = _TopicCatchUp(bootstrap, topic, self._result, int(lookback_hours * 3600 * 1000))
        self._intents = (_TopicCatchUp(bootstrap, intents_topic, self._intent, None)
                         if intents_topic is not None else None)

    def _result(self, m: ConsumerRecord[bytes, bytes]) -> bool:
        # Only written custom activities matter: any other outcome is passed over on its bytes (an activity's
        # JSON always holds its kind's string; anything else holding it is decoded and checked), so a catch-up
        # that reads days of outcomes decodes a fraction of them (routing of an assignment waits for it).
        if m.value is None or ACTIVITY_KIND not in m.value:
            return False
        try:
            out = decode(MARKETO_RESULTS, m.value)
        except ContractError:
            return False
        if out.kind == "custom_activity" and out.status in ("created", "updated"):
            self.ledger.add(out.op_id)
            return True
        return False

    def _intent(self, m: ConsumerRecord[bytes, bytes]) -> bool:
        if m.key is None:
            return False
        if m.value is None:  # tombstone: that operation's outcome is certain
            self.ledger.tombstone_read(m.key.decode(errors="replace"))
            return False
        try:
            intent = decode(ACTIVITY_INTENTS, m.value)
        except ContractError:
            return False
        self.ledger.intend(intent)
        return True

    async def start(self) -> None:
        await self._results.start()
        if self._intents is not None:
            await self._intents.start()

    async def catch_up(self) -> int:
        """Read both topics up to their current ends; returns how many written activity op_ids were added."""
        started = time.monotonic()
        added = await self._results.catch_up()
        intents = await self._intents.catch_up() if self._intents is not None else 0
        took = time.monotonic() - started
        if took > SLOW_CATCH_UP_SECONDS:
            log.warning("activity ledger: the catch-up took %.1f s (%d written activities, %d open intents); "
                        "routing of the partitions assigned waited for it", took, added, self.ledger.intents)
        elif added or intents:
            log.info("activity ledger: %d written activities learned from %s; %d open intent(s)",
                     added, self.topic, self.ledger.intents)
        return added

    async def stop(self) -> None:
        await self._results.stop()
        if self._intents is not None:
            await self._intents.stop()
