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
same producer id (kmsync_kafka.left_open). Empty (the default): quixstreams' random id, nothing ended; two live
replicas must never share an instance id (they would fence each other in a loop).
"""

from __future__ import annotations

import logging

from aiokafka import TopicPartition

from kmsync_contracts.topics import MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DECISIONS, TRANSFORM_DLQ
from kmsync_kafka.clients import topic_name
from kmsync_kafka.hanging import OffsetReader, held_open
from kmsync_kafka.left_open import end_left_open
from kmsync_kafka.producer import KafkaProducer, producer_config
from kmsync_transform.settings import TransformSettings

log = logging.getLogger("kmsync.transform")

#: The key of the records of the aborted transaction that ends a left-open one.
LEFT_OPEN_KEY = b"kmsync-transform:abort-left-open"
#: How long each step (connect, fence, read offsets, the aborted transaction) may take.
STEP_TIMEOUT_SECONDS = 30.0


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
    returns those partitions ([] without an instance id). Raises ProduceError, TimeoutError or KafkaError: the
    replica does not start then (its process exits and is restarted)."""
    tx_id = transactional_id(settings)
    if tx_id is None:
        return []
    timeout_ms = settings.transform_transaction_timeout_ms
    producer = KafkaProducer(producer_config(settings.kafka_bootstrap, **{
        "transactional.id": tx_id, "transaction.timeout.ms": timeout_ms,
        "message.timeout.ms": min(timeout_ms, 15_000)}))  # librdkafka: ≤ transaction.timeout.ms
    await producer.start(STEP_TIMEOUT_SECONDS)
    try:
        await producer.init_transactions(STEP_TIMEOUT_SECONDS)
        held = await held_open(settings.kafka_bootstrap, await transform_topics(settings), within=STEP_TIMEOUT_SECONDS)
        if not held:
            log.info("%s: no partition of transform's topics is held by an open transaction; nothing to end", tx_id)
        else:
            # Another replica's checkpoint in progress holds a partition too: a marker ends only this producer id's.
            log.warning("%s: an open transaction holds %s; ending any of this id's (a previous incarnation's) with an "
                        "aborted transaction", tx_id, ", ".join(f"{tp.topic}[{tp.partition}]" for tp in held))
        await end_left_open(producer, held, LEFT_OPEN_KEY, STEP_TIMEOUT_SECONDS)
        return held
    finally:
        await producer.stop(0)
