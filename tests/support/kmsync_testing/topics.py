"""Read what a test's pipeline wrote: a topic of the catalogue, decoded by its contract."""

from __future__ import annotations

from typing import Any

from kmsync_contracts import decode
from kmsync_contracts.topics import TopicSpec
from kmsync_kafka import topic_name
from kmsync_kafka.reading import read_to_end


async def read_topic(bootstrap: str, spec: TopicSpec, prefix: str, within: float = 30.0) -> list[tuple[str | None, Any]]:
    """Every committed record of the catalogue topic `spec` (under `prefix`) from its beginning to its
    current end, as (key, decoded record) pairs in offset order per partition; the markers ingest commits to end
    a transaction a broker crash left open are left out (``read_to_end`` does that)."""
    records = await read_to_end(bootstrap, topic_name(spec, prefix), within=within)
    return [(m.key.decode() if m.key else None, decode(spec, m.value)) for m in records]
