"""The granular label: its own forward-only order, Pre vs During from the schedule, and its operation
(docs/design/granular-statuses.md §1.3, §2)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from kmsync_config.tenants import TenantsConfig, parse_tenants
from kmsync_contracts import AttendeeStatus, LeadUpsert, ProgramMemberData, ProgramMemberStatus, encode
from kmsync_contracts.granular import LABEL_SUBRANK, label_rank
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.seed import GRANULAR_STATUS_LABELS
from kmsync_contracts.topics import ATTENDEE_STATUS
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.labels import LabelOrder, LabelVerdict, judge_label
from kmsync_transform.routing import route
from kmsync_transform.status_map import attended_label
from kmsync_transform.transformer import StepResult, Transformer, TransformState

from .conftest import PROGRAM, T0, TENANTS

SRC = SourceRef(topic="in", partition=0, offset=1, key="100:200:u1")
START, END = T0 + timedelta(hours=2), T0 + timedelta(hours=6)


def scheduled_tenants() -> TenantsConfig:
    events = [dict(e) for e in TENANTS["events"]]
    events[0]["schedule"] = {"start": START.isoformat(), "end": END.isoformat()}
    return parse_tenants({**TENANTS, "events": events}, "test tenants", check_secrets=False)


def step(tenants: TenantsConfig, state: TransformState, record: AttendeeStatus) -> StepResult:
    routed = route(ATTENDEE_STATUS, encode(record), SRC, tenants, T0)
    assert routed.routed is not None, routed.dead_letter
    return Transformer(tenants, state, clock=lambda: T0).apply(routed.routed)


def labels_of(result: StepResult) -> list[str]:
    return [op.granular_status for op in result.ops if isinstance(op, ProgramMemberData)]


def test_label_rank_is_the_step_then_the_subrank() -> None:
    assert label_rank(50, "During-event visit") > label_rank(50, "Pre-event visit")
    assert label_rank(40, "Confirmed email") == label_rank(40, "Registered no confirmation required")
    assert label_rank(80, "Un-registered") > label_rank(50, "During-event visit") > label_rank(30, "Registered")
    assert set(LABEL_SUBRANK) == {"During-event visit"}


@pytest.mark.parametrize(("current", "label", "rank", "verdict"), [
    (None, "Registered", (30, 0), LabelVerdict.FORWARD),
    (("Registered", (30, 0)), "Confirmed email", (40, 0), LabelVerdict.FORWARD),
    (("Confirmed email", (40, 0)), "Registered no confirmation required", (40, 0), LabelVerdict.FORWARD),
    (("Pre-event visit", (50, 0)), "During-event visit", (50, 1), LabelVerdict.FORWARD),
    (("During-event visit", (50, 1)), "Pre-event visit", (50, 0), LabelVerdict.REGRESSION),
    (("Un-registered", (80, 0)), "Registered", (30, 0), LabelVerdict.REGRESSION),
    (("Blocked", (70, 0)), "Blocked", (70, 0), LabelVerdict.REPEAT),
])
def test_judge_label(current: Any, label: str, rank: tuple[int, int], verdict: LabelVerdict) -> None:
    assert judge_label(current, label, rank) is verdict


def test_a_label_never_trails_the_member_s_status(status_record: Callable[..., AttendeeStatus]) -> None:
    tenants, state = scheduled_tenants(), TransformState.in_memory()
    step(tenants, state, status_record("registered"))
    step(tenants, state, status_record("attended", minutes=400))  # after the end: Attended, no label
    late = step(tenants, state, status_record("confirmed", minutes=401))
    assert labels_of(late) == [] and late.regressions == 1 and late.label_regressions == 1
    assert judge_label(("Registered", (30, 0)), "Confirmed email", (40, 0), floor=(50, 0)) is LabelVerdict.REGRESSION


def test_the_order_keeps_the_higher_rank_of_a_repeated_label() -> None:
    order = LabelOrder({})
    assert order.advance("m", "SSO login", (30, 0)) is LabelVerdict.FORWARD
    assert order.advance("m", "SSO login", (40, 0)) is LabelVerdict.REPEAT
    assert order.advance("m", "Registered", (30, 0)) is LabelVerdict.REGRESSION
    assert order.current("m") == ("SSO login", (40, 0))


def test_pre_or_during_from_the_schedule(status_record: Callable[..., AttendeeStatus]) -> None:
    t = status_record("attended").status_time
    assert attended_label(t, t + timedelta(minutes=1), t + timedelta(hours=1)) == "Pre-event visit"
    assert attended_label(t, t, t + timedelta(hours=1)) == "During-event visit"
    assert attended_label(t, t - timedelta(hours=2), t - timedelta(hours=1)) is None  # after the end
    assert attended_label(t, t - timedelta(hours=2), None) == "During-event visit"  # end unknown
    assert attended_label(t, None, None) is None


def test_confirm_then_visit_before_then_during_moves_through_the_labels(
    status_record: Callable[..., AttendeeStatus],
) -> None:
    tenants, state = scheduled_tenants(), TransformState.in_memory()
    confirmed = step(tenants, state, status_record("confirmed"))
    assert [type(o) for o in confirmed.ops] == [LeadUpsert, ProgramMemberStatus, ProgramMemberData]
    assert labels_of(confirmed) == ["Confirmed email"]
    pre = step(tenants, state, status_record("attended", minutes=60))  # before START
    assert [type(o) for o in pre.ops] == [LeadUpsert, ProgramMemberStatus, ProgramMemberData]
    assert labels_of(pre) == ["Pre-event visit"]
    during = step(tenants, state, status_record("attended", minutes=180))  # within [START, END)
    # the channel status stays Attended (a repeat); only the label moves
    assert [type(o) for o in during.ops] == [ProgramMemberData] and during.repeats == 1
    op = during.ops[0]
    assert isinstance(op, ProgramMemberData)
    assert (op.program_id, op.granular_status, op.label_rank, op.email) == (
        PROGRAM, "During-event visit", (50, 1), "ann@example.com")
    assert step(tenants, state, status_record("attended", minutes=60)).ops == []  # Pre again: regression


def test_the_record_s_schedule_wins_over_the_tenants_file(status_record: Callable[..., AttendeeStatus]) -> None:
    rec = status_record("attended", minutes=60, event_start=T0, event_end=T0 + timedelta(days=1),
                        schedule_source="events_api")
    assert labels_of(step(scheduled_tenants(), TransformState.in_memory(), rec)) == ["During-event visit"]


def test_no_schedule_no_visit_label_and_a_visible_decision(
    tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus],
) -> None:
    result = step(tenants, TransformState.in_memory(), status_record("attended"))
    assert labels_of(result) == [] and [type(o) for o in result.ops] == [LeadUpsert, ProgramMemberStatus]
    [undecided] = result.decisions
    assert (undecided.decision, undecided.reason_code, undecided.program_id) == (
        "label_undecided", ReasonCode.SCHEDULE_UNKNOWN, PROGRAM)


def test_a_lower_label_of_the_same_status_is_a_decision(status_record: Callable[..., AttendeeStatus]) -> None:
    tenants, state = scheduled_tenants(), TransformState.in_memory()
    step(tenants, state, status_record("attended", minutes=180))  # During-event visit
    back = step(tenants, state, status_record("attended", minutes=60))  # Pre-event visit: status repeat
    assert back.ops == [] and back.label_regressions == 1
    [skip] = back.decisions
    assert (skip.decision, skip.detail) == (
        "forward_only_skip", {"from_label": "During-event visit", "to_label": "Pre-event visit"})


def test_reregistration_after_unregistered_writes_nothing(
    tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus],
) -> None:
    state = TransformState.in_memory()
    assert labels_of(step(tenants, state, status_record("unregistered"))) == ["Un-registered"]
    again = step(tenants, state, status_record("registered", minutes=1))
    assert again.ops == [] and again.regressions == 1 and again.label_regressions == 1
    # one visible decision (the status's), not a second one for the label
    assert [(d.decision, d.detail.get("from_status")) for d in again.decisions] == [
        ("forward_only_skip", "Un-registered")]


def test_every_label_but_the_visits_from_a_minimal_record(
    tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus],
) -> None:
    cases = {"invited": "Invited by team member", "invitedPendingRegistration": "Invited by team member to register",
             "registered": "Registered", "confirmed": "Confirmed email",
             "autoConfirmed": "Registered no confirmation required", "blocked": "Blocked",
             "unregistered": "Un-registered"}
    got = {s: labels_of(step(tenants, TransformState.in_memory(), status_record(s))) for s in cases}
    assert got == {s: [label] for s, label in cases.items()}
    sso = step(tenants, TransformState.in_memory(), status_record("registered", reg_origin="sso"))
    assert labels_of(sso) == ["SSO login"]
    visits = {labels_of(step(scheduled_tenants(), TransformState.in_memory(), status_record("attended", minutes=m)))[0]
              for m in (60, 180)}
    assert {*cases.values(), "SSO login", *visits} == set(GRANULAR_STATUS_LABELS)


def test_replay_into_empty_state_gives_the_same_op_ids(status_record: Callable[..., AttendeeStatus]) -> None:
    records = [status_record("confirmed"), status_record("attended", minutes=60),
               status_record("attended", minutes=180)]

    def ids() -> list[str]:
        state = TransformState.in_memory()
        return [o.op_id for r in records for o in step(scheduled_tenants(), state, r).ops]
    assert ids() == ids()


def test_no_label_without_program_status_output(status_record: Callable[..., AttendeeStatus]) -> None:
    events = [dict(e) for e in TENANTS["events"]]
    events[0]["outputs"] = {"program_status": False}
    tenants = parse_tenants({**TENANTS, "events": events}, "test tenants", check_secrets=False)
    assert labels_of(step(tenants, TransformState.in_memory(), status_record("confirmed"))) == []


def test_label_overrides_and_the_after_event_visit_rule(status_record: Callable[..., AttendeeStatus]) -> None:
    events = [dict(e) for e in TENANTS["events"]]
    events[0]["schedule"] = {"start": START.isoformat(), "end": END.isoformat()}
    events[0]["label_overrides"] = {"registered": "SSO login", "blocked": None}
    events[0]["visit_rules"] = {"after_event_visit": "During-event visit"}
    tenants = parse_tenants({**TENANTS, "events": events}, "test tenants", check_secrets=False)
    assert labels_of(step(tenants, TransformState.in_memory(), status_record("registered"))) == ["SSO login"]
    assert labels_of(step(tenants, TransformState.in_memory(), status_record("blocked"))) == []
    late = status_record("attended", minutes=400)  # after END
    assert labels_of(step(tenants, TransformState.in_memory(), late)) == ["During-event visit"]
    assert labels_of(step(scheduled_tenants(), TransformState.in_memory(), late)) == []


def test_a_label_override_must_be_a_seed_label() -> None:
    events = [dict(e) for e in TENANTS["events"]]
    events[0]["label_overrides"] = {"registered": "Registered twice"}
    with pytest.raises(ValueError, match="not one of the seed's granular labels"):
        parse_tenants({**TENANTS, "events": events}, "test tenants", check_secrets=False)
