"""Ending a transaction a broker crash left open under a transactional id that is starting again.

A broker crash can leave a transaction open on a partition while the id's coordinator no longer knows it (a
"hanging" transaction, docs/reference/streaming.md §3.1, OBSERVED with Kafka 4.4). ``init_transactions`` under
the id does not end it (the coordinator has nothing to abort) and no timeout does; every read_committed reader of
the partition stops at it for good. An abort marker of the same producer id does end it, as aborted: a
transaction of the id that writes to the partition and aborts. A transactional id keeps its producer id across
incarnations (init_transactions bumps only the epoch), so the next holder of the id can end what the previous one
left. Ingest does this at every takeover of a coordination partition (services/kmsync_ingest/publisher.py);
transform at the start of a replica with a stable instance id (services/kmsync_transform/left_open.py).

Only the partitions an open transaction holds now (kmsync_kafka.hanging.held_open) get a record: another
producer's transaction in progress there is unharmed (a marker ends only its own producer id's transaction), and
nothing is written anywhere else. The record (``key``, no value) is aborted, so no read_committed reader sees it;
or committed, for ingest's data topics, where the records left open may belong to a transaction the coordinator
had committed (services/kmsync_ingest/publisher.py explains which ends how).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import TopicPartition

from kmsync_kafka.producer import KafkaProducer, ProduceError, Record, await_delivery

log = logging.getLogger(__name__)

#: How many times ``end_left_open`` tries a commit that fails retriably.
COMMIT_TRIES = 5


async def end_left_open(producer: KafkaProducer, partitions: Sequence[TopicPartition], key: bytes,
                        within_seconds: float, *, commit: bool = False, commit_tries: int = COMMIT_TRIES) -> None:
    """On a started transactional producer (``init_transactions`` done): one transaction holding a record
    (``key``, no value) on each of ``partitions``, aborted, or committed with ``commit``. A commit makes what the
    producer id left open there visible (and the record: its readers must skip it); an abort drops it. Raises
    ProduceError or TimeoutError; the caller decides what then happens to the producer (its transaction may
    still be open).

    With ``commit``, any abort of this transaction (its own, or the one ``init_transactions`` makes when the id is
    started again after a failure) would end what was left open aborted too, so a commit that fails retriably (a
    slow broker just after its restart) is tried again on the same producer, ``commit_tries`` times in all
    (librdkafka allows calling commit_transaction again after a retriable error); if it still fails, an ERROR
    names the partitions whose records may be lost."""
    if not partitions:
        return
    producer.begin_transaction()
    records = [Record(tp.topic, None, key, tp.partition) for tp in partitions]
    delivered = await producer.send_many(records)
    if not commit:
        await asyncio.wait_for(await_delivery(delivered), within_seconds)
        await producer.abort_transaction(within_seconds)
        return
    try:
        await _commit(producer, within_seconds, commit_tries)
        await asyncio.wait_for(await_delivery(delivered), within_seconds)  # resolved by the commit's flush
    except (ProduceError, TimeoutError) as exc:
        log.error("could not commit the end of what a broker crash left open on %s (%r): when this transactional id "
                  "starts again, that transaction ends aborted, and the records left open there are lost if their "
                  "transaction had been committed; run `kmsync reconcile --fix` for the events on them",
                  ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions), exc)
        raise


async def _commit(producer: KafkaProducer, within_seconds: float, tries: int) -> None:
    for attempt in range(1, tries + 1):
        try:
            await producer.commit_transaction(within_seconds)
            return
        except ProduceError as exc:
            if not exc.retriable or exc.fatal or attempt == tries:
                raise
            log.warning("committing the end of a left-open transaction failed (try %d of %d), trying again: %s",
                        attempt, tries, exc)
