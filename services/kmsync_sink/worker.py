"""One Marketo instance's loop: collect a window, plan, execute, settle, publish; one window at a time.

Each instance has its own worker, window and client (with its own limiter), so a parked (607) or
broken instance waits alone while the others keep flowing.

Bulk custom object jobs are pipelined (pipeline.py): a window starts them and the loop goes on to
the next window while they are polled; each job's outcomes are settled and published when it ends.
Upserts of a record an outstanding job carries are held back until that job has ended.

A stop (a revocation, a graceful stop) lets the window in flight finish within the drain timeout, longer when one
of its Sync Leads calls may still be running at Marketo: held by the Marketo client's replay delay, or its request
not answered yet (held_leads.py, ``InstanceWorker.stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kmsync_config.tenants import ProgramMemberFields
from kmsync_contracts.marketo_ops import CustomObjectUpsert
from kmsync_marketo import endpoints as ep
from kmsync_marketo.lanes import BACKFILL, LIVE, Lane, set_lane
from kmsync_marketo.schema import SchemaReader
from kmsync_sink.adaptive import BudgetView, auto_bulk_min_records, early_close_in, live_pacing_limit
from kmsync_sink.decisions import Decision, RetryPolicy, settle
from kmsync_sink.durable import PublishAbandoned
from kmsync_sink.executor import WindowExecutor
from kmsync_sink.held_leads import LeadCallWatch, WatchedWriter, call_stats
from kmsync_sink.intents import IntentLog
from kmsync_sink.lanes import LaneGate
from kmsync_sink.member_data import MemberDataWriter
from kmsync_sink.memory import ActivityWrites, LeadCache
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.pending import PendingOp
from kmsync_sink.pipeline import BulkPipeline, HeldOps
from kmsync_sink.planner import ObjectKey, PlannerConfig, object_key, plan_window
from kmsync_sink.schema_map import InstanceSchemaMap, schema_metrics
from kmsync_sink.settings import WindowSettings
from kmsync_sink.window import CloseReason, Window, WindowLimits
from kmsync_sink.writer import BulkWriter, MarketoWriter

log = logging.getLogger(__name__)

#: Publishes final decisions (acknowledged by Kafka); gives up (``PublishAbandoned``) once the event is set.
Publish = Callable[[list[Decision], asyncio.Event], Awaitable[None]]
Monotonic = Callable[[], float]


def _schema_map(munchkin_id: str, writer: MarketoWriter, settings: WindowSettings, metrics: SinkMetrics,
                monotonic: Monotonic) -> InstanceSchemaMap | None:
    """The instance's discovered schema (issue #17), for a writer that can read it."""
    if not isinstance(writer, SchemaReader):
        return None
    return InstanceSchemaMap(writer, munchkin_id, overrides=settings.sink_schema_names.get(munchkin_id),
                             refresh_seconds=settings.sink_schema_refresh_seconds,
                             metrics=schema_metrics(metrics.registry), monotonic=monotonic,
                             company_on_1021=settings.sink_company_on_1021)


def _bulk_thresholds(settings: WindowSettings, instance: int | None) -> tuple[int | None, int]:
    """(the configured bulk threshold, None: automatic per window (adaptive.auto_bulk_min_records); the
    threshold in force when nothing else decides: the configured one, else the automatic base)."""
    configured = settings.bulk_min_records if instance is None else instance
    return configured, settings.bulk_auto_min_records if configured is None else configured


def _window(settings: WindowSettings, bulk_on: bool) -> Window:
    return Window(WindowLimits(
        settings.window_max_records, settings.window_max_age_seconds, settings.window_max_bytes,
        # A backlog window as large as bulk jobs want (only where bulk is on).
        bulk_max_records=settings.bulk_window_max_records if bulk_on else None,
        bulk_max_bytes=settings.bulk_window_max_bytes if bulk_on else None,
    ))


@dataclass(frozen=True)
class WorkerContext:
    """What every instance's worker of one sink shares."""

    settings: WindowSettings
    ledger: ActivityWrites
    publish: Publish
    metrics: SinkMetrics
    monotonic: Monotonic
    #: Where custom activity intents are recorded before each activities call (None: in the ledger
    #: only, for tests).
    intent_log: IntentLog | None = None
    #: How old an intent must be before the lead's activity log is read to verify it (executor.py).
    verify_delay_seconds: float = 0.0
    #: How much longer than its drain timeout a stop waits for a window whose Sync Leads call the Marketo client
    #: holds (the client's replay delay; ``InstanceWorker.stop``). 0: no longer.
    held_drain_seconds: float = 0.0
    #: Whether flow control keeps a (topic, partition) paused past its next poll (``CommitControl.stays_paused``).
    stays_paused: Callable[[str, int], bool] = lambda topic, partition: False


class InstanceWorker:
    #: The window's Sync Leads calls in flight, whether the Marketo client holds one, and how much longer than its
    #: drain timeout a stop waits for such a window (set with the executor, whose writer reports the calls).
    lead_calls: LeadCallWatch

    def __init__(
        self,
        munchkin_id: str,
        writer: MarketoWriter,
        context: WorkerContext,
        *,
        rng: random.Random | None = None,
        bulk: BulkWriter | None = None,
        bulk_min_records: int | None = None,
        member_fields: ProgramMemberFields | None = None,
        lane: Lane = LIVE,
        cache: LeadCache | None = None,
        gate: LaneGate | None = None,
    ) -> None:
        """``bulk_min_records``: the instance's bulk threshold from the tenants file (None: the sink's
        ``settings.bulk_min_records``; 0: never bulk). ``lane``: the operations this worker serves
        (lanes.py: an instance's live and backfill workers share its writer, lead cache and ``gate``)."""
        settings, metrics, monotonic = context.settings, context.metrics, context.monotonic
        self.munchkin_id = munchkin_id
        self.lane = lane
        self.gate = gate
        self.writer = writer
        self.settings = settings
        self.ledger = context.ledger
        self._publish = context.publish
        self.metrics = metrics
        metrics.watch_client(munchkin_id, writer)  # the client's retries, on /metrics (metrics.py)
        self._mono = monotonic
        self._rng = rng or random.Random()
        self.bulk_configured, self.bulk_min_records = _bulk_thresholds(settings, bulk_min_records)
        bulk_on = self.bulk_min_records > 0
        self.window = _window(settings, bulk_on)
        self.cache = cache if cache is not None else LeadCache(settings.lead_cache_size)
        #: Bulk custom object jobs left to finish in the background (None: windows wait for them).
        self.pipeline = (BulkPipeline(settings.bulk_pipeline_max_jobs, self._job_ended)
                         if bulk is not None and bulk_on and settings.bulk_pipeline_max_jobs > 0 else None)
        #: Upserts of records an outstanding job carries, waiting for it to end.
        self.held = HeldOps()
        #: Set when a stop's drain deadline has passed: Kafka writes still retrying give up.
        self.give_up = asyncio.Event()
        #: The instance's program member fields (tenants file): where granular labels go.
        self.member_fields = member_fields
        self.executor = self._executor(context, bulk)
        self._join(gate)
        self.policy = RetryPolicy(settings.retry_max_attempts, settings.retry_base_seconds, settings.retry_max_seconds)
        #: (topic, partition) of every record this worker was given.
        self.partitions: set[tuple[str, int]] = set()
        #: Records Kafka holds for those partitions that the sink has not read (set by the router), and
        #: calls per window averaged over recent windows, and when the last window closed (adaptive.py).
        self.lag, self._calls_per_window, self._closed_at = 0, 3.0, -math.inf
        self._stays_paused = context.stays_paused  # ``_cannot_grow``
        self._wake, self._stopping = asyncio.Event(), False
        self._task: asyncio.Task[None] | None = None
        #: The window whose calls and publishing are running (drain waits for it).
        self._window_task: asyncio.Task[None] | None = None
        self._reconciled_at: float | None = None
        #: attempts → retry time, shared by the calls of the current window.
        self._retry_at: dict[int, float] = {}
        #: A background job that ended with an error (publishing failed): the loop raises it.
        self._job_error: BaseException | None = None

    def _join(self, gate: LaneGate | None) -> None:
        if gate is not None:
            gate.register(self.lane, self._resume, self.pipeline.holds if self.pipeline is not None else None)

    def _executor(self, context: WorkerContext, bulk: BulkWriter | None) -> WindowExecutor:
        munchkin_id, metrics, intent_log = self.munchkin_id, context.metrics, context.intent_log
        self.lead_calls = LeadCallWatch(call_stats(self.writer), context.held_drain_seconds)
        return WindowExecutor(
            WatchedWriter(self.writer, self.lead_calls), self.cache, context.ledger,
            lambda endpoint, n, code: metrics.observe_call(munchkin_id, endpoint, n, code),
            bulk=bulk,
            bulk_in_flight=lambda delta: metrics.bulk_in_flight.labels(munchkin_id).inc(delta),
            pipeline=self.pipeline,
            intents=intent_log.for_worker(self.give_up) if intent_log is not None else None,
            verify_delay_seconds=context.verify_delay_seconds,
            observe_verify=lambda result, n: metrics.verifications.labels(munchkin_id, result).inc(n),
            monotonic=context.monotonic,
            schema=_schema_map(munchkin_id, self.writer, context.settings, metrics, context.monotonic),
            member_data=MemberDataWriter(
                self.writer, self.member_fields, retries_1013=context.settings.sink_member_data_1013_retries,
                refresh_seconds=context.settings.sink_schema_refresh_seconds, monotonic=context.monotonic,
                observe=lambda endpoint, n, code: metrics.observe_call(munchkin_id, endpoint, n, code)),
        )

    # ----- feeding
    def add(self, p: PendingOp) -> None:
        self.partitions.add(p.source[:2])  # (topic, partition), sliced in C (per record read, issue #22)
        self.window.add(p)
        # Whether more is waiting behind this record is known only once the router has read the lag after
        # this poll (note_lag): until then the window does not close early on a lag read before it.
        if self.lag < 1:
            self.lag = 1
        self._wake.set()

    def note_lag(self, lag: int) -> None:
        """What Kafka holds for this worker's partitions that the sink has not read (the router, after each
        poll). A lag that falls to 0 wakes the loop: a window that waited for the rest of a burst may close
        early now, not only when the next record or its age limit comes."""
        if self.lag > 0 and lag == 0 and len(self.window):
            self._wake.set()
        self.lag = lag

    def partitions_paused(self) -> None:
        """Flow control paused a partition (commits.py). A window that waits to fill from partitions that are all
        paused would wait its age for nothing: the loop wakes to close it."""
        if len(self.window) and self._cannot_grow():
            self._wake.set()

    def _cannot_grow(self) -> bool:
        """Every partition this worker reads stays paused (its undecided operations are not below the resume mark,
        commits.py): its window gets nothing more until more of them are decided. One about to resume is not."""
        return bool(self.partitions) and all(self._stays_paused(t, p) for t, p in self.partitions)

    @property
    def buffered(self) -> int:
        """Operations read and not sent yet: the window and the held-back upserts."""
        return len(self.window) + len(self.held)

    @property
    def awaiting_verification(self) -> int:
        """Custom activities in this worker's window with an open intent: held until their leads' activity
        logs say whether they were applied (an intent another replica resolved is not counted)."""
        ledger = self.executor.ledger
        if not ledger.intents:
            return 0
        return sum(1 for p in self.window
                   if p.op.kind == "custom_activity" and ledger.uncertain(p.op.op_id) is not None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"sink-{self.munchkin_id}-{self.lane}")

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    # ----- the loop
    async def _loop(self) -> None:
        set_lane(self.lane)  # every call of this worker (and of the tasks it starts) is of its lane
        while not self._stopping:
            if self._job_error is not None:
                raise self._job_error
            now = self._mono()
            reason = self.window.due(now)
            if reason is None and self._cannot_grow() and self.window.oldest_ready(now) is not None:
                # Read-ahead full (a window count near SINK_MAX_BUFFERED_PER_PARTITION, or a parked instance on the
                # partition): without this the window waited its whole age (docs/benchmarks.md, session 16).
                reason = CloseReason.PAUSED
            early = self._early_close(now) if reason is None else None
            if early is not None and early <= 0:
                reason = CloseReason.IDLE
            if reason is None:
                deadline = self.window.next_deadline(now)
                if early is not None:
                    deadline = now + early if deadline is None else min(deadline, now + early)
                timeout = None if deadline is None else max(0.0, deadline - now)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            if self._stopping:
                return
            await self._maybe_reconcile(now)
            # A task of its own, awaited through a shield: cancelling the loop (a hard stop) lets the
            # calls already started finish and publish their outcomes, so a custom activity Marketo
            # accepted always reaches the ledger; stop() bounds how long that may take.
            self._closed_at = now
            self._window_task = asyncio.create_task(self._one_window(reason, now))
            await asyncio.shield(self._window_task)

    def _bulk_threshold(self, records: int) -> int:
        if self.bulk_configured is not None:
            return self.bulk_configured
        return auto_bulk_min_records(records, self.writer.limiter.room(self.lane), self.bulk_min_records, ep.BATCH_MAX)

    def _early_close(self, now: float) -> float | None:
        """Seconds until the window may close before its age limit (adaptive.py), None: it waits for it.
        Only live windows close early: a backfill is history, and its windows fill (to 300 or the bulk
        size) for the fewest calls, even when its loader is momentarily behind the sink."""
        oldest = self.window.oldest_ready(now)
        if not self.settings.window_adaptive or oldest is None or self.lane == BACKFILL:
            return None
        limiter = self.writer.limiter
        limit = live_pacing_limit(limiter.effective_window_limit, limiter.backfill_window_limit,
                                  limiter.backfill_active())
        budget = BudgetView(limiter.room(self.lane), limit, limiter.settings.rate_window_seconds,
                            limiter.seconds_until_room(math.ceil(self._calls_per_window), self.lane))
        return early_close_in(1, now - oldest, now - self._closed_at, self.lag, budget, self._calls_per_window,
                              self.settings.window_min_linger_seconds)

    async def _maybe_reconcile(self, now: float) -> None:
        """Other integrations spend the same daily quota (docs/reference/marketo-api.md §2.1): learn the instance's
        total from Marketo now and then, so the limiter's daily budget is the instance's, not ours."""
        every = self.settings.sink_usage_reconcile_minutes * 60
        if every <= 0 or (self._reconciled_at is not None and now - self._reconciled_at < every):
            return
        self._reconciled_at = now
        try:
            total = await self.writer.usage_today(reconcile=True)
        except Exception as exc:  # the usage endpoint is advisory: never block writes on it
            log.warning("instance %s: usage not read (%s)", self.munchkin_id, type(exc).__name__)
            return
        self.metrics.budget_used.labels(self.munchkin_id, "instance_daily").set(total)

    async def _one_window(self, reason: CloseReason, now: float) -> None:
        size = self.window.size_bytes
        taken = self.window.take(now)
        self.metrics.window_records.labels(self.munchkin_id, reason.value).observe(len(taken))
        self.metrics.window_bytes.labels(self.munchkin_id).observe(size)
        if self.pipeline is not None:
            taken = self._hold_back(taken, self.pipeline)
        if self.gate is not None:
            admission = self.gate.admit(self.lane, taken)
            taken = admission.send
            if admission.superseded:
                await self._publish(admission.superseded, self.give_up)
        full_calls = reason in (CloseReason.COUNT, CloseReason.BYTES)
        config = PlannerConfig(
            batch_max=ep.BATCH_MAX,
            min_call_records=self.settings.window_min_call_records if full_calls else 0,
            bulk_min_records=self._bulk_threshold(len(taken)),
        )
        plan = plan_window(taken, config, known_lead=lambda e: e in self.cache,
                           already_written=lambda op_id: op_id in self.ledger)
        self.window.extend(plan.deferred)
        if plan.calls:
            self._calls_per_window = 0.7 * self._calls_per_window + 0.3 * plan.calls
        self._retry_at = {}
        try:
            await self.executor.execute(plan, self._settle_and_publish)
        finally:
            if self.gate is not None:
                self.gate.window_done(self.lane)
        self.metrics.observe_limiter(self.munchkin_id, self.writer.limiter)

    def _hold_back(self, taken: list[PendingOp], pipeline: BulkPipeline) -> list[PendingOp]:
        """Keep back the upserts of records an outstanding bulk job carries (sent after it ended)."""
        out: list[PendingOp] = []
        for p in taken:
            if isinstance(p.op, CustomObjectUpsert) and pipeline.holds(key := object_key(p.op)):
                self.held.hold(key, p)
            else:
                out.append(p)
        return out

    def _job_ended(self, keys: frozenset[ObjectKey], task: asyncio.Task[None]) -> None:
        """A background bulk job ended: the upserts it held back go back to the window."""
        if not task.cancelled() and task.exception() is not None \
                and not isinstance(task.exception(), PublishAbandoned):
            # Its outcomes could not be published: fail the loop as a window would (the sink stops
            # and the records are replayed from the last commit).
            self._job_error = task.exception()
            self._wake.set()
        if self.gate is not None:
            self.gate.job_done(self.lane)
        released = self.held.release(keys)
        if released:
            self.window.extend(released)
            self._wake.set()

    async def _settle_and_publish(self, decisions: list[Decision]) -> None:
        final, retry = settle(decisions, self._mono(), self.policy, self._rng, self._retry_at)
        if retry:
            self.metrics.retries.labels(self.munchkin_id).inc(len(retry))
            self.window.extend(retry)
            if self.pipeline is not None:
                for p in retry:
                    # A failed row of an outstanding job: later upserts of its record wait for the retry.
                    if isinstance(p.op, CustomObjectUpsert) and self.pipeline.holds(key := object_key(p.op)):
                        self.held.retry_due(key, p.not_before)
        await self._publish(final, self.give_up)

    # ----- stopping
    async def stop(self, drain_timeout: float) -> list[PendingOp]:
        """Stop taking windows; let the window in flight and then the background bulk jobs finish
        (all within one ``drain_timeout``, then abandon what is left); return (and forget) what was
        buffered or held back and not sent. Abandoned records stay uncommitted (replayed by the next
        owner; upserts, so harmless).

        A window one of whose Sync Leads calls Marketo may still be processing at the drain deadline (held by the
        client, replayed ``lead_calls.held_drain_seconds`` after its send at the latest, or its request not answered
        yet) is waited for until it ends, up to that much longer: abandoned, its emails would be upserted by the
        next owner at once, while the first request may still run (a duplicate lead, docs/reference/marketo-api.md
        §5.1). Meanwhile the client sends no new Sync Leads request (one could outlast the extension), and a window
        left waiting only for such an unsent request, with no lead call in process, is abandoned then. The bulk jobs
        keep the ordinary deadline."""
        self._stopping = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = publish_deadline = loop.time() + drain_timeout
        inflight = self._window_task
        if inflight is not None and not inflight.done():
            held_deadline = deadline + self.lead_calls.held_drain_seconds
            publish_deadline = await self._drain_window(inflight, deadline, held_deadline)
        if self.pipeline is not None and self.pipeline.tasks:
            # A job Marketo finishes within the drain still gets its outcomes published.
            await self._drain(set(self.pipeline.tasks), deadline, "bulk job(s)")
        if self.executor.publishing:
            # Outcomes of calls Marketo answered: Kafka may take until the deadline (an outage:
            # publishing retries), then they are given up (uncommitted; custom activities keep their
            # intents, so the next owner verifies them before sending).
            remaining = max(0.0, publish_deadline - loop.time())
            await asyncio.wait(set(self.executor.publishing), timeout=remaining)
        self.give_up.set()
        if self.executor.publishing:
            await asyncio.gather(*self.executor.publishing, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        return self.window.drop() + self.held.drop() + (self.gate.drop(self.lane) if self.gate is not None else [])

    def _resume(self, ops: list[PendingOp]) -> None:
        """Operations that waited for the other lane (lanes.py) go back to the window."""
        self.window.extend(ops)
        self._wake.set()

    async def _drain_window(self, window: asyncio.Task[None], deadline: float, held_deadline: float) -> float:
        """Drain the window in flight (``_drain``), past ``deadline`` up to ``held_deadline`` while one of its lead
        calls may still be running at Marketo at ``deadline`` (``lead_calls.held()``); the deadline its outcomes'
        publishing has."""
        loop = asyncio.get_running_loop()
        if self._parked():
            await self._drain({window}, deadline, "window")
            return deadline
        await asyncio.wait({window}, timeout=max(0.0, deadline - loop.time()))
        if window.done() or held_deadline <= deadline or not self.lead_calls.held():
            await self._drain({window}, deadline, "window")
            return deadline
        self.lead_calls.stop_new_requests()  # a request started now could outlast the extension (held_leads.py)
        extended_at = loop.time()
        log.warning("instance %s (%s): a lead call of the window in flight may still be running at Marketo (held by "
                    "the Marketo client's replay delay, or its request not answered yet, docs/reference/marketo-api.md "
                    "§5.1); the drain is extended by up to %.1fs, until it is answered, so the next owner does not "
                    "upsert these emails while it may still run (KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS); no "
                    "new Sync Leads request is sent meanwhile", self.munchkin_id, self.lane,
                    max(0.0, held_deadline - extended_at))
        until = held_deadline
        if await self._until_unsent(window, held_deadline):
            log.warning("instance %s (%s): the extended drain ended after %.1fs more: no lead call may still be "
                        "running at Marketo, and the window waits for a Sync Leads request that was not sent; "
                        "abandoned (replayed by the next owner)",
                        self.munchkin_id, self.lane, loop.time() - extended_at)
            until = loop.time()  # the answered calls' outcomes keep held_deadline (returned) to be published
        await self._drain({window}, until, "window (its lead call may still be running at Marketo)")
        if window.done() and not window.cancelled():
            log.warning("instance %s (%s): the extended drain ended after %.1fs more: the lead call was "
                        "answered and the window decided", self.munchkin_id, self.lane, loop.time() - extended_at)
        return held_deadline

    async def _until_unsent(self, window: asyncio.Task[None], held_deadline: float) -> bool:
        """Wait until the window ends, ``held_deadline`` passes, or only a cancellation can end the window's lead calls
        and it leaves nothing running at Marketo (``lead_calls.unsent()``: True). Woken by the client
        (``lead_calls.changed()``), not polled."""
        loop = asyncio.get_running_loop()
        while (changed := self.lead_calls.changed()) is not None and not window.done():
            # The current event, taken before the state is read: any change after this read sets it.
            if self.lead_calls.unsent():
                return True
            remaining = held_deadline - loop.time()
            if remaining <= 0:
                return False
            waiter = asyncio.ensure_future(changed.wait())
            try:
                await asyncio.wait({window, waiter}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        return False

    def _parked(self) -> bool:
        # A parked instance (607) gets nothing done at Marketo until the reset: its calls (a job's
        # status polls too) wait in the limiter, so they are abandoned at once.
        return self.writer.limiter.parked_until is not None

    async def _drain(self, tasks: set[asyncio.Task[None]], deadline: float, what: str) -> None:
        timeout = 0.0 if self._parked() else max(0.0, deadline - asyncio.get_running_loop().time())
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            log.warning("instance %s: %d %s still in flight at the drain deadline; abandoned (replayed by "
                        "the next owner)", self.munchkin_id, len(pending), what)
            for t in pending:
                t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
