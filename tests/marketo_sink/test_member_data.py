"""Issue #16 §1.4: granular labels go to the program membership with Sync Program Member Data, planned
one per lead and program (the highest label rank), sent after the program's status calls, over real
HTTP to the sandbox (docs/reference/marketo-api.md §13.4)."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from kmsync_config.tenants import ProgramMemberFields
from kmsync_contracts.granular import label_rank
from kmsync_contracts.marketo_ops import ProgramMemberData
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.seed import STATUS_STEPS
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import MarketoSettings
from kmsync_sink.decisions import Decision
from kmsync_sink.executor import WindowExecutor
from kmsync_sink.member_data import MemberDataWriter
from kmsync_sink.memory import ActivityWrites, LeadCache
from kmsync_sink.pending import PendingOp
from kmsync_sink.planner import PlannerConfig, plan_window
from marketo_sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from marketo_sandbox.testing import SandboxHandle, running_sandbox

from .conftest import MUNCHKIN, OpFactory

PROGRAM = 1001
STATUS_OF = {"Registered": "Registered", "Confirmed email": "Confirmed", "Pre-event visit": "Attended",
             "During-event visit": "Attended", "Un-registered": "Un-registered"}


def label(ops: OpFactory, email: str, text: str, program: int = PROGRAM) -> ProgramMemberData:
    return ProgramMemberData(**ops._base(email, MUNCHKIN, None), program_id=program, granular_status=text,
                             label_rank=label_rank(STATUS_STEPS[STATUS_OF[text]], text))


def client(sb: SandboxHandle) -> MarketoClient:
    settings = MarketoSettings(endpoint=sb.base_url, client_id=DEFAULT_CLIENT_ID,
                               client_secret=SecretStr(DEFAULT_CLIENT_SECRET), allow_insecure_http=True)
    return MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry())


def test_one_input_per_lead_and_program_with_the_highest_rank(ops: OpFactory) -> None:
    window = [ops.pending(op) for op in (
        label(ops, "a@x.com", "Registered"), label(ops, "a@x.com", "During-event visit"),
        label(ops, "a@x.com", "Pre-event visit"), label(ops, "b@x.com", "Confirmed email"),
        label(ops, "a@x.com", "Registered", program=1002))]
    plan = plan_window(window, PlannerConfig(batch_max=300), known_lead=lambda e: True)
    assert [(c.program_id, [(i.email, i.op.granular_status, len(i.ops)) for i in c.items])
            for c in plan.member_data_calls] == [
        (1001, [("a@x.com", "During-event visit", 3), ("b@x.com", "Confirmed email", 1)]),
        (1002, [("a@x.com", "Registered", 1)])]
    assert plan.calls == 2 and sorted(plan.records_per_call()) == [1, 2]


def test_labels_are_cut_into_calls_of_300_and_a_short_tail_waits(ops: OpFactory) -> None:
    window = [ops.pending(label(ops, f"p{i}@x.com", "Registered")) for i in range(301)]
    plan = plan_window(window, PlannerConfig(batch_max=300, min_call_records=290), known_lead=lambda e: True)
    assert [len(c.items) for c in plan.member_data_calls] == [300] and len(plan.deferred) == 1
    plan = plan_window(window, PlannerConfig(batch_max=300), known_lead=lambda e: True)
    assert [len(c.items) for c in plan.member_data_calls] == [300, 1]


async def run(sb: SandboxHandle, pending: list[PendingOp], fields: ProgramMemberFields | None = None,
              cache: LeadCache | None = None) -> list[Decision]:
    async with client(sb) as mc:
        executor = WindowExecutor(mc, cache or LeadCache(100), ActivityWrites(),
                                  member_data=MemberDataWriter(mc, fields, retries_1013=2))
        plan = plan_window(pending, PlannerConfig(batch_max=300), known_lead=lambda e: False)
        return await executor.execute(plan)


def members(sb: SandboxHandle) -> dict[int, dict[str, Any]]:
    return {m["leadId"]: m for m in sb.dump()["programMembers"]}


async def test_status_then_label_in_one_window_and_a_label_alone_later(ops: OpFactory) -> None:
    async with running_sandbox(preset="kaltura") as sb:
        cache = LeadCache(100)
        first = [ops.pending(ops.lead("ann@x.com")), ops.pending(ops.status("ann@x.com", "Attended")),
                 ops.pending(label(ops, "ann@x.com", "Pre-event visit"))]
        decisions = await run(sb, first, cache=cache)
        assert {d.pending.op.kind: d.status for d in decisions} == {
            "lead_upsert": "created", "program_member_status": "created", "program_member_data": "updated"}
        [member] = members(sb).values()
        assert (member["statusName"], member["kalturaGranularStatus"]) == ("Attended", "Pre-event visit")
        [during] = await run(sb, [ops.pending(label(ops, "ann@x.com", "During-event visit"))], cache=cache)
        assert during.status == "updated"
        [member] = members(sb).values()
        assert member["kalturaGranularStatus"] == "During-event visit"
        # Marketo's "Change Program Member Data" activities read the label's path, in order (§13.4)
        changes = [a for a in sb.dump()["activities"] if a["activityTypeId"] == 175]
        assert [next(x["value"] for x in a["attributes"] if x["name"] == "New Value") for a in changes] == [
            "Pre-event visit", "During-event visit"]


async def test_a_label_without_membership_is_retried_then_dead_lettered(ops: OpFactory) -> None:
    async with running_sandbox(preset="kaltura") as sb:
        p = ops.pending(label(ops, "bob@x.com", "Registered"))
        [first] = [d for d in await run(sb, [p]) if d.pending is p]
        assert (first.status, first.reason_code, first.retryable) == ("failed", "1013", True)
        p.attempts = 2  # the executor counts this attempt as the third; retries_1013=2
        [last] = [d for d in await run(sb, [p]) if d.pending is p]
        assert (last.status, last.reason_code, last.retryable) == ("failed", "1013", False)


async def test_a_missing_field_skips_the_labels_without_a_call(ops: OpFactory) -> None:
    async with running_sandbox(preset="kaltura") as sb:
        window = [ops.pending(ops.lead("cy@x.com")), ops.pending(ops.status("cy@x.com", "Registered")),
                  ops.pending(label(ops, "cy@x.com", "Registered"))]
        decisions = await run(sb, window, ProgramMemberFields(granular_status="notThere"))
        [skipped] = [d for d in decisions if d.pending.op.kind == "program_member_data"]
        assert (skipped.status, skipped.reason_code) == ("skipped", ReasonCode.SCHEMA_MISSING)
        assert "Field Management" in (skipped.reason or "") or "API name" in (skipped.reason or "")
        assert sb.instance().call_count(endpoint="POST /rest/v1/programs/{programId}/members.json") == 0


async def test_mirror_into_status_reason(ops: OpFactory) -> None:
    async with running_sandbox(preset="kaltura") as sb:
        window = [ops.pending(ops.lead("di@x.com")), ops.pending(ops.status("di@x.com", "Confirmed")),
                  ops.pending(label(ops, "di@x.com", "Confirmed email"))]
        await run(sb, window, ProgramMemberFields(mirror_to_status_reason=True))
        [member] = members(sb).values()
        assert member["kalturaGranularStatus"] == member["statusReason"] == "Confirmed email"


async def test_a_retried_older_label_never_overwrites_a_newer_one(ops: OpFactory) -> None:
    async with running_sandbox(preset="kaltura") as sb, client(sb) as mc:
        executor = WindowExecutor(mc, LeadCache(100), ActivityWrites(), member_data=MemberDataWriter(mc))

        async def window(*pending: PendingOp) -> list[Decision]:
            return await executor.execute(plan_window(list(pending), PlannerConfig(batch_max=300),
                                                      known_lead=lambda e: False))
        pre = ops.pending(label(ops, "eve@x.com", "Pre-event visit"))
        [failed] = [d for d in await window(pre) if d.pending is pre]  # no membership yet: 1013, retried
        assert (failed.reason_code, failed.retryable) == ("1013", True)
        during = ops.pending(label(ops, "eve@x.com", "During-event visit"))
        await window(ops.pending(ops.status("eve@x.com", "Attended")), during)
        [retried] = [d for d in await window(pre) if d.pending is pre]
        assert (retried.status, retried.reason_code) == ("skipped", ReasonCode.FORWARD_ONLY_SKIP)
        [member] = members(sb).values()
        assert member["kalturaGranularStatus"] == "During-event visit"
