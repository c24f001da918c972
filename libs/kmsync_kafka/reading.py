"""Read a topic from its beginning to its end as it is now (committed records only).

For tools that look at what a pipeline wrote (the chaos run's dead-letter census, an operator's
trace): a throw-away consumer without a group, every partition assigned, stopped at the end offsets
taken when it started, so a topic that is still being written to does not keep it reading forever.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from kmsync_kafka.clients import DEFAULT_ISOLATION


async def read_to_end(bootstrap: str, topic: str, *, within: float = 60.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of `topic`, partition by partition in offset order; [] for a topic
    that does not exist. Raises TimeoutError when the end is not reached within `within` seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level=DEFAULT_ISOLATION)
    await consumer.start()
    try:
        async with asyncio.timeout(within):
            # A metadata request for every topic: a fresh consumer knows none, and consumer.topics()
            # answers names without updating what partitions_for_topic() reads.
            cluster = await consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[ConsumerRecord[bytes, bytes]] = []
            pending = {tp for tp in tps if ends[tp] > 0}
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=500)
                for messages in batches.values():
                    out += messages
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
            return out
    finally:
        await consumer.stop()
