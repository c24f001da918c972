"""transform.decisions.v1: each decision transform makes about dropped or changed data is a record with
the person's correlation keys (docs/design/granular-statuses.md §4)."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from kmsync_common import configure_email_hash_key, hash_email
from kmsync_common.metrics_text import sample_sum
from kmsync_config.tenants import TenantsConfig
from kmsync_contracts import AttendeeStatus, PollResponse, decode, encode
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    POLL_RESPONSES,
    TRANSFORM_DECISIONS,
    TRANSFORM_DLQ,
    TopicSpec,
)
from kmsync_transform import decisions
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.keyed import Envelope, KeyedSteps
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.routing import RouteResult, route
from kmsync_transform.transformer import Transformer, TransformState

from .conftest import EVENT, MUNCHKIN, PARTNER, PROGRAM, T0
from .test_keyed_steps import DictState

SOURCE = SourceRef(topic="kaltura.attendee-status.v1", partition=2, offset=41, key=f"{PARTNER}:{EVENT}:u1")


def test_a_forward_only_skip_names_both_statuses_and_the_person(status_record: Callable[..., AttendeeStatus]) -> None:
    configure_email_hash_key(b"test-key")
    try:
        d = decisions.status_skip(status_record("registered", source_ref="report 7 page 2"), SOURCE, T0,
                                  email="ann@example.com", munchkin_id=MUNCHKIN, program_id=PROGRAM,
                                  current=("Un-registered", 80), new=("Registered", 30))
        assert d.person_key == hash_email("ann@example.com") != "email#none"
    finally:
        configure_email_hash_key(None)
    assert (d.decision, d.reason_code) == ("forward_only_skip", ReasonCode.FORWARD_ONLY_SKIP)
    assert d.detail == {"from_status": "Un-registered", "to_status": "Registered", "from_step": 80, "to_step": 30}
    assert (d.partner_id, d.virtual_event_id, d.user_id, d.session_id) == (PARTNER, EVENT, "u1", None)
    assert (d.munchkin_id, d.program_id, d.email, d.op_id) == (MUNCHKIN, PROGRAM, "ann@example.com", None)
    assert (d.source_topic, d.source_partition, d.source_offset, d.source_ref) == (
        "kaltura.attendee-status.v1", 2, 41, "report 7 page 2")
    assert "Registered" in d.reason and "Un-registered" in d.reason
    assert d.partition_key() == f"{PARTNER}:{EVENT}:u1"
    assert decode(TRANSFORM_DECISIONS, encode(d)) == d


def test_an_unusable_email_is_missing_or_invalid(status_record: Callable[..., AttendeeStatus]) -> None:
    missing = decisions.unusable_email(status_record("registered", email=" "), SOURCE, T0, munchkin_id=MUNCHKIN,
                                       program_id=PROGRAM)
    invalid = decisions.unusable_email(status_record("registered", email="not-an-address"), SOURCE, T0,
                                       munchkin_id=MUNCHKIN, program_id=PROGRAM)
    none = decisions.unusable_email(status_record("registered", email=None), SOURCE, T0, munchkin_id=MUNCHKIN,
                                    program_id=PROGRAM)
    assert [d.detail["email_problem"] for d in (missing, invalid, none)] == ["missing", "invalid", "missing"]
    assert all(d.email is None and d.reason_code == ReasonCode.UNUSABLE_EMAIL for d in (missing, invalid, none))
    assert none.person_key == "email#none"
    assert invalid.person_key == hash_email("not-an-address")  # the email as Kaltura gave it, hashed


def test_a_truncation_names_the_field_lengths_and_the_op(poll_record: Callable[..., PollResponse]) -> None:
    d = decisions.truncated(poll_record("p1", answer="x" * 1600), SOURCE, T0, email="ann@example.com",
                            munchkin_id=MUNCHKIN, program_id=PROGRAM, op_id="custom_object_upsert:abc",
                            field="poll_1_answer", original_length=1600, kept_length=1500)
    assert (d.decision, d.reason_code, d.op_id, d.session_id) == (
        "truncated", ReasonCode.TRUNCATED, "custom_object_upsert:abc", "0_keynote")
    assert d.detail == {"field": "poll_1_answer", "original_length": 1600, "kept_length": 1500}


def test_too_many_polls_and_a_moved_poll_name_the_poll_and_positions(poll_record: Callable[..., PollResponse]) -> None:
    many = decisions.too_many_polls(poll_record("p11"), SOURCE, T0, email="ann@example.com", munchkin_id=MUNCHKIN,
                                    program_id=PROGRAM, poll_id="p11", position=11, slots=10)
    assert (many.decision, many.reason_code, many.detail) == (
        "too_many_polls", ReasonCode.TOO_MANY_POLLS, {"poll_id": "p11", "position": 11})
    moved = decisions.poll_moved(poll_record("p2"), SOURCE, T0, email="ann@example.com", munchkin_id=MUNCHKIN,
                                 program_id=PROGRAM, op_id="op-9", poll_id="p2", from_position=3, to_position=2)
    assert (moved.decision, moved.reason_code, moved.op_id) == ("poll_moved", ReasonCode.POLL_MOVED, "op-9")
    assert moved.detail == {"poll_id": "p2", "from_position": 3, "to_position": 2}


# --- the decisions where transform makes them, and on the way out of each engine's step ------------------

def _routed(spec: TopicSpec, record: BaseModel, tenants: TenantsConfig) -> RouteResult:
    return route(spec, encode(record), SOURCE, tenants, T0)


def test_a_status_regression_is_a_forward_only_skip_and_a_repeat_is_not(
    tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus],
) -> None:
    transformer = Transformer(tenants, TransformState.in_memory(), clock=lambda: T0)
    results = []
    for status, minutes in (("registered", 0), ("attended", 1), ("confirmed", 2), ("attended", 3)):
        routed = _routed(ATTENDEE_STATUS, status_record(status, minutes=minutes), tenants).routed
        assert routed is not None
        results.append(transformer.apply(routed))
    # Attended without the event's schedule: label_undecided (issue #16 §1.3); its repeat is no decision
    assert [[d.decision for d in r.decisions] for r in results] == [
        [], ["label_undecided"], ["forward_only_skip"], []]
    skip = results[2].decisions[0]
    assert (skip.decision, skip.detail["from_status"], skip.detail["to_status"]) == (
        "forward_only_skip", "Attended", "Confirmed")
    assert (skip.email, skip.program_id, skip.munchkin_id, skip.source_offset) == (
        "ann@example.com", PROGRAM, MUNCHKIN, SOURCE.offset)
    assert not any(op.kind == "program_member_status" for op in results[2].ops)


def test_an_unusable_email_is_dead_lettered_and_decided(
    tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus],
) -> None:
    metrics = TransformMetrics()
    keyed = KeyedSteps(tenants, metrics, clock=lambda: T0, retention=None)
    outputs = keyed.record(ATTENDEE_STATUS, encode(status_record("registered", email="n/a")), SOURCE, DictState())
    assert [dest for dest, _, _ in outputs] == ["dlq", "decisions"]
    d = decode(TRANSFORM_DECISIONS, outputs[1][2])
    assert (d.decision, d.detail, d.program_id) == ("unusable_email", {"email_problem": "invalid"}, PROGRAM)
    assert outputs[1][1] == f"{PARTNER}:{EVENT}:u1".encode()  # keyed like the input: one person's decisions in order
    assert sample_sum(metrics.exposition().decode(), "kmsync_transform_decisions_total",
                      {"decision": "unusable_email", "tenant": "acme-summit"}) == 1


def test_a_poll_routed_to_the_dead_letter_keeps_its_decision_across_the_repartition(
    tenants: TenantsConfig, poll_record: Callable[..., PollResponse],
) -> None:
    keyed = KeyedSteps(tenants, TransformMetrics(), clock=lambda: T0, retention=None)
    envelope = keyed.route_poll(encode(poll_record("p1", email="")), SOURCE)
    crossed = Envelope.decode(envelope.key, envelope.encode())
    outputs = keyed.poll(crossed, DictState())
    assert [dest for dest, _, _ in outputs] == ["dlq", "decisions"]
    assert decode(TRANSFORM_DECISIONS, outputs[1][2]).detail == {"email_problem": "missing"}
    assert decode(TRANSFORM_DLQ, outputs[0][2]).reason_code == ReasonCode.UNUSABLE_EMAIL


def test_cut_poll_texts_are_truncation_decisions_naming_the_op(
    tenants: TenantsConfig, poll_record: Callable[..., PollResponse],
) -> None:
    transformer = Transformer(tenants, TransformState.in_memory(), clock=lambda: T0)
    long = poll_record("p1", answer="a" * 1501, question="q" * 3700)
    routed = _routed(POLL_RESPONSES, long, tenants).routed
    assert routed is not None
    result = transformer.apply(routed)
    (op,) = result.ops
    assert [(d.detail["field"], d.detail["original_length"], d.detail["kept_length"], d.op_id)
            for d in result.decisions] == [("poll_1_question", 3700, 3600, op.op_id),
                                           ("poll_1_answer", 1501, 1500, op.op_id)]
    assert all(d.session_id == "0_keynote" for d in result.decisions)
    assert transformer.apply(routed).decisions == []  # the same answer again: no op, no second decision
    exact = _routed(POLL_RESPONSES, poll_record("p2", answer="a" * 1500), tenants).routed
    assert exact is not None and transformer.apply(exact).decisions == []


def test_a_poll_past_the_last_slot_is_a_too_many_polls_decision(
    tenants: TenantsConfig, poll_record: Callable[..., PollResponse],
) -> None:
    transformer = Transformer(tenants, TransformState.in_memory(), clock=lambda: T0)
    results = []
    for i in range(1, 12):
        routed = _routed(POLL_RESPONSES, poll_record(f"p{i}"), tenants).routed
        assert routed is not None
        results.append(transformer.apply(routed))
    assert all(not r.decisions for r in results[:10])
    (d,) = results[10].decisions
    assert (d.decision, d.detail) == ("too_many_polls", {"poll_id": "p11", "position": 11})
