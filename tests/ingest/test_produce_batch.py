"""Ingest's produce batches (issue #22, session 8): librdkafka sends one produce request per partition of a
batch (docs/reference/streaming.md §3.1), so the default batch is 2,000 records, not 500: a 10,000-row upload
over the six Kaltura-topic partitions costs the broker 30 produce requests instead of 120."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from pydantic import BaseModel

from kmsync_contracts.topics import SESSION_ENGAGEMENT
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.publisher import Outgoing, Publisher
from kmsync_ingest.settings import IngestSettings


class _Row(BaseModel):
    n: int


def test_an_upload_is_produced_in_batches_of_the_default_2000(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KMSYNC_PRODUCE_BATCH_SIZE", raising=False)
    settings = IngestSettings()
    assert settings.produce_batch_size == 2000
    publisher = Publisher("127.0.0.1:9", "", IngestMetrics(), batch_size=settings.produce_batch_size)
    batches: list[int] = []

    async def send_batch(items: Sequence[Outgoing]) -> None:
        batches.append(len(items))

    monkeypatch.setattr(publisher, "_send_batch", send_batch)
    items = [Outgoing(SESSION_ENGAGEMENT, f"k{i}", _Row(n=i), "engagement") for i in range(10_000)]
    asyncio.run(publisher.send(items))
    assert batches == [2000] * 5
