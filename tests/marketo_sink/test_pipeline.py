"""Pipelined bulk custom object jobs, at the worker: a window's bulk job finishes in the background
while the instance's next windows go on; a later upsert of a record in an outstanding job waits for
it; stop() drains outstanding jobs up to its timeout. In-memory writers whose bulk jobs the test
finishes by hand (no HTTP here: the same path runs against the sandbox in test_sink_integration.py).
Nothing waits on time: every step awaits an event, a queue or a task, each with a deadline."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from kmsync_contracts.seed import ENGAGEMENT_ACTIVITY_API_NAME
from kmsync_marketo.bulk import BulkResult
from kmsync_marketo.client import ActivityRecord, LeadActivity, LeadSyncResult
from kmsync_marketo.errors import ErrorClass
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_marketo.outcomes import Outcome
from kmsync_sink.decisions import Decision
from kmsync_sink.memory import ActivityWrites
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.pending import PendingOp
from kmsync_sink.pipeline import BulkPipeline, HeldOps
from kmsync_sink.settings import WindowSettings
from kmsync_sink.worker import InstanceWorker, WorkerContext

A = "111-AAA-111"
OBJ = "kalturaUserSessionEngagement"
WITHIN = 5.0  # seconds any single step may take before the test fails


class Marketo:
    """What the instance holds (entry_id → record) and the order writes happened in."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, str]] = []

    def write(self, how: str, records: Sequence[Mapping[str, Any]]) -> None:
        for r in records:
            self.objects.setdefault(str(r["entry_id"]), {}).update(r)
            self.log.append((how, f"{r['entry_id']}={r.get('plays')}"))


class RestWriter:
    """The REST side: leads get ids, custom objects are written at once."""

    def __init__(self, marketo: Marketo) -> None:
        self.marketo = marketo
        self.leads: dict[str, int] = {}
        self.limiter = InstanceLimiter("memory")

    async def sync_leads(self, leads: Sequence[Mapping[str, Any]]) -> LeadSyncResult:
        ids = {str(r["email"]): self.leads.setdefault(str(r["email"]), 1000 + len(self.leads)) for r in leads}
        return LeadSyncResult([Outcome(seq=i, status="updated", marketo_id=str(ids[str(r["email"])]))
                               for i, r in enumerate(leads)], ids)

    async def sync_program_member_status(self, program_id: int, status_name: str,
                                         lead_ids: Sequence[int]) -> list[Outcome]:
        raise AssertionError("no program member in these windows")

    async def sync_custom_objects(self, api_name: str, records: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        self.marketo.write("rest", records)
        return [Outcome(seq=i, status="updated") for i in range(len(records))]

    async def add_custom_activities(self, activities: Sequence[ActivityRecord]) -> list[Outcome]:
        return [Outcome(seq=i, status="created", marketo_id=str(i)) for i in range(len(activities))]

    async def custom_activity_types(self) -> list[dict[str, Any]]:
        return [{"id": 100001, "apiName": ENGAGEMENT_ACTIVITY_API_NAME}]

    async def lead_activities(self, activity_type_ids: Sequence[int], lead_ids: Sequence[int],
                              since: datetime) -> list[LeadActivity]:
        return []

    async def usage_today(self, *, reconcile: bool = True) -> int:
        return 0

    async def aclose(self) -> None:
        return None


@dataclass
class Job:
    records: list[dict[str, Any]]
    #: entry_ids whose row comes back failed, retryably (a "kmsync.bulk_unmatched" row).
    fail: set[str] = field(default_factory=set)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False

    @property
    def entries(self) -> set[str]:
        return {str(r["entry_id"]) for r in self.records}

    def finish(self, fail: Iterable[str] = ()) -> None:
        self.fail = set(fail)
        self.gate.set()


class GatedBulk:
    """Bulk custom object imports that stay outstanding (as at Marketo, for minutes) until the test
    finishes them; their rows are written when they finish."""

    def __init__(self, marketo: Marketo) -> None:
        self.marketo = marketo
        self.submitted: asyncio.Queue[Job] = asyncio.Queue()

    async def next_job(self) -> Job:
        return await asyncio.wait_for(self.submitted.get(), WITHIN)

    async def import_custom_objects(self, api_name: str, records: Sequence[Mapping[str, Any]],
                                    dedupe_fields: Sequence[str] = ()) -> BulkResult:
        job = Job([dict(r) for r in records])
        self.submitted.put_nowait(job)
        try:
            await job.gate.wait()
        except asyncio.CancelledError:
            job.cancelled = True
            raise
        self.marketo.write("bulk", [r for r in job.records if r["entry_id"] not in job.fail])
        return BulkResult([
            Outcome(seq=i, status="failed", reason_code="kmsync.bulk_unmatched", reason="unmatched",
                    classification=ErrorClass.RETRY_SOON) if r["entry_id"] in job.fail
            else Outcome(seq=i, status="updated", marketo_status="imported") for i, r in enumerate(job.records)])

    async def import_leads(self, records: Sequence[Mapping[str, Any]]) -> BulkResult:
        raise AssertionError("no lead upsert carries data in these windows")

    async def import_program_members(self, program_id: int, status_name: str,
                                     records: Sequence[Mapping[str, Any]]) -> BulkResult:
        raise AssertionError("no program member in these windows")


class Published:
    """The worker's publish: every decision, and the offsets they let the partition commit."""

    def __init__(self) -> None:
        self.decisions: dict[str, list[Decision]] = {}
        self.tracker = OffsetTracker()
        self._changed = asyncio.Event()
        #: Publishing an outcome of one of these operations fails (Kafka refuses it).
        self.refuse: set[str] = set()

    def read(self, pending: list[PendingOp]) -> None:
        for p in pending:
            self.tracker.read(p.source.topic, p.source.partition, p.source.offset)

    async def __call__(self, decisions: list[Decision], give_up: asyncio.Event) -> None:
        if self.refuse & {d.pending.op.op_id for d in decisions}:
            raise RuntimeError("the results topic refused the outcomes")
        for d in decisions:
            self.decisions.setdefault(d.pending.op.op_id, []).append(d)
            self.tracker.done(d.pending.source.topic, d.pending.source.partition, d.pending.source.offset)
        self._changed.set()

    async def wait_for(self, *op_ids: str) -> None:
        async def until_all() -> None:
            while not set(op_ids) <= self.decisions.keys():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until_all(), WITHIN)

    def committable(self) -> int | None:
        return self.tracker.committable("marketo.ops.v1", 0)


class Harness:
    """One worker on the in-memory writers (started; the ``harness`` fixture stops it)."""

    def __init__(self, ops: Any, **settings: Any) -> None:
        self.ops = ops
        self.marketo = Marketo()
        self.writer = RestWriter(self.marketo)
        self.bulk = GatedBulk(self.marketo)
        self.published = Published()
        self.now = 100.0  # every operation arrived at 0: a window closes (age) as soon as it is woken
        base: dict[str, Any] = dict(window_max_records=1000, window_max_age_seconds=1.0, bulk_min_records=2,
                                    bulk_pipeline_max_jobs=4, retry_base_seconds=10.0, retry_max_seconds=10.0,
                                    window_min_call_records=0, sink_usage_reconcile_minutes=0)
        base.update(settings)
        context = WorkerContext(WindowSettings(**base), ActivityWrites(), self.published, SinkMetrics(),
                                lambda: self.now)
        self.worker = InstanceWorker(A, self.writer, context, rng=random.Random(7), bulk=self.bulk)
        self.worker.start()

    def add(self, *ops: Any) -> list[PendingOp]:
        pending = [self.ops.pending(op) for op in ops]
        self.published.read(pending)
        for p in pending:
            self.worker.add(p)
        return pending

    def obj(self, entry: str, plays: int, op_id: str) -> Any:
        return self.ops.obj("a@x.com", entry=entry, munchkin=A, op_id=op_id, plays=plays)

    @property
    def bulk_in_flight(self) -> float:
        return float(self.worker.metrics.bulk_in_flight.labels(A)._value.get())

    async def jobs_ended(self) -> None:
        assert self.worker.pipeline is not None
        if self.worker.pipeline.tasks:
            await asyncio.wait_for(asyncio.wait(set(self.worker.pipeline.tasks)), WITHIN)


@pytest.fixture
async def harness(ops: Any) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**settings: Any) -> Harness:
        made.append(Harness(ops, **settings))
        return made[-1]

    yield make
    for h in made:  # a failed test leaves no task behind
        await h.worker.stop(0.0)


async def test_a_later_upsert_of_a_record_in_an_outstanding_job_waits_for_it_while_others_go_on(harness) -> None:
    h = harness()
    h.add(h.obj("1_e1", 1, "e1-v1"), h.obj("1_e2", 1, "e2-v1"))
    job1 = await h.bulk.next_job()
    assert job1.entries == {"1_e1", "1_e2"}
    # Job 1 is still at Marketo; the loop takes the next window: the update of 1_e1 is held back,
    # the other records go out in a second job at once.
    h.add(h.obj("1_e1", 2, "e1-v2"), h.obj("1_e3", 1, "e3-v1"), h.obj("1_e4", 1, "e4-v1"))
    job2 = await h.bulk.next_job()
    assert job2.entries == {"1_e3", "1_e4"}, "the update of a record in job 1 is not sent beside it"
    assert not job1.gate.is_set() and h.bulk_in_flight == 2
    assert h.worker.buffered == 1 and h.marketo.log == []
    job2.finish()
    await h.published.wait_for("e3-v1", "e4-v1")
    assert "e1-v2" not in h.published.decisions and h.published.committable() == 0, "job 1 undecided"
    job1.finish()
    await h.published.wait_for("e1-v1", "e2-v1", "e1-v2")
    # Sent after job 1 ended (alone: below the bulk threshold, so over REST); the newer value wins.
    assert h.marketo.log.index(("bulk", "1_e1=1")) < h.marketo.log.index(("rest", "1_e1=2"))
    assert h.marketo.objects["1_e1"]["plays"] == 2
    assert {k: [d.status for d in v] for k, v in h.published.decisions.items()} == {
        k: ["updated"] for k in ("e1-v1", "e2-v1", "e1-v2", "e3-v1", "e4-v1")}, "one outcome each"
    assert h.published.committable() == 5 and h.bulk_in_flight == 0
    assert await h.worker.stop(1.0) == []


async def test_held_upserts_wait_for_the_retry_of_their_records_failed_bulk_row(ops, harness) -> None:
    h = harness()
    h.add(h.obj("1_e1", 1, "e1-v1"), h.obj("1_e2", 1, "e2-v1"))
    job1 = await h.bulk.next_job()
    h.add(h.obj("1_e1", 2, "e1-v2"), ops.lead("c@x.com", munchkin=A, op_id="lead-c"))
    await h.published.wait_for("lead-c")  # that window ran; the update of 1_e1 was held back
    assert len(h.worker.held) == 1 and h.marketo.log == []
    job1.finish(fail={"1_e1"})
    await h.published.wait_for("e2-v1")
    await h.jobs_ended()
    # 1_e1's row retries after its backoff; the newer upsert of 1_e1 may not leave before it (it
    # would be overwritten by the older row), so both wait for the same time.
    waiting = {p.op.op_id: p.not_before for p in h.worker.window}
    assert waiting.keys() == {"e1-v1", "e1-v2"} and waiting["e1-v1"] > h.now
    assert waiting["e1-v2"] == waiting["e1-v1"]
    assert ("rest", "1_e1=2") not in h.marketo.log
    assert h.worker.window.due(h.now) is None, "nothing ready before the retry"
    h.now = waiting["e1-v1"]
    h.add(ops.lead("b@x.com", munchkin=A, op_id="lead-b"))  # new input wakes the loop
    await h.published.wait_for("e1-v1", "e1-v2", "lead-b")
    assert h.marketo.objects["1_e1"]["plays"] == 2
    assert [d.status for d in h.published.decisions["e1-v1"]] == ["updated"]
    assert h.published.decisions["e1-v1"][0].pending.attempts == 2
    assert h.published.committable() == 5
    await h.worker.stop(1.0)


async def test_a_full_pipeline_makes_the_next_bulk_job_wait_for_a_slot(ops, harness) -> None:
    h = harness(bulk_pipeline_max_jobs=1)
    h.add(h.obj("1_e1", 1, "e1-v1"), h.obj("1_e2", 1, "e2-v1"))
    job1 = await h.bulk.next_job()
    h.add(h.obj("1_e3", 1, "e3-v1"), h.obj("1_e4", 1, "e4-v1"), ops.activity("a@x.com", munchkin=A, op_id="act"))
    # The second window's other calls (the activity goes out beside the custom objects) ran ...
    await h.published.wait_for("act")
    assert h.bulk.submitted.empty(), "... but its bulk job waits while job 1 holds the only slot"
    assert h.bulk_in_flight == 1
    job1.finish()
    job2 = await h.bulk.next_job()
    assert job2.entries == {"1_e3", "1_e4"}
    job2.finish()
    await h.published.wait_for("e1-v1", "e2-v1", "e3-v1", "e4-v1")
    await h.worker.stop(1.0)


async def test_stop_publishes_the_outcomes_of_a_job_that_ends_within_the_drain(ops, harness) -> None:
    h = harness()
    h.add(h.obj("1_e1", 1, "e1-v1"), h.obj("1_e2", 1, "e2-v1"))
    job1 = await h.bulk.next_job()
    held, _ = h.add(h.obj("1_e1", 2, "e1-v2"), ops.lead("b@x.com", munchkin=A, op_id="lead-b"))
    await h.published.wait_for("lead-b")  # the loop went on while job 1 is outstanding
    stopping = asyncio.create_task(h.worker.stop(30.0))
    job1.finish()
    dropped = await asyncio.wait_for(stopping, WITHIN)
    assert {k: [d.status for d in v] for k, v in h.published.decisions.items()} == {
        "e1-v1": ["updated"], "e2-v1": ["updated"], "lead-b": ["updated"]}
    # The held update was never sent: handed back (the next owner replays it), its offset open.
    assert dropped == [held] and ("rest", "1_e1=2") not in h.marketo.log
    assert h.published.committable() == held.source.offset
    assert h.bulk_in_flight == 0 and not job1.cancelled


@pytest.mark.parametrize("parked", [False, True], ids=["drain-deadline", "parked-607"])
async def test_a_job_still_outstanding_when_the_drain_ends_is_abandoned_uncommitted(ops, harness, parked: bool) -> None:
    h = harness()
    first = h.add(h.obj("1_e1", 1, "e1-v1"), h.obj("1_e2", 1, "e2-v1"))
    job1 = await h.bulk.next_job()
    h.add(h.obj("1_e3", 1, "e3-v1"), h.obj("1_e4", 1, "e4-v1"))
    job2 = await h.bulk.next_job()
    job2.finish()
    await h.published.wait_for("e3-v1", "e4-v1")
    if parked:  # 607: nothing gets done at Marketo before the reset, abandon at once
        h.writer.limiter.on_quota_reached()
    await asyncio.wait_for(h.worker.stop(30.0 if parked else 0.05), WITHIN)
    assert job1.cancelled and h.bulk_in_flight == 0
    assert h.worker.pipeline is not None and h.worker.pipeline.tasks == set()
    assert h.published.decisions.keys() == {"e3-v1", "e4-v1"}
    assert h.published.committable() == first[0].source.offset, "job 1's records stay uncommitted"


async def test_a_job_whose_outcomes_cannot_be_published_fails_the_worker(harness) -> None:
    h = harness()
    h.published.refuse = {"e1-v1"}
    h.add(h.obj("1_e1", 1, "e1-v1"), h.obj("1_e2", 1, "e2-v1"))
    (await h.bulk.next_job()).finish()
    assert h.worker.task is not None
    await asyncio.wait_for(asyncio.wait({h.worker.task}), WITHIN)
    # As a window's would: the sink stops and its records are replayed from the last commit.
    assert isinstance(h.worker.task.exception(), RuntimeError)
    assert h.published.committable() == 0


async def test_bulk_pipeline_holds_keys_until_its_job_ends_even_if_cancelled_unstarted() -> None:
    ended: list[frozenset[Any]] = []
    pipeline = BulkPipeline(1, lambda keys, task: ended.append(keys))
    never = asyncio.Event()
    task = await pipeline.start([("o", ("k",))], never.wait)
    assert pipeline.holds(("o", ("k",))) and pipeline.outstanding == 1
    task.cancel()  # before its first step: a ``finally`` would never run
    await asyncio.gather(task, return_exceptions=True)
    assert ended == [frozenset({("o", ("k",))})]
    assert not pipeline.holds(("o", ("k",))) and pipeline.outstanding == 0
    again = await asyncio.wait_for(pipeline.start([("o", ("k",))], asyncio.Event().wait), WITHIN)
    again.cancel()
    await asyncio.gather(again, return_exceptions=True)


def test_held_ops_leave_no_earlier_than_their_records_retry(ops) -> None:
    held = HeldOps()
    a, b = (ops.pending(ops.obj("a@x.com", entry=e)) for e in ("1_a", "1_b"))
    held.hold(("o", ("a",)), a)
    held.hold(("o", ("b",)), b)
    held.retry_due(("o", ("a",)), 50.0)
    assert len(held) == 2
    assert held.release([("o", ("a",))]) == [a] and a.not_before == 50.0
    assert held.release([("o", ("a",))]) == [], "released once"
    assert held.drop() == [b] and len(held) == 0
