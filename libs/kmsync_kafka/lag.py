"""Consumer lag: how many records a partition has that a consumer (transform, the sink) has not read yet.

``log_end`` and ``lag`` are pure; ``consumer_lags`` reads what aiokafka already knows from its
last fetch response (no extra broker round trip). A fetch response carries the partition's high
watermark and, for a read_committed consumer, its last stable offset (LSO); records at or past the
LSO are not readable yet, so they are not counted as lag. Both offsets and the position are "next
offset" numbers, so lag = end - position.
"""

from __future__ import annotations

import contextlib
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalStateError

IsolationLevel = Literal["read_committed", "read_uncommitted"]


def log_end(highwater: int | None, last_stable: int | None, isolation_level: IsolationLevel) -> int | None:
    """The offset after the last record this consumer may read; None before the first fetch response.

    aiokafka reports an LSO of -1 (or None on old brokers) when it has none: the high watermark is
    the end then.
    """
    if isolation_level == "read_committed" and last_stable is not None and last_stable >= 0:
        return last_stable
    return highwater


def lag(end: int, position: int) -> int:
    """Records between the position and the end (never negative: the end can trail a fresh position)."""
    return max(0, end - position)


async def consumer_lags(consumer: AIOKafkaConsumer, isolation_level: IsolationLevel) -> dict[TopicPartition, int]:
    """The lag of every assigned partition the consumer has had a fetch response for. Such a
    partition's position is valid, so reading it needs no round trip; one revoked meanwhile is left out."""
    out: dict[TopicPartition, int] = {}
    for tp in consumer.assignment():
        end = log_end(consumer.highwater(tp), consumer.last_stable_offset(tp), isolation_level)
        if end is None:
            continue
        with contextlib.suppress(IllegalStateError):
            out[tp] = lag(end, await consumer.position(tp))
    return out


async def group_lag(admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer, partitions: list[TopicPartition],
                    group_id: str) -> int:
    """Records on ``partitions`` (committed ones: the LSO of a read_committed ``reader``) past what consumer
    group ``group_id`` has committed; a partition the group has not committed yet counts from its start."""
    if not partitions:
        return 0
    ends = await reader.end_offsets(partitions)
    committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
    at = {tp: c.offset for tp, c in committed.items() if c is not None and c.offset >= 0}
    starts = await reader.beginning_offsets([tp for tp in partitions if tp not in at])
    return sum(lag(ends[tp], at.get(tp, starts.get(tp, 0))) for tp in partitions)
