"""The planner: leads first and deduplicated, statuses grouped by (program, status), full calls."""

from __future__ import annotations

from kmsync_marketo.endpoints import BATCH_MAX
from marketo_sink.planner import PlannerConfig, link_record, plan_window

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
