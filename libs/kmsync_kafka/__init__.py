"""Kafka client helpers shared by every service: producers, consumers, topics, reading a topic to its end.

The local broker launcher used by tests and the demo lives in the test-support package
(`kmsync_testing.kafka_broker`), not here: a library every service imports carries no JVM launcher.
"""

from kmsync_kafka.clients import ensure_topics, manual_commit_consumer, reliable_producer, topic_name

__all__ = [
    "ensure_topics",
    "manual_commit_consumer",
    "reliable_producer",
    "topic_name",
]
