"""Routing and the stateful transformer, with dicts as tables (no broker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kmsync_config.tenants import TenantsConfig
from kmsync_contracts import (
    AttendeeStatus,
    CustomActivity,
    CustomObjectUpsert,
    LeadUpsert,
    PollResponse,
    ProgramMemberData,
    ProgramMemberStatus,
    SessionEngagement,
    encode,
)
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import ATTENDEE_STATUS, POLL_RESPONSES, SESSION_ENGAGEMENT
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.emails import normalise_email
from kmsync_transform.ledger import ActivityLedger
from kmsync_transform.routing import RouteResult, route
from kmsync_transform.staged import StagedMapping
from kmsync_transform.transformer import StepResult, Transformer, TransformState

from .conftest import LEGACY_EVENT, MUNCHKIN, OVERRIDE_EVENT, PROGRAM, T0

SRC = SourceRef(topic="in", partition=0, offset=1, key="100:200:u1")


def run(tenants: TenantsConfig, state: TransformState, spec: Any, record: Any) -> tuple[RouteResult, StepResult]:
    routed = route(spec, encode(record), SRC, tenants, T0)
    assert routed.routed is not None, routed.dead_letter
    return routed, Transformer(tenants, state, clock=lambda: T0).apply(routed.routed)


def test_email_normalisation() -> None:
    assert normalise_email("  Ann@Example.COM ") == "ann@example.com"
    assert normalise_email("mailto:bob@x.io") == "bob@x.io"
    for bad in (None, "", "   ", "no-at-sign", "a@b", "two@@x.io", "sp ace@x.io"):
        assert normalise_email(bad) is None, bad


def test_dead_letter_reasons(tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus]) -> None:
    bad = route(ATTENDEE_STATUS, b'{"partner_id": "x"}', SRC, tenants, T0)
    assert bad.dead_letter is not None and bad.dead_letter.reason_code == ReasonCode.UNDECODABLE
    assert "partner_id" in bad.dead_letter.reason and bad.dead_letter.payload == {"partner_id": "x"}
    garbage = route(ATTENDEE_STATUS, b"\xff not json", SRC, tenants, T0)
    assert garbage.dead_letter is not None and isinstance(garbage.dead_letter.payload, str)
    no_email = route(ATTENDEE_STATUS, encode(status_record("registered", email=None)), SRC, tenants, T0)
    assert no_email.dead_letter is not None and no_email.dead_letter.reason_code == ReasonCode.UNUSABLE_EMAIL
    assert no_email.tenant == "acme-summit"
    junk_email = route(ATTENDEE_STATUS, encode(status_record("registered", email="n/a")), SRC, tenants, T0)
    assert junk_email.dead_letter is not None and junk_email.dead_letter.reason_code == ReasonCode.UNUSABLE_EMAIL
    other = route(ATTENDEE_STATUS, encode(status_record("registered", event=999)), SRC, tenants, T0)
    assert other.dead_letter is not None and other.dead_letter.reason_code == ReasonCode.EVENT_NOT_CONFIGURED
    assert other.dead_letter.source_offset == 1 and other.dead_letter.stage == "transform"


def test_status_sequence_yields_lead_then_status_and_drops_regressions(
    tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus],
) -> None:
    state = TransformState.in_memory()
    _, first = run(tenants, state, ATTENDEE_STATUS, status_record("registered", first_name="Ann", last_name="Lee"))
    lead, pms, label = first.ops
    assert isinstance(lead, LeadUpsert) and isinstance(pms, ProgramMemberStatus)
    assert isinstance(label, ProgramMemberData) and label.granular_status == "Registered"
    assert lead.email == pms.email == "ann@example.com" and lead.munchkin_id == MUNCHKIN
    assert lead.fields == {"firstName": "Ann", "lastName": "Lee"}
    assert (pms.program_id, pms.status_name, pms.step, pms.granular_status) == (
        PROGRAM, "Registered", 30, "Registered")
    _, back = run(tenants, state, ATTENDEE_STATUS, status_record("invited", minutes=1))
    assert back.ops == [] and back.regressions == 1
    _, again = run(tenants, state, ATTENDEE_STATUS, status_record("registered", minutes=2))
    assert again.ops == [] and again.repeats == 1
    _, attended = run(tenants, state, ATTENDEE_STATUS, status_record("attended", minutes=3))
    assert [type(o) for o in attended.ops] == [LeadUpsert, ProgramMemberStatus]  # no schedule: no visit label
    # the same fact replayed into a fresh state gives the same op ids
    _, replay = run(tenants, TransformState.in_memory(), ATTENDEE_STATUS,
                    status_record("registered", first_name="Ann", last_name="Lee"))
    assert [o.op_id for o in replay.ops] == [o.op_id for o in first.ops]


def test_status_overrides_apply_per_event(tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus]) -> None:
    _, res = run(tenants, TransformState.in_memory(), ATTENDEE_STATUS,
                 status_record("participatedPostEvent", event=OVERRIDE_EVENT))
    pms = res.ops[1]
    assert isinstance(pms, ProgramMemberStatus) and (pms.status_name, pms.step) == ("Attended", 50)


def test_activity_once_per_person_and_session(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement],
) -> None:
    state = TransformState.in_memory()
    _, live = run(tenants, state, SESSION_ENGAGEMENT, engagement_record(final=False, plays=1))
    assert [type(o) for o in live.ops] == [CustomObjectUpsert]
    _, final = run(tenants, state, SESSION_ENGAGEMENT, engagement_record(final=True, plays=2, minutes=5))
    obj, act = final.ops
    assert isinstance(obj, CustomObjectUpsert) and isinstance(act, CustomActivity)
    assert obj.object_name == "kalturaUserSessionEngagement" and obj.dedupe_fields == ("entry_id", "personId")
    assert act.activity_type == "userSessionEngagement" and act.primary_attribute_value == "0_keynote"
    assert act.attributes["plays"] == 2 and act.activity_date == final.ops[1].source_time
    assert obj.op_id != live.ops[0].op_id  # new figures, new upsert
    # a replay and a late final snapshot update the object but never add the activity again
    _, replay = run(tenants, state, SESSION_ENGAGEMENT, engagement_record(final=True, plays=2, minutes=5))
    _, late = run(tenants, state, SESSION_ENGAGEMENT, engagement_record(final=True, plays=4, minutes=9))
    assert [type(o) for o in replay.ops] == [CustomObjectUpsert] and replay.ledger_hits == 1
    assert [type(o) for o in late.ops] == [CustomObjectUpsert] and late.ledger_hits == 1
    # ... and each says so on transform.decisions.v1, naming the activity kept and the object written
    assert final.decisions == [] and live.decisions == []
    [kept] = late.decisions
    assert (kept.decision, kept.reason_code, kept.op_id) == ("activity_once", "kmsync.activity_once", late.ops[0].op_id)
    assert kept.detail == {"activity_op_id": act.op_id} and kept.session_id == "0_keynote"
    assert [d.decision for d in replay.decisions] == ["activity_once"]
    # another session of the same person gets its own activity
    _, other = run(tenants, state, SESSION_ENGAGEMENT, engagement_record(entry="0_breakout"))
    assert [type(o) for o in other.ops] == [CustomObjectUpsert, CustomActivity]
    assert len(state.ledger) == 2


def test_ledger_claims_once() -> None:
    ledger = ActivityLedger({})
    assert ledger.claim("a", "t1") and not ledger.claim("a", "t2") and ledger.seen("a")


def test_legacy_event_gets_activities_only(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement],
    poll_record: Callable[..., PollResponse],
) -> None:
    state = TransformState.in_memory()
    _, res = run(tenants, state, SESSION_ENGAGEMENT, engagement_record(event=LEGACY_EVENT, channel_id=5, plays=1))
    [act] = res.ops
    assert isinstance(act, CustomActivity)
    assert act.attributes["channel_id"] == 0 and act.attributes["channel_name"] == ""
    _, polls = run(tenants, state, POLL_RESPONSES, poll_record("p1", event=LEGACY_EVENT))
    assert polls.ops == [] and polls.dead_letters == []


def test_eleventh_poll_is_dead_lettered_with_the_reason(
    tenants: TenantsConfig, poll_record: Callable[..., PollResponse],
) -> None:
    state = TransformState.in_memory()
    for i in range(1, 11):
        _, res = run(tenants, state, POLL_RESPONSES, poll_record(f"p{i}"))
        [op] = res.ops
        assert isinstance(op, CustomObjectUpsert) and op.object_name == "kalturaUserPolls_c"
        assert op.dedupe_fields == ("entry_id", "email") and f"poll_{i}_answer" in op.record
    _, eleventh = run(tenants, state, POLL_RESPONSES, poll_record("p11"))
    assert eleventh.ops == []
    [dl] = eleventh.dead_letters
    assert dl.reason_code == ReasonCode.TOO_MANY_POLLS and "p11" in dl.reason and "poll_10" in dl.reason
    assert isinstance(dl.payload, dict) and dl.payload["poll_id"] == "p11"


def test_staged_mapping_writes_only_on_commit() -> None:
    backing: dict[str, Any] = {"a": 1}
    staged = StagedMapping(backing)
    staged["b"] = 2
    del staged["a"]
    assert "b" in staged and "a" not in staged and staged.get("a") is None and dict(staged) == {"b": 2}
    assert backing == {"a": 1}
    staged.commit()
    assert backing == {"b": 2}
    staged["c"] = 3
    staged.discard()
    assert backing == {"b": 2}
