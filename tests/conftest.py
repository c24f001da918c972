"""Shared fixtures. The Kafka broker is real Apache Kafka (KRaft) started by kmsync_testing.kafka_broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kmsync_testing.kafka_broker import KafkaBroker, start_broker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker per test session, on fresh ports and a fresh data dir; stopped even on failure."""
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """Tests share the broker, so each one creates its own topics under a unique prefix."""
    return f"t{uuid.uuid4().hex[:10]}."
