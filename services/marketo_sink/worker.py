"""One Marketo instance's loop: collect a window, plan, execute, settle, publish; one window at a time.

Each instance has its own worker, window and client (with its own limiter), so a parked (607) or
broken instance waits alone while the others keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from kmsync_marketo import endpoints as ep
from marketo_sink.decisions import Decision, RetryPolicy, settle
from marketo_sink.executor import WindowExecutor
from marketo_sink.memory import ActivityLedger, LeadCache
from marketo_sink.metrics import SinkMetrics
from marketo_sink.pending import PendingOp
from marketo_sink.planner import PlannerConfig, plan_window
from marketo_sink.settings import WindowSettings
from marketo_sink.window import CloseReason, Window, WindowLimits
from marketo_sink.writer import BulkWriter, MarketoWriter

log = logging.getLogger(__name__)

Publish = Callable[[list[Decision]], Awaitable[None]]
Monotonic = Callable[[], float]


class InstanceWorker:
    def __init__(
        self,
        munchkin_id: str,
        writer: MarketoWriter,
        settings: WindowSettings,
        ledger: ActivityLedger,
        publish: Publish,
        metrics: SinkMetrics,
        monotonic: Monotonic,
        rng: random.Random | None = None,
        bulk: BulkWriter | None = None,
        bulk_min_records: int | None = None,
    ) -> None:
        """``bulk_min_records``: the instance's bulk threshold from the tenants file (None: the
        sink's ``settings.bulk_min_records``; 0: never bulk)."""
        self.munchkin_id = munchkin_id
        self.writer = writer
        self.settings = settings
        self.ledger = ledger
        self._publish = publish
        self.metrics = metrics
        self._mono = monotonic
        self._rng = rng or random.Random()
        self.bulk_min_records = settings.bulk_min_records if bulk_min_records is None else bulk_min_records
        bulk_on = self.bulk_min_records > 0
        self.window = Window(WindowLimits(
            settings.window_max_records, settings.window_max_age_seconds, settings.window_max_bytes,
            # A backlog window as large as bulk jobs want (only where bulk is on).
            bulk_max_records=settings.bulk_window_max_records if bulk_on else None,
            bulk_max_bytes=settings.bulk_window_max_bytes if bulk_on else None,
        ))
        self.cache = LeadCache(settings.lead_cache_size)
        self.executor = WindowExecutor(
            writer, self.cache, ledger,
            lambda endpoint, n, code: metrics.observe_call(munchkin_id, endpoint, n, code),
            bulk=bulk,
            bulk_in_flight=lambda delta: metrics.bulk_in_flight.labels(munchkin_id).inc(delta),
        )
        self.policy = RetryPolicy(settings.retry_max_attempts, settings.retry_base_seconds,
                                  settings.retry_max_seconds)
        #: (topic, partition) of every record this worker was given.
        self.partitions: set[tuple[str, int]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        #: The window whose calls and publishing are running (drain waits for it).
        self._window_task: asyncio.Task[None] | None = None
        self._reconciled_at: float | None = None
        #: attempts → retry time, shared by the calls of the current window.
        self._retry_at: dict[int, float] = {}

    # ----- feeding
    def add(self, p: PendingOp) -> None:
        self.partitions.add((p.source.topic, p.source.partition))
        self.window.add(p)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"sink-{self.munchkin_id}")

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    # ----- the loop
    async def _loop(self) -> None:
        while not self._stopping:
            now = self._mono()
            reason = self.window.due(now)
            if reason is None:
                deadline = self.window.next_deadline(now)
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
            self._window_task = asyncio.create_task(self._one_window(reason, now))
            await asyncio.shield(self._window_task)

    async def _maybe_reconcile(self, now: float) -> None:
        """Other integrations spend the same daily quota (marketo-api.md §2.1): learn the instance's
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
        taken = self.window.take(now, reason)
        self.metrics.window_records.labels(self.munchkin_id, reason.value).observe(len(taken))
        self.metrics.window_bytes.labels(self.munchkin_id).observe(size)
        full_calls = reason in (CloseReason.COUNT, CloseReason.BYTES)
        config = PlannerConfig(
            batch_max=ep.BATCH_MAX,
            min_call_records=self.settings.window_min_call_records if full_calls else 0,
            bulk_min_records=self.bulk_min_records,
        )
        plan = plan_window(taken, config, known_lead=lambda e: e in self.cache,
                           already_written=lambda op_id: op_id in self.ledger)
        self.window.extend(plan.deferred)
        self._retry_at = {}
        await self.executor.execute(plan, self._settle_and_publish)
        self.metrics.observe_limiter(self.munchkin_id, self.writer.limiter)

    async def _settle_and_publish(self, decisions: list[Decision]) -> None:
        final, retry = settle(decisions, self._mono(), self.policy, self._rng, self._retry_at)
        if retry:
            self.metrics.retries.labels(self.munchkin_id).inc(len(retry))
            self.window.extend(retry)
        await self._publish(final)

    # ----- stopping
    async def stop(self, drain_timeout: float) -> list[PendingOp]:
        """Stop taking windows; let a window in flight finish (up to the timeout, then abandon it);
        return (and forget) what was buffered and not sent. Abandoned records stay uncommitted."""
        self._stopping = True
        self._wake.set()
        inflight = self._window_task
        if inflight is not None and not inflight.done():
            # A parked instance (607) has nothing in flight at Marketo: its calls wait for the reset
            # in the limiter, so they are abandoned at once.
            parked = self.writer.limiter.parked_until is not None
            done, _ = await asyncio.wait({inflight}, timeout=0 if parked else drain_timeout)
            if not done:
                log.warning("instance %s: window still in flight after %.1fs; abandoned (replayed by the "
                            "next owner)", self.munchkin_id, drain_timeout)
                inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await inflight
        if self.executor.publishing:
            await asyncio.gather(*self.executor.publishing, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        return self.window.drop()
