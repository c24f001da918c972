"""Shared fixtures. The Kafka broker is real Apache Kafka (KRaft) started by kmsync_testing.kafka_broker."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kmsync_testing.hanging import unverified_broker as broker_without_verification
from kmsync_testing.kafka_broker import KafkaBroker, start_broker

# The Marketo sandbox runs a write before it answers, or not at all: unlike Marketo (UNCONFIRMED,
# docs/reference/marketo-api.md §10.4) nothing of it is still in process after the answer, so a replay of a
# lead write needs no delay here. Tests of a write applied late (the sandbox's apply_after_seconds fault) set the
# delay themselves (tests/marketo_client/test_ambiguous_replay.py); the chaos run's services inherit this.
os.environ.setdefault("KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS", "0")


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


@pytest.fixture
async def unverified_broker(tmp_path: Path) -> AsyncIterator[KafkaBroker]:
    """A broker of its own on which a test can build what a crash left (kmsync_testing.hanging)."""
    async with broker_without_verification(tmp_path / "kafka") as broker:
        yield broker
