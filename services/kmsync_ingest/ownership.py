"""Which coordination partition owns an event's pulls (pure).

Each configured event maps to one partition of ``ingest.pull-owners.v1`` by the same murmur2 hash
Kafka's default partitioner uses on the key ``partner:event`` (docs/reference/streaming.md §3: aiokafka's
DefaultPartitioner is Java-compatible murmur2), so the mapping is the same in every replica and
in any Kafka client. The replica that the consumer group assigns a partition to runs the pulls of
that partition's events and receives the notifications forwarded to it.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.partitioner import murmur2

from kmsync_config import EventConfig


def event_key(partner_id: int, virtual_event_id: int) -> str:
    return f"{partner_id}:{virtual_event_id}"


def owner_partition(partner_id: int, virtual_event_id: int, partitions: int) -> int:
    """The coordination partition of an event (0 <= result < partitions)."""
    if partitions < 1:
        raise ValueError(f"partitions: must be at least 1, got {partitions}")
    return (murmur2(event_key(partner_id, virtual_event_id).encode()) & 0x7FFFFFFF) % partitions


def events_by_partition(events: Iterable[EventConfig], partitions: int) -> dict[int, list[EventConfig]]:
    """Every partition (also those without events) and the events it owns, in configuration order."""
    out: dict[int, list[EventConfig]] = {p: [] for p in range(partitions)}
    for event in events:
        out[owner_partition(event.partner_id, event.virtual_event_id, partitions)].append(event)
    return out


def partition_transactional_id(transactional_id: str, prefix: str, partition: int) -> str | None:
    """The transactional id of one coordination partition's pulls: whoever owns the partition next
    starts a producer with the same id, which fences the previous owner (a killed or paused replica)
    and aborts its open transaction before the watermarks are read. None: no transactions."""
    if not transactional_id:
        return None
    return f"{transactional_id}/{prefix}".rstrip("/") + f"/p{partition}"
