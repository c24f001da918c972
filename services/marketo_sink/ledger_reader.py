"""Fills the activity ledger from marketo.results.v1 (the audit ledger every sink replica writes).

Read on start and again on every partition assignment, so an instance taken over from another replica
knows which custom activities that replica already wrote (insert-only, marketo-api.md §7.1).
"""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from kmsync_contracts import ContractError, decode
from kmsync_contracts.topics import MARKETO_RESULTS
from marketo_sink.memory import ActivityLedger

log = logging.getLogger(__name__)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions from fresh cluster metadata (a new consumer knows none yet)."""
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]


class LedgerReader:
    def __init__(self, bootstrap: str, topic: str, ledger: ActivityLedger, lookback_hours: float) -> None:
        self.topic = topic
        self.ledger = ledger
        self.lookback_ms = int(lookback_hours * 3600 * 1000)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                          group_id=None, isolation_level="read_committed")
        self._parts: list[TopicPartition] = []

    async def start(self) -> None:
        await self._consumer.start()
        self._parts = await topic_partitions(self._consumer, self.topic)
        if not self._parts:
            return
        self._consumer.assign(self._parts)
        since = int(time.time() * 1000) - self.lookback_ms
        found = await self._consumer.offsets_for_times({tp: since for tp in self._parts})
        for tp in self._parts:
            at = found.get(tp)
            if at is None:
                await self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, at.offset)

    async def catch_up(self) -> int:
        """Read up to the current end of the topic; returns how many activity op_ids were added."""
        if not self._parts:
            return 0
        ends = await self._consumer.end_offsets(self._parts)
        added = 0
        while await self._behind(ends):
            batch = await self._consumer.getmany(*self._parts, timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    if m.value is None:
                        continue
                    try:
                        out = decode(MARKETO_RESULTS, m.value)
                    except ContractError:
                        continue
                    if out.kind == "custom_activity" and out.status in ("created", "updated"):
                        self.ledger.add(out.op_id)
                        added += 1
        if added:
            log.info("activity ledger: %d written activities learned from %s", added, self.topic)
        return added

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        for tp in self._parts:
            if await self._consumer.position(tp) < ends[tp]:
                return True
        return False

    async def stop(self) -> None:
        await self._consumer.stop()
