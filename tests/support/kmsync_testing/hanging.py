"""Building what a broker crash leaves: a transaction open on partitions while its coordinator has the
transactional id completed (a "hanging" transaction, docs/reference/streaming.md §3.1).

OBSERVED with Kafka 4.4 (SIGKILL of the broker under a pulling ingest): DescribeProducers showed a partition's
open transaction of the id's producer while DescribeTransactions had the id at CompleteCommit; neither the
id's fence nor any timeout ended it. ``leave_hanging_transaction`` builds that deterministically: it commits
records under the id, then appends transactional batches of the same producer id and epoch behind its
coordinator's back. Brokers refuse such a batch while they verify transactional writes
(``transaction.partition.verification.enable``, on by default: INVALID_TXN_STATE, OBSERVED), so it needs a
broker with the verification off: ``unverified_broker``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from kmsync_kafka.hanging import held_open
from kmsync_testing.kafka_broker import KafkaBroker, start_broker
from kmsync_testing.waiting import wait_for


class Put(NamedTuple):
    """One record for a given partition."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None


@asynccontextmanager
async def unverified_broker(work_dir: Path) -> AsyncIterator[KafkaBroker]:
    """A broker of its own that appends transactional records without asking their coordinator; stopped at
    the end."""
    broker = await asyncio.to_thread(start_broker, work_dir)
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        off = ConfigEntry("transaction.partition.verification.enable", "false",
                          incremental_operation=AlterConfigOpType.SET)
        for future in admin.incremental_alter_configs(
                [ConfigResource(ResourceType.BROKER, "1", incremental_configs=[off])]).values():
            await asyncio.to_thread(future.result)
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


async def leave_hanging_transaction(bootstrap: str, transactional_id: str, committed: Sequence[Put],
                                    hanging: Sequence[Put]) -> None:
    """Commit ``committed`` under ``transactional_id`` (its coordinator ends at CompleteCommit), then append
    ``hanging`` as transactional batches of the same producer id and epoch that no coordinator knows of:
    their partitions hold an open transaction afterwards, for good."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id,
                                enable_idempotence=True, acks="all")
    try:  # stopped even when its start fails (an unstopped producer logs an ERROR when collected)
        await producer.start()
        async with producer.transaction():
            for put in committed:
                await producer.send_and_wait(put.topic, put.value, put.key, partition=put.partition)
        topics = sorted({put.topic for put in committed})

        async def markers_written() -> bool:
            return not await held_open(bootstrap, topics)

        await wait_for(markers_written, what="the commit markers")
        request = ProduceRequest(transactional_id=transactional_id, required_acks=-1, timeout=10_000,
                                 topics=_batches(producer, hanging))
        leader = producer.client.cluster.leader_for_partition(TopicPartition(hanging[0].topic, hanging[0].partition))
        response = await producer.client.send(leader, request)
        assert all(error == 0 for _, parts in response.topics for _, error, *_ in parts), f"refused: {response}"
    finally:
        await producer.stop()


def _batches(producer: AIOKafkaProducer, puts: Sequence[Put]) -> list[tuple[str, list[tuple[int, bytes]]]]:
    """One transactional batch per record, of the producer's id and epoch, at its next sequence number."""
    txn = producer._txn_manager
    out = []
    for put in puts:
        tp = TopicPartition(put.topic, put.partition)
        batch = DefaultRecordBatchBuilder(2, 0, is_transactional=1, producer_id=txn.producer_id,
                                          producer_epoch=txn.producer_epoch, batch_size=1 << 20,
                                          base_sequence=txn.sequence_number(tp))
        batch.append(0, timestamp=None, key=put.key, value=put.value, headers=[])
        out.append((put.topic, [(put.partition, bytes(batch.build()))]))
    return out
