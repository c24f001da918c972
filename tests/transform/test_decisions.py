"""transform.decisions.v1: each decision transform makes about dropped or changed data is a record with
the person's correlation keys (docs/design/granular-statuses.md §4)."""

from __future__ import annotations

from collections.abc import Callable

from kmsync_common import configure_email_hash_key, hash_email
from kmsync_contracts import AttendeeStatus, PollResponse, decode, encode
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import TRANSFORM_DECISIONS
from kmsync_transform import decisions
from kmsync_transform.dead_letters import SourceRef

from .conftest import EVENT, MUNCHKIN, PARTNER, PROGRAM, T0

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
