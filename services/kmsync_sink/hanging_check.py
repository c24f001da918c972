"""The sink's watch for hanging transactions on what it reads (marketo.ops.v1 and its backfill lane).

A transaction a broker crash leaves open, unknown to its coordinator, holds every read_committed reader of its
partition for good (docs/reference/streaming.md §3.1). A transform replica with KMSYNC_TRANSFORM_INSTANCE_ID ends
what its previous run left when it starts again (services/kmsync_transform/left_open.py), but one left by a replica
that never comes back under its id (a pod replaced under a new name, or no instance id: quixstreams' random id per
process) is ended by nobody. The sink would stall on that partition with nothing saying why.
This module makes it visible: kmsync_kafka.hanging.HangingCheck on a task of its own (never in the consume loop),
an ERROR log per hanging partition, and two gauges per partition the alert ``KmsyncSinkHangingTransaction``
(deploy/prometheus/alerts.yml) watches. The operator's runbook: README.md,
"A partition stalled by a hanging transaction".
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Gauge

from kmsync_kafka.hanging import HangingCheck, HeldGauges
from kmsync_sink.settings import SinkSettings

RUNBOOK = "services/kmsync_sink/README.md, 'A partition stalled by a hanging transaction'"


def hanging_gauges(registry: CollectorRegistry) -> HeldGauges:
    """Per partition of the sink's inputs (bounded: topic, partition): how long its LSO has been held unmoved
    behind its log end, and whether that is longer than ``sink_hanging_after_seconds`` (a hanging transaction)."""
    held = Gauge("kmsync_sink_transaction_held_seconds",
                 "How long the partition's last stable offset has stayed unmoved behind its log end "
                 "(an open transaction holds it; 0: none)", ["topic", "partition"], registry=registry)
    hanging = Gauge("kmsync_sink_hanging_transaction",
                    "1 while a transaction has held the partition for longer than any live one can "
                    "(sink_hanging_after_seconds): read_committed readers are stalled there",
                    ["topic", "partition"], registry=registry)
    return HeldGauges(held, hanging)


def start_hanging_check(settings: SinkSettings, topics: list[str], registry: CollectorRegistry,
                        stop: asyncio.Event) -> asyncio.Task[None] | None:
    """The check on its own task until ``stop`` (None when ``sink_hanging_check_seconds`` is 0: off)."""
    if settings.sink_hanging_check_seconds <= 0:
        return None
    check = HangingCheck(settings.kafka_bootstrap, topics, after_seconds=settings.sink_hanging_after_seconds,
                         interval=settings.sink_hanging_check_seconds, report=hanging_gauges(registry), runbook=RUNBOOK)
    return asyncio.create_task(check.run(stop), name="sink-hanging-check")
