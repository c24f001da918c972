"""The ingest service: one object that owns Kafka, the watermarks, the pullers and the handlers.

The HTTP layer (http_app) and the CLIs only call this; tests start and stop it in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kmsync_common.clock import SystemClock
from kmsync_common.errors import DependencyUnavailable
from kmsync_config import EventConfig, TenantsConfig
from kmsync_contracts.topics import INGEST_PULL_OWNERS, PullTrigger
from kmsync_ingest.boundary import Overlap
from kmsync_ingest.coordination import PullCoordinator
from kmsync_ingest.errors import BadInput
from kmsync_ingest.job_ids import HandledJobs
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.notifications import Notification, forwarded_fields
from kmsync_ingest.ownership import event_key, owner_partition, partition_transactional_id
from kmsync_ingest.publisher import KafkaUnavailable, Outgoing, Publisher
from kmsync_ingest.puller import EventPuller, PullResult, PullTiming
from kmsync_ingest.settings import IngestSettings
from kmsync_ingest.source import KalturaSource
from kmsync_ingest.watermarks import WatermarkStore

log = logging.getLogger(__name__)

#: Builds the Kaltura source of one configured event (a real client, or the sandbox's in tests).
SourceFactory = Callable[[EventConfig], KalturaSource]


class KalturaUnavailable(DependencyUnavailable):
    """A pull failed on the Kaltura side (network, KalturaAPIException)."""


@dataclass
class NotificationOutcome:
    status: str
    job_id: str
    results: list[PullResult] = field(default_factory=list)
    #: Events whose pulls another replica owns: the notification went to them (ingest.pull-owners.v1).
    forwarded: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "eventNotificationJobId": self.job_id,
            "pulled": [
                {"stream": r.stream, "scope": r.scope, "read": r.read, "produced": r.produced,
                 "dead_lettered": r.dead_lettered}
                for r in self.results
            ],
        }
        if self.forwarded:
            body["forwarded"] = self.forwarded
        return body


@dataclass
class OwnedPartition:
    """A coordination partition this replica owns: its transactional publisher and its pullers."""

    partition: int
    publisher: Publisher | None = None
    pullers: dict[tuple[int, int], EventPuller] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    renewing: asyncio.Lock = field(default_factory=asyncio.Lock)


class NotOwner(RuntimeError):
    """A notification for events another replica pulls, with KMSYNC_NOT_OWNER_NOTIFICATIONS=retry."""


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
        # Uploads and forwarded triggers; pulls write through one transactional publisher per
        # coordination partition (OwnedPartition.publisher).
        self.publisher = Publisher(
            settings.kafka_bootstrap, settings.topic_prefix, self.metrics,
            ack_timeout_seconds=settings.kafka_ack_timeout_seconds, batch_size=settings.produce_batch_size,
            coordination_partitions=settings.ingest_coordination_partitions,
        )
        self.clock = SystemClock()
        self.watermarks = WatermarkStore(self.publisher, clock=self.clock)
        self.handled_jobs = HandledJobs(settings.notification_dedupe_capacity)
        self._source_factory = source_factory
        self._timing = PullTiming(
            late_data_window=timedelta(seconds=settings.late_data_window_seconds),
            session_repull=timedelta(seconds=settings.session_repull_seconds),
            max_ids_per_mark=settings.watermark_max_ids,
            statuses_overlap=Overlap(timedelta(seconds=settings.statuses_overlap_seconds),
                                     settings.statuses_overlap_max_ids),
        )
        #: Partitions of ingest.pull-owners.v1 (read from the broker at start).
        self.partitions = settings.ingest_coordination_partitions
        self.owned: dict[int, OwnedPartition] = {}
        self.coordinator: PullCoordinator | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()
        self.started = False

    @property
    def pullers(self) -> dict[tuple[int, int], EventPuller]:
        """The pullers of the events this replica owns now (taken over and not being released)."""
        return {key: puller for owned in list(self.owned.values()) if owned.ready.is_set()
                for key, puller in owned.pullers.items() if not puller.stopping}

    def owner_of(self, partner_id: int, virtual_event_id: int) -> int:
        return owner_partition(partner_id, virtual_event_id, self.partitions)

    # ------------------------------------------------------------------------------ lifecycle
    async def start(self, wait_for_assignment: bool = True) -> None:
        """Connect, join the ingest group and (by default) wait until the group has assigned this
        replica its partitions (possibly none) and it took them over. ``kmsync ingest`` does not
        wait: it answers HTTP at once (notifications for events nobody owns yet are forwarded)."""
        await self.publisher.start()
        try:
            self.partitions = await self.publisher.partitions_of(INGEST_PULL_OWNERS)
            if self.partitions != self.settings.ingest_coordination_partitions:
                log.warning("%s has %d partitions (KMSYNC_INGEST_COORDINATION_PARTITIONS=%d): using %d",
                            INGEST_PULL_OWNERS.name, self.partitions, self.settings.ingest_coordination_partitions,
                            self.partitions)
            if self.settings.ingest_group:
                group = f"{self.settings.ingest_group}/{self.settings.topic_prefix}".rstrip("/")
                self.coordinator = PullCoordinator(
                    self.settings.kafka_bootstrap, self.settings.topic_prefix, group, self,
                    session_timeout_seconds=self.settings.ingest_session_timeout_seconds,
                    handover_timeout_seconds=self.settings.ingest_handover_timeout_seconds,
                    retry_seconds=float(self.settings.retry_after_seconds),
                )
                await self.coordinator.start()
                wait = self.settings.ingest_handover_timeout_seconds + self.settings.ingest_session_timeout_seconds
                if not wait_for_assignment:
                    wait = 0.0
                try:
                    if wait:
                        await asyncio.wait_for(self.coordinator.assigned.wait(), wait)
                except TimeoutError:
                    raise KafkaUnavailable(f"no partition assignment from the ingest group {group!r} "
                                           f"within {wait:g}s") from None
            else:
                log.info("KMSYNC_INGEST_GROUP is empty: this replica pulls nothing and forwards notifications")
            self.watermarks.loaded = True
        except BaseException:
            await self.stop()
            raise
        if self.settings.pull_enabled:
            self._scheduler = asyncio.create_task(self._schedule(), name="ingest-pull-scheduler")
        self.started = True
        log.info("ingest started: %d event(s) configured, %d owned, %d watermark(s) restored",
                 len(self.tenants.events), len(self.pullers), len(list(self.watermarks)))

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop scheduling. Pulls in flight finish the page they are on, so what they produced is
        covered by a stored watermark (a restart then neither skips nor repeats); cancelled only
        after ``grace_seconds``. Then the owned partitions are released and the group left, so the
        other replicas take the events over without waiting for a session timeout."""
        self.started = False
        self._stopping = True
        for owned in list(self.owned.values()):
            for puller in owned.pullers.values():
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
        # Pulls started by callers (tests, tools) too: every page produced gets its watermark. The group's consumer
        # and the producer are stopped even when that raises or this stop is cancelled.
        try:
            await self.release(set(self.owned), grace_seconds)
        finally:
            try:
                if self.coordinator is not None:
                    await self.coordinator.stop()
                    self.coordinator = None
            finally:
                await self.publisher.stop()

    # ------------------------------------------------------------------- partition handover
    async def take_over(self, partitions: set[int]) -> None:
        """Assigned: fence each partition's transactional id, reload its events' watermarks, then
        pull. Waits for the take-over up to the handover timeout; past it goes on in the background."""
        if self._stopping:
            return
        new = [p for p in sorted(partitions) if p not in self.owned]
        for p in new:
            owned = self.owned[p] = OwnedPartition(p)
            owned.task = asyncio.create_task(self._take_over(owned), name=f"ingest-take-over-p{p}")
        tasks = [t for p in new if (t := self.owned[p].task) is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.ingest_handover_timeout_seconds)
        self.wake()

    def _events_of(self, partition: int) -> list[EventConfig]:
        return [e for e in self.tenants.events if self.owner_of(e.partner_id, e.virtual_event_id) == partition]

    async def _fence_and_load(self, partition: int) -> Publisher:
        """Start the partition's transactional producer (fencing its previous holder and aborting
        its open transaction), then reload the partition's events' watermarks: the last the
        previous holder will ever write. Raises KafkaUnavailable.

        In this order on every takeover (first assignment, rebalance, renewal after a failed
        transaction): ``init_transactions`` returns once the broker has aborted a killed holder's open
        transaction (docs/reference/streaming.md §3.1; OBSERVED in tests/ingest/test_takeover_after_kill.py),
        so the read_committed load, which reads its end offsets after it, does not wait for that
        transaction's timeout (60 s). ``end_left_open`` ends what the fence cannot: a transaction of
        the id that a broker crash left open on a partition unknown to its coordinator, which no
        timeout ends."""
        keys = {(e.partner_id, e.virtual_event_id) for e in self._events_of(partition)}
        tx_id = partition_transactional_id(self.settings.transactional_id, self.settings.topic_prefix, partition)
        publisher = self.publisher.for_transactions(tx_id)
        try:
            await publisher.start_transactions()
            await publisher.end_left_open()
            if keys:
                await self.watermarks.load(keep=lambda pid, vid: (pid, vid) in keys)
        except BaseException:
            await publisher.stop()
            raise
        return publisher

    async def _take_over(self, owned: OwnedPartition) -> None:
        events = self._events_of(owned.partition)
        while True:
            try:
                publisher = await self._fence_and_load(owned.partition)
                break
            except KafkaUnavailable as exc:
                log.warning("taking over coordination partition %d failed, retrying: %s", owned.partition, exc)
                await asyncio.sleep(self.settings.retry_after_seconds)  # back-off before the next attempt
        owned.publisher = publisher
        for event in events:
            owned.pullers[(event.partner_id, event.virtual_event_id)] = EventPuller(
                event, self._source_factory(event), publisher, self.watermarks, self.metrics, self._timing, self.clock,
            )
        owned.ready.set()
        self.metrics.handovers.labels("taken").inc()
        self._count_owned()
        log.info("took over coordination partition %d: %d event(s) %s", owned.partition, len(events),
                 sorted(owned.pullers))

    async def _renew(self, owned: OwnedPartition) -> None:
        """After a failed transaction (Kafka trouble, or fenced by a replica that took the partition
        over while this one was paused): fence and reload again before pulling on, so a page is
        never committed on top of watermarks another replica has moved. Call outside any pull."""
        broken = owned.publisher
        if broken is None or not broken.broken:
            return
        async with owned.renewing:
            if owned.publisher is not broken:
                return  # renewed meanwhile
            for puller in owned.pullers.values():
                await puller.idle()
            publisher = await self._fence_and_load(owned.partition)
            owned.publisher = publisher
            for puller in owned.pullers.values():
                puller.publisher = publisher
            await broken.stop()
            log.info("coordination partition %d: transactional producer renewed, watermarks reloaded",
                     owned.partition)

    async def _renew_owners(self, pullers: list[EventPuller]) -> None:
        for partition in {self.owner_of(*p.ids) for p in pullers}:
            owned = self.owned.get(partition)
            if owned is not None:
                await self._renew(owned)

    async def release(self, partitions: set[int], grace_seconds: float | None = None) -> None:
        """Revoked: start no more pulls of these partitions' events, let the pages in flight
        commit with their watermarks, then drop the partition's transactional producer."""
        grace = self.settings.ingest_handover_timeout_seconds if grace_seconds is None else grace_seconds
        leaving = [self.owned[p] for p in sorted(partitions) if p in self.owned]
        for owned in leaving:
            for puller in owned.pullers.values():
                puller.stopping = True
            if owned.task is not None and not owned.task.done():
                owned.task.cancel()  # no take-over of a leaving partition goes on, whatever happens below
        # Each leaving partition leaves whole (its pages in flight settled, then its producer stopped), even when
        # another's leaving raises or is cancelled: the exit stack runs every callback and raises after the last.
        # One never stopped keeps its delivery thread and librdkafka client; one stopped before its pages settle
        # breaks "transaction settled, then producer stopped".
        try:
            async with contextlib.AsyncExitStack() as leaving_all:
                for owned in reversed(leaving):
                    leaving_all.push_async_callback(self._leave, owned, grace)
        finally:
            self._count_owned()

    async def _leave(self, owned: OwnedPartition, grace: float) -> None:
        """One leaving partition: quiesced, then dropped (once: nothing when it was dropped already)."""
        if self.owned.get(owned.partition) is not owned:
            return
        try:
            await self._quiesce(owned, grace)
        finally:
            await self._drop(owned)

    async def _quiesce(self, owned: OwnedPartition, grace: float) -> None:
        """A leaving partition's take-over cancelled, its pages in flight committed (up to ``grace`` seconds), its
        sources closed."""
        if owned.task is not None and not owned.task.done():
            owned.task.cancel()
        if owned.task is not None:
            # Waits for the cancelled take-over without taking its outcome; a cancellation of this caller still
            # propagates (a suppress of CancelledError around ``await owned.task`` would swallow it).
            await asyncio.wait([owned.task])
            if not owned.task.cancelled():
                owned.task.exception()  # retrieved (a failed take-over was logged where it failed), not re-raised
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                for puller in owned.pullers.values():
                    await puller.idle()
        for puller in owned.pullers.values():
            with contextlib.suppress(Exception):
                await puller.source.close()

    async def _drop(self, owned: OwnedPartition) -> None:
        """A leaving partition's transactional producer stopped and the partition forgotten (once: nothing when it
        was dropped already)."""
        if self.owned.get(owned.partition) is not owned:
            return
        try:
            if owned.publisher is not None:
                await owned.publisher.stop()
        finally:
            self.owned.pop(owned.partition, None)
        if owned.ready.is_set():
            self.metrics.handovers.labels("released").inc()
        log.info("released coordination partition %d", owned.partition)

    def _count_owned(self) -> None:
        ready = [o for o in self.owned.values() if o.ready.is_set()]
        self.metrics.owned_partitions.set(len(ready))
        self.metrics.owned_events.set(sum(len(o.pullers) for o in ready))

    # ------------------------------------------------------------------------------ schedule
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
        """One round of the owned events' pulls; failures are logged and counted, never raised."""
        results: list[PullResult] = []
        for key, puller in self.pullers.items():
            if puller.stopping:  # released since the round began
                continue
            try:
                await self._renew_owners([puller])
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

    def matching(self, note: Notification) -> list[EventConfig]:
        """The configured events a notification is about (owned here or not)."""
        out = []
        for event in self.tenants.events:
            if note.partner_id is not None and event.partner_id != note.partner_id:
                continue
            if note.virtual_event_id is not None and event.virtual_event_id != note.virtual_event_id:
                continue
            if note.app_guid and event.app_guid and event.app_guid != note.app_guid:
                continue
            out.append(event)
        return out

    async def handle_notification(self, note: Notification) -> NotificationOutcome:
        """Run the pulls a verified notification asks for; returns once Kafka acknowledged them.
        Events another replica owns get the notification forwarded through the coordination topic
        (acknowledged before this returns; the owner pulls), or NotOwner in "retry" mode."""
        if note.job_id in self.handled_jobs:
            self.metrics.notifications.labels("duplicate").inc()
            return NotificationOutcome("duplicate", note.job_id)
        requested = self.clock.monotonic()
        events = self.matching(note)
        if note.kind == "unknown" or not events:
            self.handled_jobs.remember(note.job_id)
            self.metrics.notifications.labels("ignored").inc()
            return NotificationOutcome("ignored", note.job_id)
        owned = self.pullers
        pullers = [owned[k] for e in events if (k := (e.partner_id, e.virtual_event_id)) in owned]
        others = [e for e in events if (e.partner_id, e.virtual_event_id) not in owned]
        if others and self.settings.not_owner_notifications == "retry" and not pullers:
            self.metrics.notifications.labels("not_owner").inc()
            raise NotOwner(f"another replica owns the pulls of event(s) {_keys(others)}")
        results: list[PullResult] = []
        if pullers:
            try:
                await self._renew_owners(pullers)
            except KafkaUnavailable:
                self.metrics.notifications.labels("kafka_unavailable").inc()
                raise
            results = await self._run_triggered(note, pullers, requested)
            # Released while pulling (a rebalance): the new owner must still run the pull.
            others += [p.event for p in pullers if p.stopping]
        if others:
            if self.settings.not_owner_notifications == "retry":
                self.metrics.notifications.labels("not_owner").inc()
                raise NotOwner(f"another replica owns the pulls of event(s) {_keys(others)}")
            try:
                await self.forward(note, others)
            except KafkaUnavailable:
                self.metrics.notifications.labels("kafka_unavailable").inc()
                raise
        self.handled_jobs.remember(note.job_id)
        for p in pullers:
            if not p.stopping:
                self.handled_jobs.remember(_trigger_key(note.job_id, p.event.partner_id, p.event.virtual_event_id))
        self.metrics.notifications.labels("forwarded" if others and not pullers else "accepted").inc()
        return NotificationOutcome("accepted", note.job_id, results, [_key(e) for e in others])

    async def _run_triggered(
        self, note: Notification, pullers: list[EventPuller], requested: float
    ) -> list[PullResult]:
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
            return task.result()
        except KafkaUnavailable:
            self.metrics.notifications.labels("kafka_unavailable").inc()
            raise
        except Exception as exc:
            self.metrics.notifications.labels("pull_failed").inc()
            self.metrics.errors.labels("kaltura").inc()
            raise KalturaUnavailable(f"the triggered pull failed: {exc!r}") from exc

    async def forward(self, note: Notification, events: list[EventConfig]) -> None:
        """Hand the notification to the owners of ``events``: one trigger per event on the event's
        coordination partition, acknowledged by Kafka (acks=all) before this returns. The owner (or
        whoever owns the partition next) pulls before it commits the trigger's offset."""
        for event in events:
            trigger = PullTrigger(
                partner_id=event.partner_id, virtual_event_id=event.virtual_event_id, job_id=note.job_id,
                kind=note.kind, wants_statuses=note.wants_statuses, app_guid=note.app_guid,
                entry_id=note.entry_id, fields=forwarded_fields(note.kind, note.fields),
                forwarded_at=self.clock.now(),
            )
            item = Outgoing(INGEST_PULL_OWNERS, trigger.partition_key(), trigger, "triggers")
            await self.publisher.send_to_partition(item, self.owner_of(event.partner_id, event.virtual_event_id))
            log.info("notification %s forwarded to the owner of event %s", note.job_id, _key(event))

    async def handle_trigger(self, partition: int, trigger: PullTrigger) -> bool:
        """A notification another replica forwarded: run its pull if this replica owns the event.
        True once acknowledged (or nothing to do); False to have it read again later."""
        owned = self.owned.get(partition)
        if owned is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(owned.ready.wait(), self.settings.ingest_handover_timeout_seconds)
        if not owned.ready.is_set() or self.owned.get(partition) is not owned:
            return False
        puller = owned.pullers.get((trigger.partner_id, trigger.virtual_event_id))
        if puller is None:
            log.warning("a forwarded notification for event %s:%s, which is not configured here: skipped",
                        trigger.partner_id, trigger.virtual_event_id)
            self.metrics.triggers.labels("skipped").inc()
            return True
        key = _trigger_key(trigger.job_id, trigger.partner_id, trigger.virtual_event_id)
        if key in self.handled_jobs:
            self.metrics.triggers.labels("skipped").inc()
            return True
        note = Notification(trigger.job_id, trigger.partner_id, trigger.wants_statuses, trigger.virtual_event_id,
                            trigger.app_guid, trigger.entry_id, trigger.kind, dict(trigger.fields))
        try:
            await self._renew(owned)
            await self._triggered_pulls(note, [puller], self.clock.monotonic())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("the pull of a forwarded notification (%s) failed, it is retried: %r", trigger.job_id, exc)
            self.metrics.triggers.labels("retried").inc()
            return False
        if puller.stopping:  # released mid-pull: the next owner reads the trigger again
            return False
        self.handled_jobs.remember(key)
        self.metrics.triggers.labels("pulled").inc()
        return True

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


def _key(event: EventConfig) -> str:
    return event_key(event.partner_id, event.virtual_event_id)


def _keys(events: list[EventConfig]) -> str:
    return ", ".join(_key(e) for e in events)


def _trigger_key(job_id: str, partner_id: int, virtual_event_id: int) -> str:
    return f"{job_id}@{event_key(partner_id, virtual_event_id)}"


def _consume_exception(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a background pull failed: %r", task.exception())
