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

from kmsync_contracts.topics import TopicSpec
from kmsync_kafka.lag import IsolationLevel


def topic_name(spec: TopicSpec, prefix: str = "") -> str:
    return f"{prefix}{spec.name}"


async def ensure_topics(
    bootstrap: str, specs: Iterable[TopicSpec], prefix: str = "", partitions: int | None = None
) -> list[str]:
    """Create the catalogue's topics (idempotent). `partitions` overrides the catalogue (tests)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in specs if topic_name(s, prefix) not in existing]
        new = [
            NewTopic(topic_name(s, prefix), partitions or s.partitions, 1, topic_configs=s.config())
            for s in wanted
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return [topic_name(s, prefix) for s in specs]
    finally:
        await admin.close()


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
