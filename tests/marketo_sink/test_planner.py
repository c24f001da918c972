"""The planner: leads first and deduplicated, statuses grouped by (program, status), full calls."""

from __future__ import annotations

from kmsync_marketo.endpoints import BATCH_MAX
from kmsync_sink.planner import PlannerConfig, link_record, plan_window

CFG = PlannerConfig(batch_max=BATCH_MAX)


def never(_: str) -> bool:
    return False


def test_leads_are_deduplicated_by_email_with_later_fields_winning(ops) -> None:
    window = [
        ops.pending(ops.lead("a@x.com", firstName="Ann", lastName="Old")),
        ops.pending(ops.lead("b@x.com", firstName="Bob")),
        ops.pending(ops.lead("a@x.com", lastName="New")),
    ]
    plan = plan_window(window, CFG, known_lead=never)
    assert len(plan.lead_calls) == 1
    inputs = {li.email: li for li in plan.lead_calls[0].inputs}
    assert set(inputs) == {"a@x.com", "b@x.com"}
    assert inputs["a@x.com"].record() == {"firstName": "Ann", "lastName": "New", "email": "a@x.com"}
    assert len(inputs["a@x.com"].ops) == 2, "both upserts answered by the one input"


def test_unknown_leads_of_other_operations_are_upserted_email_only(ops) -> None:
    window = [ops.pending(ops.status("new@x.com")), ops.pending(ops.status("cached@x.com"))]
    plan = plan_window(window, CFG, known_lead=lambda e: e == "cached@x.com")
    assert [li.record() for li in plan.lead_calls[0].inputs] == [{"email": "new@x.com"}]
    assert plan.lead_calls[0].inputs[0].ops == []


def test_statuses_grouped_by_program_and_status_one_member_per_lead(ops) -> None:
    window = [
        ops.pending(ops.status("a@x.com", "Registered")),
        ops.pending(ops.status("b@x.com", "Registered")),
        ops.pending(ops.status("a@x.com", "Registered")),
        ops.pending(ops.status("a@x.com", "Attended")),
        ops.pending(ops.status("c@x.com", "Registered", program=2002)),
    ]
    plan = plan_window(window, CFG, known_lead=lambda e: True)
    groups = {(c.program_id, c.status_name): [m.email for m in c.members] for c in plan.status_calls}
    assert groups == {
        (1001, "Registered"): ["a@x.com", "b@x.com"],
        (1001, "Attended"): ["a@x.com"],
        (2002, "Registered"): ["c@x.com"],
    }
    # Within a program, lower steps go first.
    order = [(c.program_id, c.status_name) for c in plan.status_calls]
    assert order.index((1001, "Registered")) < order.index((1001, "Attended"))


def test_calls_carry_at_most_the_batch_max(ops) -> None:
    window = [ops.pending(ops.lead(f"u{i}@x.com")) for i in range(BATCH_MAX * 2 + 5)]
    plan = plan_window(window, CFG, known_lead=never)
    assert plan.records_per_call() == [BATCH_MAX, BATCH_MAX, 5]


def test_backlog_defers_short_tails_so_calls_stay_full(ops) -> None:
    window = [ops.pending(ops.status(f"u{i}@x.com")) for i in range(BATCH_MAX + 10)]
    window += [ops.pending(ops.activity(f"u{i}@x.com", op_id=f"act{i}")) for i in range(20)]
    cfg = PlannerConfig(batch_max=BATCH_MAX, min_call_records=290)
    plan = plan_window(window, cfg, known_lead=lambda e: True)
    assert plan.records_per_call() == [BATCH_MAX]
    assert len(plan.deferred) == 30
    # An aged window (min_call_records=0) sends everything.
    plan = plan_window(window, CFG, known_lead=lambda e: True)
    assert sorted(plan.records_per_call()) == [10, 20, BATCH_MAX] and plan.deferred == []


def test_deferred_lead_takes_its_dependents_along(ops) -> None:
    window = [ops.pending(ops.lead(f"u{i}@x.com")) for i in range(BATCH_MAX + 1)]
    last = f"u{BATCH_MAX}@x.com"
    window += [ops.pending(ops.status(f"u{i}@x.com")) for i in range(BATCH_MAX + 1)]
    cfg = PlannerConfig(batch_max=BATCH_MAX, min_call_records=290)
    plan = plan_window(window, cfg, known_lead=never)
    deferred_emails = {p.op.email for p in plan.deferred}
    assert last in deferred_emails
    assert all(m.email != last for c in plan.status_calls for m in c.members)


def test_a_window_that_would_send_nothing_sends_everything(ops) -> None:
    window = [ops.pending(ops.lead(f"u{i}@x.com")) for i in range(5)]
    plan = plan_window(window, PlannerConfig(batch_max=BATCH_MAX, min_call_records=290), known_lead=never)
    assert plan.records_per_call() == [5] and plan.deferred == []


def test_custom_objects_deduplicated_by_dedupe_fields(ops) -> None:
    window = [
        ops.pending(ops.obj("a@x.com", entry="e1", plays=1)),
        ops.pending(ops.obj("a@x.com", entry="e1", plays=4)),
        ops.pending(ops.obj("a@x.com", entry="e2", plays=9)),
    ]
    plan = plan_window(window, CFG, known_lead=lambda e: True)
    (call,) = plan.object_calls
    assert [(i.record["entry_id"], i.record["plays"], len(i.ops)) for i in call.items] == [
        ("e1", 4, 2), ("e2", 9, 1)]


def test_activities_sent_once_per_op_id_and_never_when_ledger_has_them(ops) -> None:
    window = [
        ops.pending(ops.activity("a@x.com", op_id="act-1")),
        ops.pending(ops.activity("a@x.com", op_id="act-1")),
        ops.pending(ops.activity("a@x.com", op_id="act-2")),
    ]
    plan = plan_window(window, CFG, known_lead=lambda e: True, already_written=lambda i: i == "act-2")
    (call,) = plan.activity_calls
    assert [(a.op.op_id, len(a.ops)) for a in call.items] == [("act-1", 2)]
    assert [p.op.op_id for p in plan.already_written] == ["act-2"]


def test_bulk_decision_for_large_windows(ops) -> None:
    window = [ops.pending(ops.lead(f"u{i}@x.com")) for i in range(50)]
    window += [ops.pending(ops.activity(f"other{i}@x.com")) for i in range(60)]
    plan = plan_window(window, PlannerConfig(BATCH_MAX, bulk_min_records=50), known_lead=never)
    assert plan.use_bulk and [len(c.inputs) for c in plan.bulk_lead_calls] == [50]
    # Email-only upserts (to learn ids, which bulk import does not return) stay on REST ...
    assert [len(c.inputs) for c in plan.lead_calls] == [60]
    # ... and do not count towards the bulk threshold.
    assert not plan_window(window, PlannerConfig(BATCH_MAX, bulk_min_records=51), known_lead=never).use_bulk
    assert not plan_window(window, CFG, known_lead=never).use_bulk


def test_link_field_filled_with_lead_id() -> None:
    assert link_record("kalturaUserSessionEngagement", {"entry_id": "e"}, 42)["personId"] == 42
    assert "personId" not in link_record("kalturaUserPolls_c", {"entry_id": "e"}, 42)


def test_link_field_in_dedupe_key_keeps_leads_apart(ops) -> None:
    a = ops.obj("a@x.com", entry="e1")
    b = ops.obj("b@x.com", entry="e1")
    a = a.model_copy(update={"dedupe_fields": ("entry_id", "personId")})
    b = b.model_copy(update={"dedupe_fields": ("entry_id", "personId")})
    plan = plan_window([ops.pending(a), ops.pending(b)], CFG, known_lead=lambda e: True)
    assert [i.email for i in plan.object_calls[0].items] == ["a@x.com", "b@x.com"]


def test_a_lead_whose_lower_status_waits_keeps_its_higher_status_waiting_too(ops) -> None:
    window = [ops.pending(ops.status(f"u{i}@x.com", "Registered")) for i in range(BATCH_MAX + 5)]
    late = [f"u{i}@x.com" for i in range(BATCH_MAX, BATCH_MAX + 5)]
    window += [ops.pending(ops.status(e, "Attended")) for e in late]
    window += [ops.pending(ops.status(f"v{i}@x.com", "Attended")) for i in range(BATCH_MAX)]
    plan = plan_window(window, PlannerConfig(batch_max=BATCH_MAX, min_call_records=290), known_lead=lambda e: True)
    sent_attended = {m.email for c in plan.status_calls if c.status_name == "Attended" for m in c.members}
    assert not sent_attended & set(late), "Attended must not overtake a deferred Registered"
    assert {p.op.email for p in plan.deferred} == set(late)


def engagement_backfill(ops, leads: int, entries: int) -> list:
    """Custom object upserts only (a historical engagement backfill): ``entries`` per lead."""
    return [ops.pending(ops.obj(f"u{i}@x.com", entry=f"1_e{e}", plays=e)) for i in range(leads)
            for e in range(entries)]


def test_a_custom_object_backfill_goes_bulk_on_its_own_count(ops) -> None:
    window = engagement_backfill(ops, leads=400, entries=3)  # 1200 objects, no lead upserts with data
    known = {f"u{i}@x.com" for i in range(100)}
    plan = plan_window(window, PlannerConfig(BATCH_MAX, min_call_records=290, bulk_min_records=1000),
                       known_lead=lambda e: e in known)
    assert not plan.use_bulk and plan.bulk_lead_calls == [], "leads keep their rule: no upsert carries data"
    assert plan.bulk_objects == {"kalturaUserSessionEngagement"}
    (call,) = plan.object_calls
    assert len(call.items) == 1200, "one bulk job for the object, not calls of 300"
    # The 300 leads the cache lacks are upserted email-only over REST (their ids fill personId).
    assert [len(c.inputs) for c in plan.lead_calls] == [300]
    assert all(li.ops == [] for c in plan.lead_calls for li in c.inputs)
    assert plan.deferred == []


def test_objects_below_the_threshold_or_with_bulk_off_go_through_rest(ops) -> None:
    window = engagement_backfill(ops, leads=350, entries=2)  # 700 objects
    below = plan_window(window, PlannerConfig(BATCH_MAX, bulk_min_records=701), known_lead=lambda e: True)
    off = plan_window(window, PlannerConfig(BATCH_MAX, bulk_min_records=0), known_lead=lambda e: True)
    for plan in (below, off):
        assert plan.bulk_objects == set() and not plan.use_bulk
        assert [len(c.items) for c in plan.object_calls] == [300, 300, 100]
    at = plan_window(window, PlannerConfig(BATCH_MAX, bulk_min_records=700), known_lead=lambda e: True)
    assert at.bulk_objects == {"kalturaUserSessionEngagement"} and [len(c.items) for c in at.object_calls] == [700]


def test_the_object_count_is_after_deduplication_and_per_object(ops) -> None:
    window = engagement_backfill(ops, leads=10, entries=1)  # 10 distinct objects ...
    window += [ops.pending(ops.obj(f"u{i}@x.com", entry="1_e0", plays=9)) for i in range(10)]  # ... updated again
    polls = ops.obj("u0@x.com", entry="1_poll").model_copy(update={"object_name": "kalturaUserPolls_c"})
    window.append(ops.pending(polls))
    plan = plan_window(window, PlannerConfig(BATCH_MAX, bulk_min_records=11), known_lead=lambda e: True)
    assert plan.bulk_objects == set(), "20 upserts of 10 objects stay under 11"
    plan = plan_window(window, PlannerConfig(BATCH_MAX, bulk_min_records=10), known_lead=lambda e: True)
    assert plan.bulk_objects == {"kalturaUserSessionEngagement"}, "the one poll object stays on REST"
    by_name = {c.object_name: len(c.items) for c in plan.object_calls}
    assert by_name == {"kalturaUserSessionEngagement": 10, "kalturaUserPolls_c": 1}


def test_a_bulk_window_for_leads_sends_every_object_bulk(ops) -> None:
    window = [ops.pending(ops.lead(f"u{i}@x.com", firstName="U")) for i in range(50)]
    window += [ops.pending(ops.obj(f"u{i}@x.com")) for i in range(5)]
    plan = plan_window(window, PlannerConfig(BATCH_MAX, bulk_min_records=50), known_lead=never)
    assert plan.use_bulk and plan.bulk_objects == {"kalturaUserSessionEngagement"}


def test_every_operation_kind_has_a_planning_step_and_an_unknown_one_is_refused(ops) -> None:
    """The split by kind (issue #22) must not drop a kind silently: each OperationKind is planned, and an
    operation of a kind without a step fails the window instead of vanishing without an outcome."""
    from typing import get_args

    import pytest

    from kmsync_contracts.marketo_ops import OperationKind
    from kmsync_sink.planner import _AFTER_LEADS

    assert _AFTER_LEADS | {"lead_upsert"} == set(get_args(OperationKind))
    stray = ops.activity("a@x.com").model_copy(update={"kind": "webinar_attendance"})  # not validated
    with pytest.raises(ValueError, match="webinar_attendance"):
        plan_window([ops.pending(ops.lead("a@x.com")), ops.pending(stray)], CFG, known_lead=lambda e: True)
