"""Kafka pieces shared by services and tests: the local broker launcher and client helpers."""

from kmsync_kafka.clients import ensure_topics, manual_commit_consumer, reliable_producer, topic_name
from kmsync_kafka.launcher import BrokerError, KafkaBroker, ensure_jars, start_broker

__all__ = [
    "BrokerError",
    "KafkaBroker",
    "ensure_jars",
    "ensure_topics",
    "manual_commit_consumer",
    "reliable_producer",
    "start_broker",
    "topic_name",
]
