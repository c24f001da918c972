"""Transform says when a hanging transaction stalls one of its input partitions for good (hanging_check.py).

A transaction a broker crash left open on a kaltura.* partition, unknown to its coordinator (docs/reference/
streaming.md §3.1), stops transform's read_committed consumer there for good; quixstreams says nothing and the lag
gauge counts only up to the last stable offset. Built here as a crash leaves it (kmsync_testing.hanging), under the
id of an ingest that is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kmsync_contracts.topics import ATTENDEE_STATUS
from kmsync_kafka import ensure_topics, topic_name
from kmsync_testing.hanging import Put, leave_hanging_transaction
from kmsync_testing.hanging import unverified_broker as broker_without_verification
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.routing import INPUTS

from .test_integration import transform_process

PREFIX = "inputs."
HANGING, COMMITTED = 3, 1


@pytest.fixture
async def unverified_broker(tmp_path: Path) -> AsyncIterator[KafkaBroker]:
    """A broker of its own on which a test can build what a crash left (kmsync_testing.hanging)."""
    async with broker_without_verification(tmp_path / "kafka") as broker:
        yield broker


async def _metrics(port: int) -> str:
    async with httpx.AsyncClient() as http:
        try:
            return (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.TransportError:
            return ""


@pytest.mark.kafka
async def test_transform_reports_a_hanging_transaction_on_its_input_by_log_and_metric(
    unverified_broker: KafkaBroker, tmp_path: Path
) -> None:
    bootstrap = unverified_broker.bootstrap
    await ensure_topics(bootstrap, INPUTS, PREFIX)
    statuses = topic_name(ATTENDEE_STATUS, PREFIX)
    await leave_hanging_transaction(bootstrap, "ingest-gone-0", [Put(statuses, COMMITTED, b"k", b"not a status")],
                                    [Put(statuses, HANGING, b"k", b"not a status")])
    series = f'kmsync_transform_hanging_transaction{{partition="{HANGING}",topic="{statuses}"}} 1.0'
    with transform_process(unverified_broker, PREFIX, tmp_path, "inputs", KMSYNC_TRANSFORM_ENGINE="quix",
                           KMSYNC_TRANSFORM_HANGING_CHECK_SECONDS="0.3",
                           KMSYNC_TRANSFORM_HANGING_AFTER_SECONDS="2") as running:
        async def reported() -> bool:
            return series in await _metrics(running.port)

        await wait_for(reported, within=90, what="the hanging-transaction gauge of the held input partition")
        metrics = await _metrics(running.port)
        # The partition whose transaction committed is not held: no series at all.
        assert f'partition="{COMMITTED}",topic="{statuses}"' not in metrics
        errors = [line for line in running.log.read_text().splitlines() if "ERROR" in line and "hanging" in line]
        assert len(errors) == 1, errors
        assert f"{statuses}[{HANGING}] last stable offset 0 unmoved behind log end 1" in errors[0]
