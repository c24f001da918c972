"""Kafka client helpers every service uses: topics by catalogue, safe producers, consumers.

Topic names come from kmsync_contracts.topics; a deployment (or a test) may put all of them under
a prefix so several pipelines share one broker without touching each other's data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from kmsync_contracts.topics import CO_PARTITIONED, TopicSpec, co_partition_problems
from kmsync_kafka.lag import IsolationLevel


def topic_name(spec: TopicSpec, prefix: str = "") -> str:
    return f"{prefix}{spec.name}"


class TopicLayoutError(ValueError):
    """Existing topics laid out in a way kmsync cannot work with (co-partitioned topics of different sizes):
    a deployment's configuration error, so every command exits 2 with the message (README "Exit codes")."""


async def ensure_topics(
    bootstrap: str, specs: Iterable[TopicSpec], prefix: str = "", partitions: int | None = None
) -> list[str]:
    """Create the catalogue's topics (idempotent). `partitions` overrides the catalogue (tests). A topic of a
    CO_PARTITIONED group is created with the partitions its existing partner has; a group whose existing
    topics differ raises TopicLayoutError (co_partition_problems says which and what to do)."""
    specs = list(specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:  # closed even when its start fails or is cancelled (Publisher.start bounds this call)
        await admin.start()
        existing = set(await admin.list_topics())
        groups = [g for g in CO_PARTITIONED if any(s in g for s in specs)]
        grouped = {topic_name(t, prefix) for g in groups for t in g}
        counts = await _partition_counts(admin, sorted(grouped & existing))
        new = [
            NewTopic(topic_name(s, prefix), partitions or _partner_count(s, counts, prefix) or s.partitions, 1,
                     topic_configs=s.config())
            for s in specs if topic_name(s, prefix) not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        if groups:
            now_there = grouped & (existing | {t.name for t in new})
            problems = co_partition_problems(await _partition_counts(admin, sorted(now_there)), prefix)
            if problems:
                raise TopicLayoutError("; ".join(problems))
        return [topic_name(s, prefix) for s in specs]
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partitions of each named topic that exists (names must exist: a metadata request may create a topic)."""
    if not names:
        return {}
    return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)
            if t["error_code"] == 0 and t["partitions"]}


def _partner_count(spec: TopicSpec, counts: dict[str, int], prefix: str) -> int | None:
    """The partition count of an existing topic ``spec`` must be co-partitioned with, if any."""
    for group in CO_PARTITIONED:
        if spec in group:
            for t in group:
                if topic_name(t, prefix) in counts:
                    return counts[topic_name(t, prefix)]
    return None


def reliable_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """acks=all and idempotence: nothing is acknowledged that the broker has not stored once."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 1_000_000,
        "request_timeout_ms": 15000,
    }
    settings.update(overrides)
    return AIOKafkaProducer(**settings)


#: What manual_commit_consumer reads: committed records only (aborted transactions never count).
DEFAULT_ISOLATION: IsolationLevel = "read_committed"


def manual_commit_consumer(bootstrap: str, group_id: str, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer that never commits on its own: the caller commits what has an outcome."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": DEFAULT_ISOLATION,
    }
    settings.update(overrides)
    return AIOKafkaConsumer(*topics, **settings)
