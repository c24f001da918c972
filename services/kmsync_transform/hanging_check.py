"""Transform's watch for hanging transactions on the topics it reads and writes, which nobody else watches.

A transaction a broker crash leaves open, unknown to its coordinator, holds every read_committed reader of its
partition for good (docs/reference/streaming.md §3.1). On a kaltura.* partition that is transform, whose consumer
lives inside quixstreams: it would stop at the partition with nothing saying why (its lag gauge counts up to the
last stable offset). Ingest ends the ones of its own ids at a takeover; one left by an ingest that never takes
its coordination partition over again stays. Transform's own topics (left_open.transform_topics_in: marketo.ops*,
transform.dlq.v1, transform.decisions.v1, quixstreams' changelog and repartition topics) get one whenever a replica
does not come back under its instance id (a pod replaced under a new name; no instance id): the next owner of a
repartition partition stops there, a state recovery from a changelog stops at its LSO, the decisions and DLQ
readers stall. This check, kmsync_kafka.hanging.HangingCheck on a thread of its own (its own event loop, next to
quixstreams' main thread, never in the processing loop), watches both (the topic list read again at each check, so
changelogs created later are in), logs each at ERROR and keeps two gauges per partition. Runbook:
services/kmsync_sink/README.md, "A partition stalled by a hanging transaction" (the same steps, on the held
partition).
"""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import CollectorRegistry, Gauge

from kmsync_kafka.clients import topic_name
from kmsync_kafka.hanging import HangingCheck, HeldGauges, TopicChoice
from kmsync_transform.left_open import transform_topics_in
from kmsync_transform.routing import INPUTS
from kmsync_transform.settings import TransformSettings

RUNBOOK = "services/kmsync_sink/README.md, 'A partition stalled by a hanging transaction'"


def hanging_gauges(registry: CollectorRegistry) -> HeldGauges:
    held = Gauge("kmsync_transform_transaction_held_seconds",
                 "How long the partition's (transform's inputs, outputs, changelogs, repartition topic) last stable "
                 "offset has stayed unmoved behind its log end (an open transaction holds it; 0: none)",
                 ["topic", "partition"], registry=registry)
    hanging = Gauge("kmsync_transform_hanging_transaction",
                    "1 while a transaction has held the partition for longer than any live one can "
                    "(transform_hanging_after_seconds): no read_committed reader reads past it",
                    ["topic", "partition"], registry=registry)
    return HeldGauges(held, hanging)


def watched_topics(settings: TransformSettings) -> TopicChoice:
    """Transform's inputs, then every topic its transactions write (left_open.transform_topics_in)."""
    inputs = [topic_name(spec, settings.topic_prefix) for spec in INPUTS]

    def choose(cluster: set[str]) -> list[str]:
        return inputs + transform_topics_in(settings, cluster)

    return choose


class HangingCheckThread:
    """The check on a daemon thread with its own event loop: ``start`` it, ``stop`` it (joins the thread)."""

    def __init__(self, settings: TransformSettings, registry: CollectorRegistry) -> None:
        self.check = HangingCheck(settings.kafka_bootstrap, watched_topics(settings),
                                  after_seconds=settings.transform_hanging_after_seconds,
                                  interval=settings.transform_hanging_check_seconds,
                                  report=hanging_gauges(registry), runbook=RUNBOOK)
        self.enabled = settings.transform_hanging_check_seconds > 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="transform-hanging-check", daemon=True)

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await self.check.run(self._stop)

        asyncio.run(main())

    def stop(self, within_seconds: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(within_seconds)
