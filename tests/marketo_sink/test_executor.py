"""The executor's decisions, against an in-memory writer (pure logic; no HTTP is involved here —
the same paths run over real HTTP against the sandbox in test_sink_integration.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kmsync_contracts import encode
from kmsync_contracts.outcomes import ActivityIntent
from kmsync_marketo.bulk import BulkResult
from kmsync_marketo.client import ActivityRecord, LeadActivity, LeadSyncResult
from kmsync_marketo.errors import ErrorClass, MarketoAuthError
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_marketo.outcomes import Outcome
from kmsync_sink import executor
from kmsync_sink.decisions import Decision
from kmsync_sink.executor import WindowExecutor
from kmsync_sink.memory import ActivityWrites, LeadCache
from kmsync_sink.planner import PlannerConfig, plan_window

from .conftest import count_validations


class MemoryWriter:
    """Answers like Marketo would, from dictionaries; records what it was asked."""

    def __init__(self) -> None:
        self.leads: dict[str, int] = {}
        self.bad_emails: set[str] = set()
        self.gone_lead_ids: set[int] = set()
        self.refuse_auth = False
        self.activity_calls: list[list[ActivityRecord]] = []
        self.status_calls: list[tuple[int, str, list[int]]] = []
        self.limiter = InstanceLimiter("memory")

    async def sync_leads(self, leads: Sequence[Mapping[str, Any]]) -> LeadSyncResult:
        if self.refuse_auth:
            raise MarketoAuthError("Identity refused client id 'x'")
        outs, ids = [], {}
        for i, rec in enumerate(leads):
            email = str(rec["email"])
            if email in self.bad_emails:
                outs.append(Outcome(seq=i, status="failed", reason_code="1003", reason="Invalid data",
                                    classification=ErrorClass.PERMANENT))
                continue
            status = "updated" if email in self.leads else "created"
            lead_id = self.leads.setdefault(email, 1000 + len(self.leads))
            ids[email] = lead_id
            outs.append(Outcome(seq=i, status=status, marketo_id=str(lead_id)))
        return LeadSyncResult(outs, ids)

    async def sync_program_member_status(self, program_id: int, status_name: str,
                                         lead_ids: Sequence[int]) -> list[Outcome]:
        self.status_calls.append((program_id, status_name, list(lead_ids)))
        return [Outcome(seq=i, status="failed", reason_code="1004", reason="Lead not found",
                        classification=ErrorClass.PERMANENT) if lid in self.gone_lead_ids
                else Outcome(seq=i, status="created", marketo_id=str(lid)) for i, lid in enumerate(lead_ids)]

    async def sync_custom_objects(self, api_name: str, records: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        return [Outcome(seq=i, status="created", marketo_id=f"guid-{i}") for i in range(len(records))]

    async def add_custom_activities(self, activities: Sequence[ActivityRecord]) -> list[Outcome]:
        self.activity_calls.append(list(activities))
        return [Outcome(seq=i, status="created", marketo_id=str(i)) for i in range(len(activities))]

    async def custom_activity_types(self) -> list[dict[str, Any]]:
        return [{"id": 100001, "apiName": "userSessionEngagement"}]

    async def lead_activities(self, activity_type_ids: Sequence[int], lead_ids: Sequence[int],
                              since: datetime) -> list[LeadActivity]:
        return []

    async def usage_today(self, *, reconcile: bool = True) -> int:
        return 0

    async def aclose(self) -> None:
        return None


CFG = PlannerConfig(batch_max=300)
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def run(window: list[Any], writer: MemoryWriter, cache: LeadCache | None = None,
              ledger: ActivityWrites | None = None) -> dict[str, Decision]:
    cache = cache if cache is not None else LeadCache(100)
    ledger = ledger if ledger is not None else ActivityWrites()
    plan = plan_window(window, CFG, known_lead=lambda e: e in cache, already_written=lambda i: i in ledger)
    emitted: list[Decision] = []

    async def emit(batch: list[Decision]) -> None:
        emitted.extend(batch)

    decisions = await WindowExecutor(writer, cache, ledger).execute(plan, emit)
    assert decisions == emitted, "every decision is published as its call returns"
    return {d.pending.op.op_id: d for d in decisions}


async def test_dependents_wait_for_their_lead_and_use_its_id(ops) -> None:
    w = MemoryWriter()
    window = [ops.pending(ops.lead("a@x.com", op_id="l")), ops.pending(ops.status("a@x.com", op_id="s")),
              ops.pending(ops.obj("a@x.com", op_id="o")), ops.pending(ops.activity("a@x.com", op_id="act"))]
    got = await run(window, w)
    assert {k: d.status for k, d in got.items()} == {"l": "created", "s": "created", "o": "created",
                                                      "act": "created"}
    assert w.status_calls == [(1001, "Registered", [w.leads["a@x.com"]])]
    assert w.activity_calls[0][0].lead_id == w.leads["a@x.com"]
    assert w.activity_calls[0][0].activity_type_id == 100001


async def test_a_lead_that_fails_permanently_takes_its_dependents_to_the_dlq(ops) -> None:
    w = MemoryWriter()
    w.bad_emails.add("bad@x.com")
    got = await run([ops.pending(ops.lead("bad@x.com", op_id="l")),
                     ops.pending(ops.status("bad@x.com", op_id="s"))], w)
    assert (got["l"].status, got["l"].reason_code, got["l"].retryable) == ("failed", "1003", False)
    assert (got["s"].status, got["s"].reason_code, got["s"].retryable) == ("failed", "1003", False)
    assert w.status_calls == [], "no call for a member whose lead does not exist"


async def test_stale_cached_lead_id_is_evicted_and_retried(ops) -> None:
    w = MemoryWriter()
    cache = LeadCache(10)
    cache.put("a@x.com", 77)
    w.gone_lead_ids.add(77)
    got = await run([ops.pending(ops.status("a@x.com", op_id="s"))], w, cache=cache)
    assert (got["s"].status, got["s"].reason_code, got["s"].retryable) == ("failed", "1004", True)
    assert "a@x.com" not in cache


async def test_refused_credentials_are_retryable_failures_not_crashes(ops) -> None:
    w = MemoryWriter()
    w.refuse_auth = True
    got = await run([ops.pending(ops.lead("a@x.com", op_id="l")), ops.pending(ops.status("a@x.com", op_id="s"))], w)
    assert {(d.reason_code, d.retryable) for d in got.values()} == {("kmsync.auth_refused", True)}


async def test_activity_ledger_and_unknown_types(ops) -> None:
    w = MemoryWriter()
    ledger = ActivityWrites()
    ledger.add("done")
    cache = LeadCache(10)
    cache.put("a@x.com", 5)
    got = await run([
        ops.pending(ops.activity("a@x.com", op_id="done")),
        ops.pending(ops.activity("a@x.com", op_id="new")),
        ops.pending(ops.activity("a@x.com", op_id="odd", type_name="noSuchType")),
    ], w, cache=cache, ledger=ledger)
    assert (got["done"].status, got["done"].reason_code) == ("skipped", "kmsync.already_written")
    assert got["new"].status == "created" and "new" in ledger
    assert (got["odd"].reason_code, got["odd"].retryable) == ("kmsync.unknown_activity_type", False)
    assert [len(c) for c in w.activity_calls] == [1]


async def test_an_unexpected_error_in_one_call_fails_only_its_records(ops) -> None:
    class Broken(MemoryWriter):
        async def sync_custom_objects(self, api_name: str, records: Sequence[Mapping[str, Any]]) -> list[Outcome]:
            raise RuntimeError("boom")

    w = Broken()
    got = await run([ops.pending(ops.lead("a@x.com", op_id="l")), ops.pending(ops.obj("a@x.com", op_id="o")),
                     ops.pending(ops.activity("a@x.com", op_id="act"))], w)
    assert got["l"].status == "created" and got["act"].status == "created"
    assert (got["o"].status, got["o"].reason_code, got["o"].retryable) == ("failed", "kmsync.internal_error", True)


class MemoryBulk:
    """Bulk imports answered from memory: records each custom object job; a row whose entry_id is
    in ``bad_entries`` comes back failed, as a failures file would say."""

    def __init__(self) -> None:
        self.object_jobs: list[tuple[str, list[dict[str, Any]], list[str]]] = []
        self.bad_entries: set[str] = set()

    async def import_leads(self, records: Sequence[Mapping[str, Any]]) -> BulkResult:
        raise AssertionError("no lead upsert carries data in these windows")

    async def import_custom_objects(self, api_name: str, records: Sequence[Mapping[str, Any]],
                                    dedupe_fields: Sequence[str] = ()) -> BulkResult:
        self.object_jobs.append((api_name, [dict(r) for r in records], list(dedupe_fields)))
        return BulkResult([Outcome(seq=i, status="failed", reason="Invalid value", marketo_status="failed",
                                   classification=ErrorClass.PERMANENT)
                           if r.get("entry_id") in self.bad_entries
                           else Outcome(seq=i, status="updated", marketo_status="imported")
                           for i, r in enumerate(records)])

    async def import_program_members(self, program_id: int, status_name: str,
                                     records: Sequence[Mapping[str, Any]]) -> BulkResult:
        raise AssertionError("no program member in these windows")


async def test_many_upserts_of_one_object_go_bulk_after_their_leads_are_resolved_over_rest(ops) -> None:
    w, bulk, cache = MemoryWriter(), MemoryBulk(), LeadCache(100)
    w.bad_emails.add("bad@x.com")
    bulk.bad_entries.add("1_broken")
    cache.put("known@x.com", 7)
    window = [ops.pending(ops.obj(e, entry=f"1_e{n}", op_id=f"{e}-{n}"))
              for e in ("known@x.com", "new@x.com", "bad@x.com") for n in range(2)]
    window.append(ops.pending(ops.obj("known@x.com", entry="1_broken", op_id="broken")))
    plan = plan_window(window, PlannerConfig(batch_max=300, bulk_min_records=5), known_lead=lambda e: e in cache)
    got = {d.pending.op.op_id: d for d in await WindowExecutor(w, cache, ActivityWrites(), bulk=bulk).execute(plan)}
    # Stage 1 over REST (email-only, for the ids the link field needs), stage 2 one bulk job.
    assert w.leads.keys() == {"new@x.com"}
    [(name, records, dedupe)] = bulk.object_jobs
    assert name == "kalturaUserSessionEngagement" and dedupe == ["entry_id", "email"]
    assert sorted((r["personId"], r["entry_id"]) for r in records) == [
        (7, "1_broken"), (7, "1_e0"), (7, "1_e1"), (w.leads["new@x.com"], "1_e0"), (w.leads["new@x.com"], "1_e1")]
    ok = {k for k, d in got.items() if d.status == "updated" and d.api == "bulk"}
    assert ok == {"known@x.com-0", "known@x.com-1", "new@x.com-0", "new@x.com-1"}
    assert (got["broken"].status, got["broken"].api, got["broken"].retryable) == ("failed", "bulk", False)
    # The lead whose upsert failed takes its objects along (never sent without a lead id).
    assert {(got[f"bad@x.com-{n}"].reason_code, got[f"bad@x.com-{n}"].retryable) for n in range(2)} == {
        ("1003", False)}


async def test_an_unresolved_lead_fails_its_bulk_objects_as_retryable(ops) -> None:
    class NoIds(MemoryWriter):
        async def sync_leads(self, leads: Sequence[Mapping[str, Any]]) -> LeadSyncResult:
            return LeadSyncResult([Outcome(seq=i, status="failed", reason_code="604", reason="Request timed out",
                                           classification=ErrorClass.RETRY_SOON) for i in range(len(leads))], {})

    bulk = MemoryBulk()
    window = [ops.pending(ops.obj("new@x.com", entry=f"1_e{n}", op_id=f"o{n}")) for n in range(3)]
    plan = plan_window(window, PlannerConfig(batch_max=300, bulk_min_records=3), known_lead=lambda e: False)
    assert plan.bulk_objects == {"kalturaUserSessionEngagement"}
    got = await WindowExecutor(NoIds(), LeadCache(10), ActivityWrites(), bulk=bulk).execute(plan)
    assert {(d.status, d.reason_code, d.retryable) for d in got} == {("failed", "604", True)}
    assert bulk.object_jobs == [], "nothing sent without the lead id"
    # A lead the planner took as known whose id is gone by the time the call runs (evicted from the
    # cache): LEAD_UNRESOLVED, retried (the retry upserts it email-only first).
    plan = plan_window(window, PlannerConfig(batch_max=300, bulk_min_records=3), known_lead=lambda e: True)
    assert plan.lead_calls == [] and plan.bulk_objects == {"kalturaUserSessionEngagement"}
    got = await WindowExecutor(MemoryWriter(), LeadCache(10), ActivityWrites(), bulk=bulk).execute(plan)
    assert {(d.status, d.reason_code, d.retryable, d.api) for d in got} == {
        ("failed", "kmsync.lead_unresolved", True, "bulk")}
    assert bulk.object_jobs == []


class InsertOnlyMarketo(MemoryWriter):
    """Add Custom Activities that stores what it is sent and can answer a non-JSON 200 after
    writing (code ``protocol``); Get Lead Activities reads the store back."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: list[ActivityRecord] = []
        self.garbled_answers = 0
        self.reads = 0

    async def add_custom_activities(self, activities: Sequence[ActivityRecord]) -> list[Outcome]:
        self.activity_calls.append(list(activities))
        self.stored += activities
        if self.garbled_answers:
            self.garbled_answers -= 1
            return [Outcome(seq=i, status="failed", reason_code="kmsync.protocol", reason="answer is not JSON",
                            classification=ErrorClass.RETRY_SOON) for i in range(len(activities))]
        return [Outcome(seq=i, status="created", marketo_id=f"g{len(self.stored) - len(activities) + i}")
                for i in range(len(activities))]

    async def lead_activities(self, activity_type_ids: Sequence[int], lead_ids: Sequence[int],
                              since: datetime) -> list[LeadActivity]:
        self.reads += 1
        return [LeadActivity(f"g{n}", a.lead_id, a.activity_type_id, a.primary_attribute_value,
                             a.activity_date.isoformat())
                for n, a in enumerate(self.stored) if a.lead_id in lead_ids and a.activity_type_id in activity_type_ids]


async def test_a_garbled_200_is_verified_not_resent_and_never_dead_lettered_unverified(ops) -> None:
    """A 200 whose body is not JSON ran at Marketo: the activity may be there. Its retry reads the
    lead's activity log and finds it (no second write); an absent one at the last attempt is
    dead-lettered as not applied, an unreadable log as ``kmsync.unverified``."""
    w = InsertOnlyMarketo()
    w.garbled_answers = 1
    cache, ledger = LeadCache(10), ActivityWrites()
    cache.put("a@x.com", 5)
    first = ops.pending(ops.activity("a@x.com", op_id="act"))
    got = await run([first], w, cache=cache, ledger=ledger)
    assert (got["act"].status, got["act"].reason_code, got["act"].maybe_applied) == ("failed", "kmsync.protocol", True)
    assert ledger.uncertain("act") is not None, "its intent stays"
    again = ops.pending(ops.activity("a@x.com", op_id="act"))  # transform's copy, same op_id
    got = await run([again], w, cache=cache, ledger=ledger)
    assert (got["act"].status, got["act"].reason_code, got["act"].marketo_id) == (
        "created", "kmsync.verified_written", "g0")
    assert len(w.stored) == 1 and w.reads == 1 and "act" in ledger

    # The last check of an activity that is not there: certainly not applied.
    ledger2 = ActivityWrites()
    ledger2.intend(ActivityIntent(op_id="gone", munchkin_id="111-AAA-111", lead_id=5, activity_type_id=100001,
                                  primary_attribute_value="1_abc", activity_date=T0, recorded_at=T0))
    last = ops.pending(ops.activity("a@x.com", op_id="gone"))
    last.final_check, last.uncertain_code = True, "604"
    got = await run([last], InsertOnlyMarketo(), cache=cache, ledger=ledger2)
    assert (got["gone"].status, got["gone"].reason_code, got["gone"].maybe_applied) == ("failed", "604", False)
    assert ledger2.intent("gone") is None, "resolved: a replay may send it"

    class Unreadable(InsertOnlyMarketo):
        async def lead_activities(self, activity_type_ids: Sequence[int], lead_ids: Sequence[int],
                                  since: datetime) -> list[LeadActivity]:
            raise MarketoAuthError("Identity refused client id 'x'")

    ledger3 = ActivityWrites()
    w3 = Unreadable()
    w3.garbled_answers = 1
    await run([ops.pending(ops.activity("a@x.com", op_id="dark"))], w3, cache=cache, ledger=ledger3)
    last = ops.pending(ops.activity("a@x.com", op_id="dark"))
    last.final_check = True
    got = await run([last], w3, cache=cache, ledger=ledger3)
    assert (got["dark"].reason_code, got["dark"].maybe_applied) == ("kmsync.unverified", True)
    assert ledger3.uncertain("dark") is not None and len(w3.stored) == 1, "kept for a replay to verify; not resent"


async def test_activity_intents_are_the_validated_contract_without_validating_again(ops, monkeypatch) -> None:
    """The intents recorded before an activities call are what ActivityIntent's validation makes of the same
    fields, bytes included (issue #22: built on kmsync_contracts.trusted's fast path); a value validation would
    change (a padded primary attribute value, stripped by the contract) is still validated."""
    recorded: list[ActivityIntent] = []

    class Recording:
        async def record(self, intents: list[ActivityIntent]) -> None:
            recorded.extend(intents)

        def resolve(self, op_ids: Any) -> None:
            pass

    validated = count_validations(monkeypatch, ActivityIntent)
    cache = LeadCache(10)
    cache.put("a@x.com", 5)
    cache.put("b@x.com", 6)
    window = [ops.pending(ops.activity("a@x.com", op_id="plain")),
              ops.pending(ops.activity("b@x.com", op_id="padded", entry="1_abc"))]
    window[1].op = window[1].op.model_copy(update={"primary_attribute_value": " 1_abc "})  # as no contract makes it
    plan = plan_window(window, CFG, known_lead=lambda e: e in cache, already_written=lambda i: False)

    async def emit(batch: list[Decision]) -> None:
        pass

    await WindowExecutor(MemoryWriter(), cache, ActivityWrites(), intents=Recording(), now=lambda: T0).execute(
        plan, emit)
    assert [i.op_id for i in recorded] == ["plain", "padded"]
    assert len(validated) == 1, "only the padded value went through validation"
    for intent, lead_id in zip(recorded, (5, 6), strict=True):
        want = ActivityIntent(op_id=intent.op_id, munchkin_id=ops.activity("x@x.com").munchkin_id, lead_id=lead_id,
                              activity_type_id=intent.activity_type_id, primary_attribute_value=" 1_abc ",
                              activity_date=T0, recorded_at=T0)
        assert intent == want and encode(intent) == encode(want)
        assert intent.model_fields_set == want.model_fields_set
    assert recorded[1].primary_attribute_value == "1_abc"
    assert executor._INTENT.open and executor._INTENT.given == {"op_id", "munchkin_id"}, executor._INTENT.reasons
