"""`kmsync trace`'s pure parts: the person is found by the keyed hash, the story's order and wording,
nothing raw printed that the operator did not type (issue #19)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from kmsync_cli.trace import find_event, parse_since
from kmsync_cli.trace_story import (
    Event,
    Person,
    Story,
    decision_step,
    kaltura_step,
    outcome_step,
    person_key_of,
    redact,
)
from kmsync_common.email_hash import configure_email_hash_key, hash_email
from kmsync_config.tenants import parse_tenants
from kmsync_contracts import AttendanceStatus, AttendeeStatus, RecordOutcome, SessionEngagement
from kmsync_contracts.outcomes import TransformDecision
from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo import endpoints as ep

T = datetime(2026, 6, 16, 9, 0, tzinfo=UTC)
EVENT = Event("demo-event", 111, 222, 1001)
JANE = "Jane.Doe@Example.com"


@pytest.fixture(autouse=True)
def key() -> Iterator[None]:
    configure_email_hash_key(b"a-test-key-of-enough-bytes")
    yield
    configure_email_hash_key(None)


def status(email: str, value: AttendanceStatus, minutes: int, partner: int = 111) -> AttendeeStatus:
    return AttendeeStatus(partner_id=partner, virtual_event_id=222, user_id=email, email=email, source="pull",
                          source_ref="userProfile.list page 1", source_time=T + timedelta(minutes=minutes),
                          ingested_at=T, status=value, status_time=T + timedelta(minutes=minutes),
                          first_name="Jane", last_name="Doe")


def outcome(email: str, kind: str, minutes: int, **extra: object) -> RecordOutcome:
    fields: dict[str, object] = dict(
        op_id=f"op-{kind}-{minutes}", munchkin_id="123-ABC-456", kind=kind, status="created",
        source_time=T, decided_at=T + timedelta(hours=1, minutes=minutes),
        partner_id=111, virtual_event_id=222, person_key=hash_email(email.lower()))
    return RecordOutcome.model_validate({**fields, **extra})


def test_the_email_is_hashed_with_the_deployment_key_before_searching() -> None:
    person = Person.from_email("  " + JANE + " ")
    assert person.person_keys == {hash_email("jane.doe@example.com")}
    assert person_key_of("mailto:JANE.DOE@example.com") == person_key_of(JANE)
    configure_email_hash_key(b"another-deployment-key-entirely")
    assert person_key_of(JANE) not in person.person_keys, "a key of its own: a plain hash would match"
    unusable = Person.from_email(" Jane.Doe@@Example.com")
    assert unusable.person_keys == {hash_email("jane.doe@@example.com")}, "as Kaltura gave it: decisions say why"
    assert unusable.is_in_record(status("jane.doe@@example.com", AttendanceStatus.REGISTERED, 0))
    with pytest.raises(ValueError, match="empty"):
        Person.from_email("  ")


def test_a_person_is_matched_by_hash_and_lead_id_and_only_in_the_event() -> None:
    person = Person.from_email(JANE)
    mine = outcome(JANE, "lead_upsert", 0, lead_id=42)
    other_event = outcome(JANE, "lead_upsert", 1, lead_id=42, virtual_event_id=999)
    someone_else = outcome("bob@example.com", "lead_upsert", 2, lead_id=43)
    person.learn([mine, other_event, someone_else], EVENT)
    assert person.lead_ids == {42}
    assert person.is_in_outcome(mine) and not person.is_in_outcome(someone_else)
    assert person.is_in_record(status(JANE.upper(), AttendanceStatus.REGISTERED, 0))
    assert not person.is_in_record(status("bob@example.com", AttendanceStatus.REGISTERED, 0))
    by_lead = Person(lead_ids={42})
    by_lead.learn([mine, someone_else], EVENT)
    assert by_lead.person_keys == {hash_email(JANE.lower())}, "from --lead-id to the person key"


def test_the_story_goes_kaltura_transform_marketo_each_in_time_order() -> None:
    person = Person.from_email(JANE)
    story = Story(EVENT, person)
    story.steps = [
        outcome_step(outcome(JANE, "program_member_status", 5, lead_id=42, request_id="e42b#1")),
        kaltura_step("kaltura.attendee-status.v1", status(JANE, AttendanceStatus.ATTENDED, 30)),
        outcome_step(outcome(JANE, "lead_upsert", 1, lead_id=42, request_id="e42b#0")),
        decision_step(TransformDecision(
            decision="forward_only_skip", reason_code=ReasonCode.FORWARD_ONLY_SKIP,
            reason="Registered is below Attended", partner_id=111, virtual_event_id=222, user_id="u",
            person_key=hash_email(JANE), source_time=T, decided_at=T + timedelta(minutes=50),
            detail={"from_status": "Attended", "to_status": "Registered"})),
        kaltura_step("kaltura.attendee-status.v1", status(JANE, AttendanceStatus.REGISTERED, 0)),
    ]
    order = [(s.stage, s.what.split(" ")[0] + " " + s.what.split(" ")[1]) for s in story.ordered()]
    assert order == [("kaltura", "status registered"), ("kaltura", "status attended"),
                     ("transform", "forward_only_skip: Registered"),
                     ("marketo", "lead_upsert created"), ("marketo", "program_member_status created")]
    lines = story.lines()
    marketo = next(ln for ln in lines if "lead_upsert created" in ln)
    assert f"POST {ep.LEADS}" in marketo and "request e42b#0" in marketo and "lead 42" in marketo
    assert lines.index("what Kaltura said (2):") < lines.index("what transform decided (1):") \
        < lines.index("Marketo calls that carried the person (2):") < lines.index("what Marketo holds now:")
    doc = story.to_json()
    assert [s["status"] for s in doc["kaltura"]] == ["registered", "attended"]
    assert doc["marketo"][0]["request_id"] == "e42b#0" and doc["marketo"][0]["lead_id"] == 42


def test_nothing_raw_is_printed_that_the_operator_did_not_type() -> None:
    person = Person(lead_ids={42})  # --lead-id: no email typed
    story = Story(EVENT, person)
    engagement = SessionEngagement(partner_id=111, virtual_event_id=222, user_id="jane.doe@example.com",
                                   email=JANE, source="file", source_ref="report.csv line 7", source_time=T,
                                   ingested_at=T, entry_id="1_abc", is_final=True, plays=2)
    failed = outcome(JANE, "custom_object_upsert", 3, status="failed", lead_id=42,
                     reason="lead jane.doe@example.com is not in the partition", reason_code="1003")
    story.steps = [kaltura_step("kaltura.session-engagement.v1", engagement),
                   kaltura_step("kaltura.attendee-status.v1", status(JANE, AttendanceStatus.REGISTERED, 0)),
                   outcome_step(failed)]
    text = "\n".join(story.lines()) + json.dumps(story.to_json(), default=str)
    assert "jane.doe" not in text.lower() and "Jane" not in text, text
    assert hash_email("jane.doe@example.com") in text, "the email in Marketo's reason is shown as its hash"
    typed = outcome_step(failed, typed_email=JANE)
    assert "jane.doe@example.com" in typed.what, "what the operator typed may be shown back"
    assert redact("a@b.com and c@d.org", "C@D.org") == f"{hash_email('a@b.com')} and c@d.org"


def test_every_operation_kind_names_its_marketo_call() -> None:
    assert outcome_step(outcome(JANE, "custom_activity", 0)).data["endpoint"] == f"POST {ep.CUSTOM_ACTIVITIES}"
    rest = ep.WRITE_ENDPOINTS
    assert rest[("program_member_status", "rest")] == "POST " + ep.program_member_status(7).replace("7", "{programId}")
    assert rest[("custom_object_upsert", "rest")] == "POST " + ep.custom_object_sync("{apiName}")
    assert rest[("custom_object_upsert", "bulk")] == "POST " + ep.bulk_co_import("{apiName}")
    assert rest[("program_member_status", "bulk")] == "POST " + ep.bulk_pm_import(7).replace("7", "{programId}")


def test_since_and_event_arguments() -> None:
    now = datetime(2026, 6, 16, 12, 0, tzinfo=UTC)
    assert parse_since("36h", now) == now - timedelta(hours=36)
    assert parse_since("2026-06-15T08:00:00Z", now) == datetime(2026, 6, 15, 8, 0, tzinfo=UTC)
    assert parse_since(None, now) is None
    for bad in ("yesterday", "2026-06-15T08:00:00"):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad, now)
    tenants = parse_tenants({
        "marketo_instances": {"m": {"munchkin_id": "123-ABC-456", "endpoint": "https://123-abc-456.mktorest.com",
                                    "client_id": "c", "client_secret": {"env": "NOPE"}}},
        "events": [{"name": "demo-event", "partner_id": 111, "virtual_event_id": 222, "marketo_instance": "m",
                    "program_id": 1001}]}, check_secrets=False)
    assert find_event(tenants, "demo-event").virtual_event_id == 222
    assert find_event(tenants, "222").name == "demo-event"
    with pytest.raises(ValueError, match=r"events: demo-event \(222\)"):
        find_event(tenants, "other")
