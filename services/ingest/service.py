"""The ingest service: one object that owns Kafka, the watermarks, the pullers and the handlers.

The HTTP layer (http_app) and the CLIs only call this; tests start and stop it in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ingest.errors import BadInput
from ingest.job_ids import HandledJobs
from ingest.metrics import IngestMetrics
from ingest.notifications import Notification
from ingest.publisher import KafkaUnavailable, Publisher
from ingest.puller import EventPuller, PullResult, PullTiming
from ingest.settings import IngestSettings
from ingest.source import KalturaSource
from ingest.watermarks import WatermarkStore
from kmsync_config import EventConfig, TenantsConfig

log = logging.getLogger(__name__)

#: Builds the Kaltura source of one configured event (a real client, or the sandbox's in tests).
SourceFactory = Callable[[EventConfig], KalturaSource]


class KalturaUnavailable(RuntimeError):
    """A pull failed on the Kaltura side (network, KalturaAPIException)."""


@dataclass
class NotificationOutcome:
    status: str
    job_id: str
    results: list[PullResult] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "eventNotificationJobId": self.job_id,
            "pulled": [
                {"stream": r.stream, "scope": r.scope, "read": r.read, "produced": r.produced,
                 "dead_lettered": r.dead_lettered}
                for r in self.results
            ],
        }


class IngestService:
    def __init__(
        self,
        settings: IngestSettings,
        tenants: TenantsConfig,
        source_factory: SourceFactory,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.tenants = tenants
        self.metrics = metrics or IngestMetrics()
        self.publisher = Publisher(
            settings.kafka_bootstrap, settings.topic_prefix, self.metrics,
            ack_timeout_seconds=settings.kafka_ack_timeout_seconds, batch_size=settings.produce_batch_size,
            transactional_id=(
                f"{settings.transactional_id}/{settings.topic_prefix}".rstrip("/")
                if settings.transactional_id else None
            ),
        )
        self.watermarks = WatermarkStore(self.publisher)
        self.handled_jobs = HandledJobs(settings.notification_dedupe_capacity)
        self._source_factory = source_factory
        self.pullers: dict[tuple[int, int], EventPuller] = {}
        self._scheduler: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()
        self.started = False

    # ------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.publisher.start()
        try:
            await self.watermarks.load()
            timing = PullTiming(
                late_data_window=timedelta(seconds=self.settings.late_data_window_seconds),
                session_repull=timedelta(seconds=self.settings.session_repull_seconds),
                max_ids_per_mark=self.settings.watermark_max_ids,
            )
            for event in self.tenants.events:
                source = self._source_factory(event)
                self.pullers[(event.partner_id, event.virtual_event_id)] = EventPuller(
                    event, source, self.publisher, self.watermarks, self.metrics, timing,
                )
        except BaseException:
            await self.stop()
            raise
        if self.settings.pull_enabled:
            self._scheduler = asyncio.create_task(self._schedule(), name="ingest-pull-scheduler")
        self.started = True
        log.info("ingest started: %d event(s), %d watermark(s) restored",
                 len(self.pullers), len(list(self.watermarks)))

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop scheduling. Pulls in flight finish the page they are on, so what they produced is
        covered by a stored watermark (a restart then neither skips nor repeats); cancelled only
        after ``grace_seconds``."""
        self.started = False
        self._stopping = True
        for puller in self.pullers.values():
            puller.stopping = True
        self._wake.set()
        tasks = list(self._background)
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        self._scheduler = None
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        # Pulls started by callers (tests, tools) too: every page produced gets its watermark.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_seconds):
                for puller in self.pullers.values():
                    await puller.idle()
        for puller in self.pullers.values():
            with contextlib.suppress(Exception):
                await puller.source.close()
        await self.publisher.stop()

    async def ready(self) -> bool:
        return self.started and self.watermarks.loaded and await self.publisher.probe()

    def wake(self) -> None:
        """Run the scheduled pulls now instead of at the next interval."""
        self._wake.set()

    async def _schedule(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self.pull_everything()
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.pull_interval_seconds)

    async def pull_everything(self) -> list[PullResult]:
        """One round of every event's pulls; failures are logged and counted, never raised."""
        results: list[PullResult] = []
        for key, puller in self.pullers.items():
            try:
                results += await puller.pull_all()
            except KafkaUnavailable as exc:
                log.warning("pull of event %s stopped, Kafka unavailable: %s", key, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.errors.labels("kaltura").inc()
                log.warning("pull of event %s failed: %r", key, exc)
        return results

    # -------------------------------------------------------------------------- notifications
    def secret_for(self, partner_id: int) -> str:
        partner = self.tenants.kaltura_partners.get(partner_id)
        if partner is None:
            raise BadInput(403, "unknown partner", [f"partner_id: partner {partner_id} is not configured"])
        ref = partner.notification_secret or partner.admin_secret
        return ref.resolve().get_secret_value()

    def matching(self, note: Notification) -> list[EventPuller]:
        out = []
        for (pid, vid), puller in self.pullers.items():
            if note.partner_id is not None and pid != note.partner_id:
                continue
            if note.virtual_event_id is not None and vid != note.virtual_event_id:
                continue
            if note.app_guid and puller.event.app_guid and puller.event.app_guid != note.app_guid:
                continue
            out.append(puller)
        return out

    async def handle_notification(self, note: Notification) -> NotificationOutcome:
        """Run the pulls a verified notification asks for; returns once Kafka acknowledged them."""
        if note.job_id in self.handled_jobs:
            self.metrics.notifications.labels("duplicate").inc()
            return NotificationOutcome("duplicate", note.job_id)
        requested = time.monotonic()
        pullers = self.matching(note)
        if note.kind == "unknown" or not pullers:
            self.handled_jobs.remember(note.job_id)
            self.metrics.notifications.labels("ignored").inc()
            return NotificationOutcome("ignored", note.job_id)
        # The pull runs as its own task: a slow pull is never cancelled half-acknowledged; the
        # request answers 503 and Kaltura's retry finds the work done (or waits for it).
        task = asyncio.create_task(self._triggered_pulls(note, pullers, requested))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        done, _ = await asyncio.wait({task}, timeout=self.settings.notification_pull_timeout_seconds)
        if not done:
            task.add_done_callback(_consume_exception)
            self.metrics.notifications.labels("timeout").inc()
            raise KalturaUnavailable("the triggered pull did not finish in time; it goes on in the background")
        try:
            results = task.result()
        except KafkaUnavailable:
            self.metrics.notifications.labels("kafka_unavailable").inc()
            raise
        except Exception as exc:
            self.metrics.notifications.labels("pull_failed").inc()
            self.metrics.errors.labels("kaltura").inc()
            raise KalturaUnavailable(f"the triggered pull failed: {exc!r}") from exc
        self.handled_jobs.remember(note.job_id)
        self.metrics.notifications.labels("accepted").inc()
        return NotificationOutcome("accepted", note.job_id, results)

    @staticmethod
    async def _triggered_pulls(
        note: Notification, pullers: list[EventPuller], requested: float
    ) -> list[PullResult]:
        results: list[PullResult] = []
        for puller in pullers:
            await puller.learn_session(note)
            if note.wants_statuses and not puller.covers_profile(note):
                results.append(await puller.pull_statuses(requested_at=requested))
            if note.kind == "virtual_event":
                results += await puller.pull_sessions(requested_at=requested)
            if note.entry_id is not None:
                results += await puller.pull_sessions(entry_id=note.entry_id, requested_at=requested)
        return results


def _consume_exception(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a background pull failed: %r", task.exception())
