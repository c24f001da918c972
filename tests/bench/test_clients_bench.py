"""`python -m kmsync_bench.clients`: each Kafka client library moves the same records both ways
kmsync uses Kafka (idempotent produce + commit; one transaction with the offsets), each in a process
of its own, on a real broker, and the table reports every variant."""

from __future__ import annotations

import asyncio

from kmsync_bench import clients
from kmsync_testing.kafka_broker import KafkaBroker


def test_every_client_and_mode_moves_the_records_and_reports_its_cpu(kafka_broker: KafkaBroker) -> None:
    runs = asyncio.run(clients.compare(kafka_broker.bootstrap, kafka_broker.process.pid, 300, 1))
    assert [(r.library, r.mode) for r in runs] == clients.VARIANTS
    for r in runs:
        assert r.run.records >= 300, r
        assert r.run.client_cpu_seconds > 0 and r.run.seconds > 0, r
    rows = clients.table(runs).splitlines()[2:]
    assert [row.split(" | ")[:2] for row in rows] == [[f"| {lib}", mode] for lib, mode in clients.VARIANTS]
