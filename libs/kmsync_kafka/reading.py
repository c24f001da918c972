"""Reading topics: which partitions a topic has, and a topic from its beginning to its end.

This module is the one place in kmsync that touches aiokafka's private client
(``AIOKafkaConsumer._client``). aiokafka has no public call that (a) fetches fresh cluster metadata
for topics a consumer has not subscribed to — a consumer that assigns partitions itself knows none
at start, and ``consumer.topics()`` answers names without the partition counts
``partitions_for_topic()`` reads — or (b) closes a consumer's connections when ``stop()`` hangs
against a dead broker. Every reader goes through the functions below, so an aiokafka upgrade that
changes the private client is fixed here once.

``read_to_end`` serves tools that look at what a pipeline wrote (the chaos run's dead-letter census,
``kmsync dlq replay``, tests): a throw-away consumer without a group, every partition assigned,
stopped at the end offsets taken when it started, so a topic that is still being written to does
not keep it reading forever. ``scan`` is the same read bounded by time (Kafka's offsets-for-times) and
filtered as it goes, with progress: ``kmsync trace`` reads the pipeline's topics with it.

Both leave out the markers ingest commits to end a transaction a broker crash left open
(``kmsync_contracts.topics.LEFT_OPEN_MARKER_KEY``): they carry nothing, so no reader decodes, counts or replays
them. This is the one place every reader of kaltura.* and the dead-letter topics outside transform skips them
(transform's two engines, which read kaltura.* through their own consumers, skip them themselves).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from kmsync_contracts.topics import is_left_open_marker
from kmsync_kafka.clients import DEFAULT_ISOLATION


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, from fresh cluster metadata; [] for a topic that does not exist."""
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Fetch fresh cluster metadata, so ``consumer.partitions_for_topic()`` knows every topic."""
    await consumer._client.force_metadata_update()


async def close_connections(consumer: AIOKafkaConsumer) -> None:
    """Close a consumer's broker connections, for when its ``stop()`` hangs against a dead broker."""
    await consumer._client.close()


async def read_to_end(bootstrap: str, topic: str, *, within: float = 60.0, isolation: str = DEFAULT_ISOLATION,
                      markers: bool = False) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of `topic` (every record at all with isolation "read_uncommitted"),
    partition by partition in offset order, left-open markers left out (``markers``: kept); [] for a topic that
    does not exist. Raises TimeoutError when the end is not reached within `within` seconds."""
    return await scan(bootstrap, topic, within=within, isolation=isolation, markers=markers)


#: Told (records read so far, records to read in all) as a scan goes.
Progress = Callable[[int, int], None]


async def scan(bootstrap: str, topic: str, *, within: float = 60.0, isolation: str = DEFAULT_ISOLATION,
               since_ms: int | None = None, keep: Callable[[ConsumerRecord[bytes, bytes]], bool] | None = None,
               progress: Progress | None = None, markers: bool = False) -> list[ConsumerRecord[bytes, bytes]]:
    """Like ``read_to_end``, bounded: from the first record at or after ``since_ms`` (a timestamp in ms,
    Kafka's offsets-for-times), keeping only the records ``keep`` accepts (so a large topic is read
    without holding it), telling ``progress`` how far it is after every fetch. Left-open markers are left out
    before ``keep`` sees them (``markers``: kept)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level=isolation)
    try:  # stopped even when its start fails or is cancelled (an unstopped consumer logs an ERROR when collected)
        await consumer.start()
        async with asyncio.timeout(within):
            tps = await topic_partitions(consumer, topic)
            if not tps:
                return []
            consumer.assign(tps)
            starts = await _start_offsets(consumer, tps, since_ms)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, starts[tp])
            total, done = sum(max(0, ends[tp] - starts[tp]) for tp in tps), 0
            out: list[ConsumerRecord[bytes, bytes]] = []
            pending = {tp for tp in tps if ends[tp] > starts[tp]}
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=500)
                for messages in batches.values():
                    done += len(messages)
                    out += [m for m in messages if (markers or not is_left_open_marker(m.key, m.value))
                            and (keep is None or keep(m))]
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
                if progress is not None:
                    progress(min(done, total), total)
            return out
    finally:
        await consumer.stop()


async def _start_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                         since_ms: int | None) -> dict[TopicPartition, int]:
    """Each partition's first offset, or its first offset at or after ``since_ms`` (the end when none is)."""
    firsts = await consumer.beginning_offsets(tps)
    if since_ms is None:
        return dict(firsts)
    found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
    ends = await consumer.end_offsets(tps)
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
