"""A transform replica with a stable instance id ends what its previous incarnation left open, at start.

quixstreams gives each process a random transactional id unless one is configured, so a transaction a broker crash
left open on transform's topics, unknown to its coordinator (a "hanging" transaction, docs/reference/streaming.md
§3.1), is ended by nobody once that process exits: every read_committed reader of the partition (the sink on
marketo.ops.v1, the next owner of the polls' repartition topic, a state recovery from a changelog) stops at it for
good. kmsync_bench.hanging_txn reproduced exactly that on marketo.ops.v1, transform.decisions.v1 and the
repartition topic, every time from a transform that exited at the broker's restart.

With ``KMSYNC_TRANSFORM_INSTANCE_ID`` set (one per replica, stable across its restarts: the pod's name, the chaos
harness's process name), the replica's transactional id is ``<prefix><app id>-<instance id>``. Before quixstreams
starts its producer, ``end_previous_incarnation`` starts one under that id (``init_transactions``: fences the
previous holder and aborts the transaction its coordinator knows), then ends any transaction that still holds a
partition of transform's output topics, state changelogs or repartition topic with an aborted transaction of the
same producer id (kmsync_kafka.left_open). A held partition whose last stable offset moves within a few commit
intervals is another replica's live checkpoint (INFO, left alone); after the abort, the partitions it freed are
named at WARNING with what that may have dropped (an abort of a transaction its coordinator had committed drops
that checkpoint's records there while its input offsets stay committed: the README's known limit), the ones still
held at INFO. A partition whose offsets cannot be read is left out (WARNING), not a failed start. Empty (the
default): quixstreams' random id, nothing ended; two live replicas must never share an instance id (they would fence
each other in a loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from kmsync_contracts.topics import MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DECISIONS, TRANSFORM_DLQ
from kmsync_kafka.clients import topic_name
from kmsync_kafka.hanging import OffsetReader, Offsets, read_readable
from kmsync_kafka.left_open import end_left_open
from kmsync_kafka.producer import KafkaProducer, producer_config
from kmsync_transform.settings import TransformSettings

log = logging.getLogger("kmsync.transform")

#: The key of the records of the aborted transaction that ends a left-open one.
LEFT_OPEN_KEY = b"kmsync-transform:abort-left-open"
#: How long each step (connect, fence, read offsets, the aborted transaction) may take.
STEP_TIMEOUT_SECONDS = 30.0
#: How long a held partition's LSO is watched before the abort: a live replica's checkpoint moves it by then (at least
#: four commit intervals), what a previous incarnation left open never does.
SETTLE_SECONDS = 2.0
#: How often a held partition's offsets are read again while waiting for its LSO to move.
POLL_SECONDS = 0.2


def transactional_id(settings: TransformSettings) -> str | None:
    """The replica's transactional id (None: quixstreams' random one)."""
    if not settings.transform_instance_id:
        return None
    return f"{settings.topic_prefix}{settings.transform_app_id}-{settings.transform_instance_id}"


def transform_topics_in(settings: TransformSettings, cluster: set[str]) -> list[str]:
    """Every topic transform's transactions write, of the cluster's ``cluster`` topics: its outputs, and
    quixstreams' changelog and repartition topics of its consumer group (``changelog__<group>--…``,
    ``repartition__<group>--…``). The one list: the start-up end (here) and the periodic check (hanging_check.py)."""
    group = f"{settings.topic_prefix}{settings.transform_app_id}"
    internal = sorted(t for t in cluster if t.startswith((f"changelog__{group}--", f"repartition__{group}--")))
    outputs = [topic_name(spec, settings.topic_prefix)
               for spec in (MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DLQ, TRANSFORM_DECISIONS)]
    return outputs + internal


async def transform_topics(settings: TransformSettings) -> list[str]:
    """``transform_topics_in`` the cluster's topics now."""
    reader = OffsetReader(settings.kafka_bootstrap)
    await reader.start()
    try:
        return transform_topics_in(settings, await reader.topics())
    finally:
        await reader.stop()


async def end_previous_incarnation(settings: TransformSettings) -> list[TopicPartition]:
    """Fence the id's previous holder and end any transaction still holding one of transform's partitions (logged);
    returns the partitions it wrote its aborted transaction to ([] without an instance id). A partition whose offsets
    cannot be read is left out (logged), not a failed start. Raises ProduceError, TimeoutError or KafkaError: the
    replica does not start then (its process exits and is restarted)."""
    tx_id = transactional_id(settings)
    if tx_id is None:
        return []
    timeout_ms = settings.transform_transaction_timeout_ms
    producer = KafkaProducer(producer_config(settings.kafka_bootstrap, **{
        "transactional.id": tx_id, "transaction.timeout.ms": timeout_ms,
        "message.timeout.ms": min(timeout_ms, 15_000)}))  # librdkafka: ≤ transaction.timeout.ms
    await producer.start(STEP_TIMEOUT_SECONDS)
    reader = OffsetReader(settings.kafka_bootstrap)
    try:
        await producer.init_transactions(STEP_TIMEOUT_SECONDS)
        async with asyncio.timeout(STEP_TIMEOUT_SECONDS):
            await reader.start()
            topics = transform_topics_in(settings, await reader.topics())
        held, unreadable = await read_readable(reader, topics, STEP_TIMEOUT_SECONDS)
        if unreadable:
            log.warning("%s: cannot read the offsets of %s: left out (what this id left open there, if anything, "
                        "stays; the hanging-transaction check reports it)", tx_id, _named(unreadable))
        left = await _not_live(tx_id, reader, {tp: seen for tp, seen in held.items() if seen.open}, settings)
        if not left:
            return []
        await end_left_open(producer, list(left), LEFT_OPEN_KEY, STEP_TIMEOUT_SECONDS)
        await _say_what_ended(tx_id, reader, left)
        return list(left)
    finally:
        await reader.stop()
        await producer.stop(0)


def _named(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps)


async def _moved(reader: OffsetReader, held: Mapping[TopicPartition, Offsets], within: float) -> set[TopicPartition]:
    """The partitions of ``held`` whose LSO moves from where it was within ``within`` seconds (read every
    ``POLL_SECONDS``; returns as soon as all moved). An unreadable read counts as no move."""
    moved: set[TopicPartition] = set()
    deadline = time.monotonic() + within
    while len(moved) < len(held) and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        with contextlib.suppress(KafkaError, TimeoutError):
            async with asyncio.timeout(max(deadline - time.monotonic(), POLL_SECONDS)):
                now = await reader.offsets([tp for tp in held if tp not in moved])
            moved |= {tp for tp, seen in now.items() if seen.stable != held[tp].stable}
    return moved


async def _not_live(tx_id: str, reader: OffsetReader, held: dict[TopicPartition, Offsets],
                    settings: TransformSettings) -> dict[TopicPartition, Offsets]:
    """Of the partitions an open transaction holds, the ones whose LSO does not move for a few commit intervals: a
    live replica's checkpoint commits and moves it (INFO: nothing of this id's there), a left-open one never does."""
    if not held:
        log.info("%s: no partition of transform's topics is held by an open transaction; nothing to end", tx_id)
        return {}
    live = await _moved(reader, held, max(SETTLE_SECONDS, 4 * settings.transform_commit_interval_ms / 1000))
    if live:
        log.info("%s: %s held by another replica's live transaction (its last stable offset moves): nothing of this "
                 "id's there", tx_id, _named(live))
    return {tp: seen for tp, seen in held.items() if tp not in live}


async def _say_what_ended(tx_id: str, reader: OffsetReader, left: Mapping[TopicPartition, Offsets]) -> None:
    """After the aborted transaction: WARNING for the partitions it freed (what this id left open: ended, aborted),
    INFO for the ones still held (another producer's transaction: a live replica's long checkpoint)."""
    ended = await _moved(reader, left, STEP_TIMEOUT_SECONDS / 3)
    if ended:
        log.warning("%s: ended, aborted, the transaction a previous incarnation of this id left open on %s. If its "
                    "coordinator had committed it (CompleteCommit, a partition missing its marker: seen on ingest in "
                    "session 10), that checkpoint's records there (operations, changelog "
                    "entries) are dropped while its input offsets stay committed: check the events it carried with "
                    "`kmsync reconcile --event <name>` and re-drive with `kmsync reconcile --event <name> --fix` "
                    "(services/kmsync_transform/README.md, 'Instance id')", tx_id,
                    ", ".join(f"{tp.topic}[{tp.partition}] from offset {left[tp].stable} (log end {left[tp].end})"
                              for tp in ended))
    still = [tp for tp in left if tp not in ended]
    if still:
        log.info("%s: %s still held after this id's abort: another producer's transaction (a live replica's long "
                 "checkpoint; if it stays, the hanging-transaction check reports it)", tx_id, _named(still))
