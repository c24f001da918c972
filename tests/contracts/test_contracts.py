"""Every contract round-trips through its codec and rejects bad input with field-level messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from kmsync_contracts import (
    AttendanceStatus,
    AttendeeStatus,
    ContractError,
    CustomActivity,
    CustomObjectUpsert,
    DeadLetter,
    IngestWatermark,
    LeadUpsert,
    PollResponse,
    ProgramMemberData,
    ProgramMemberStatus,
    RecordOutcome,
    SessionEngagement,
    decode,
    encode,
    seed,
)
from kmsync_contracts.outcomes import ActivityIntent, TransformDecision
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import (
    ALL_TOPICS,
    MARKETO_OPS,
    MARKETO_OPS_BACKFILL,
    MARKETO_RESULTS,
    TOPICS_BY_NAME,
    PullTrigger,
)

T = datetime(2026, 6, 16, 14, 0, tzinfo=UTC)
KALTURA = {"partner_id": 1234567, "virtual_event_id": 98765, "user_id": "jane@acme.com",
           "email": "Jane@Acme.com", "source": "pull", "source_time": T, "ingested_at": T}
OP = {"op_id": "op-1", "munchkin_id": "123-ABC-456", "partner_id": 1234567, "virtual_event_id": 98765,
      "email": "jane@acme.com", "source_time": T, "emitted_at": T}

SAMPLES: dict[str, BaseModel] = {
    "kaltura.attendee-status.v1": AttendeeStatus(
        **KALTURA, status=AttendanceStatus.CONFIRMED, previous_status=AttendanceStatus.REGISTERED,
        status_time=T, first_name="Jane", reg_origin="registration", title="CTO", company="Acme",
        registration={"jobFunction": "Engineering", "companySize": 250, "optIn": True},
    ),
    "kaltura.session-engagement.v1": SessionEngagement(
        **KALTURA, entry_id="1_abc", entry_name="Keynote", plays=2, live_minutes_viewed=41.25,
        good_live_engagement_rate=0.62, clap_clicked_count=3, is_final=True,
    ),
    "kaltura.poll-responses.v1": PollResponse(
        **KALTURA, entry_id="1_abc", poll_id="p1", poll_type="rating scale", question="How?", answer="5",
    ),
    "ingest.watermarks.v1": IngestWatermark(
        partner_id=1, virtual_event_id=2, stream="statuses", watermark=T, seen_ids=("a",), recorded_at=T,
    ),
    "ingest.dlq.v1": DeadLetter(stage="ingest", reason_code=ReasonCode.BAD_ROW, reason="line 7: email: missing",
                                payload="a,b,c", failed_at=T),
    "transform.dlq.v1": DeadLetter(stage="transform", reason_code="missing_email", reason="no email",
                                   source_topic="kaltura.attendee-status.v1", source_partition=0,
                                   source_offset=5, payload={"user_id": "x"}, failed_at=T),
    "marketo.results.v1": RecordOutcome(op_id="op-1", munchkin_id="123-ABC-456", kind="custom_activity",
                                        status="skipped", reason_code="1037", source_time=T, decided_at=T,
                                        partner_id=1234567, virtual_event_id=98765, session_id="1_abc",
                                        person_key="email#0123456789abcdef", lead_id=7,
                                        request_id="e42b#14272d07d78"),
    "transform.decisions.v1": TransformDecision(
        decision="forward_only_skip", reason_code=ReasonCode.FORWARD_ONLY_SKIP,
        reason="Registered after Un-registered: statuses only move forward", partner_id=1234567,
        virtual_event_id=98765, user_id="jane@acme.com", person_key="email#0123456789abcdef",
        email="jane@acme.com", munchkin_id="123-ABC-456", program_id=1001, source_time=T, decided_at=T,
        detail={"from_status": "Un-registered", "to_status": "Registered", "from_step": 80, "to_step": 30},
    ),
    "marketo.dlq.v1": DeadLetter(stage="sink", reason_code="1003", reason="Invalid value", payload={}, failed_at=T),
    "marketo.activity-intents.v1": ActivityIntent(
        op_id="op-1", munchkin_id="123-ABC-456", lead_id=7, activity_type_id=100001,
        primary_attribute_value="1_abc", activity_date=T, recorded_at=T,
    ),
    "ingest.pull-owners.v1": PullTrigger(
        partner_id=1234567, virtual_event_id=98765, job_id="4711", kind="entry", entry_id="1_abc",
        fields={"object": {"id": "1_abc", "endDate": 1750082400}}, forwarded_at=T,
    ),
}
OPS: list[BaseModel] = [
    LeadUpsert(**OP, fields={"firstName": "Jane", "lastName": None}),
    ProgramMemberStatus(**OP, program_id=1001, status_name="Confirmed", step=40, granular_status="Confirmed email"),
    ProgramMemberData(**OP, program_id=1001, granular_status="During-event visit", label_rank=(50, 1)),
    CustomObjectUpsert(**OP, object_name=seed.ENGAGEMENT_OBJECT_API_NAME, dedupe_fields=("entry_id", "email"),
                       record={"entry_id": "1_abc", "plays": 2, "live_minutes_viewed": 41.25}),
    CustomActivity(**OP, activity_type=seed.ENGAGEMENT_ACTIVITY_API_NAME, primary_attribute_value="1_abc",
                   activity_date=T, attributes={"plays": 2}),
]


def test_every_topic_in_the_catalogue_has_a_sample() -> None:
    # transform.state.v1 holds transform-private JSON (services/kmsync_transform/state.py tests it);
    # the two ops topics carry OPS (test_lanes.py for the backfill one).
    assert set(SAMPLES) | {MARKETO_OPS.name, MARKETO_OPS_BACKFILL.name, "transform.state.v1"} == set(TOPICS_BY_NAME)
    assert len(ALL_TOPICS) == len(TOPICS_BY_NAME)


@pytest.mark.parametrize("topic", sorted(SAMPLES))
def test_round_trip(topic: str) -> None:
    record = SAMPLES[topic]
    assert decode(TOPICS_BY_NAME[topic], encode(record)) == record
    assert record.model_dump()["schema_version"] == 1


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)  # type: ignore[attr-defined]
def test_operations_round_trip_through_the_union(op: BaseModel) -> None:
    decoded = decode(MARKETO_OPS, encode(op))
    assert type(decoded) is type(op)
    assert decoded == op


def test_bad_input_is_rejected_with_field_level_messages() -> None:
    bad = encode(SAMPLES["kaltura.attendee-status.v1"]).replace(b'"confirmed"', b'"teleported"', 1)
    bad = bad.replace(b'"partner_id":1234567', b'"partner_id":-1')
    with pytest.raises(ContractError) as err:
        decode(TOPICS_BY_NAME["kaltura.attendee-status.v1"], bad)
    problems = err.value.problems
    assert any(p.startswith("partner_id:") for p in problems), problems
    assert any(p.startswith("status:") and "teleported" in p for p in problems), problems
    assert "kaltura.attendee-status.v1" in str(err.value)


def test_unknown_keys_naive_times_and_unknown_operation_kinds_are_rejected() -> None:
    with pytest.raises(ContractError, match="surprise"):
        decode(MARKETO_OPS, encode(OPS[0])[:-1] + b',"surprise":1}')
    with pytest.raises(ContractError, match="source_time"):
        decode(MARKETO_OPS, encode(OPS[0]).replace(b"+00:00", b"").replace(b"Z", b""))
    with pytest.raises(ContractError, match="kind"):
        decode(MARKETO_OPS, encode(OPS[0]).replace(b"lead_upsert", b"lead_delete"))
    with pytest.raises(ContractError, match="not valid JSON|Invalid JSON"):
        decode(MARKETO_OPS, b"{not json")


def test_negative_metrics_are_rejected() -> None:
    data = encode(SAMPLES["kaltura.session-engagement.v1"]).replace(b'"plays":2', b'"plays":-2')
    with pytest.raises(ContractError, match="plays"):
        decode(TOPICS_BY_NAME["kaltura.session-engagement.v1"], data)


def test_kaltura_records_are_keyed_partner_event_user() -> None:
    assert SAMPLES["kaltura.poll-responses.v1"].partition_key() == "1234567:98765:jane@acme.com"  # type: ignore[attr-defined]


def test_seed_vocabulary_is_complete() -> None:
    assert [(s.name, s.step) for s in seed.CHANNEL_STATUSES] == [
        ("Created", 10), ("Invited", 20), ("Registered", 30), ("Confirmed", 40), ("autoConfirmed", 40),
        ("Attended", 50), ("Participated", 60), ("Blocked", 70), ("Un-registered", 80),
    ]
    assert len(seed.ENGAGEMENT_OBJECT_FIELDS) == 30
    assert len(seed.ENGAGEMENT_ACTIVITY_FIELDS) == 20
    assert seed.ENGAGEMENT_OBJECT_FIELDS[0].name == seed.ENGAGEMENT_ACTIVITY_FIELDS[0].name == "entry_id"
    names = [f.name for f in seed.POLLS_OBJECT_FIELDS]
    assert names[:3] == ["entry_id", "email", "user"]
    assert len(names) == 3 + 3 * 10 and "poll_10_question" in names
    # Every engagement metric the object carries is a field of the SessionEngagement contract.
    assert set(seed.ENGAGEMENT_METRIC_FIELDS) <= set(SessionEngagement.model_fields)
    with pytest.raises(ValueError):
        seed.poll_field_names(11)


def test_custom_object_dedupe_keys_are_seed_fields_with_the_person_in_them() -> None:
    types = {f.name: f.data_type for f in seed.ENGAGEMENT_OBJECT_FIELDS}
    assert seed.ENGAGEMENT_OBJECT_DEDUPE_FIELDS == ("entry_id", "personId")
    assert [types[n] for n in seed.ENGAGEMENT_OBJECT_DEDUPE_FIELDS] == ["string", "link"]  # the lead link
    poll_types = {f.name: f.data_type for f in seed.POLLS_OBJECT_FIELDS}
    assert seed.POLLS_OBJECT_DEDUPE_FIELDS == ("entry_id", "email")
    assert [poll_types[n] for n in seed.POLLS_OBJECT_DEDUPE_FIELDS] == ["string", "string"]
    for key in (seed.ENGAGEMENT_OBJECT_DEDUPE_FIELDS, seed.POLLS_OBJECT_DEDUPE_FIELDS):
        assert key[0] == seed.PRIMARY_FIELD and 1 <= len(key) <= 3  # docs/reference/marketo-api.md §2.2: 1–3 per type


def test_the_contracts_library_does_not_load_faust() -> None:
    # Issue #20 item 9 / #21: ContractCodec was faust-streaming's last user; the dependency goes.
    import subprocess
    import sys

    code = "import sys, kmsync_contracts, kmsync_contracts.codecs; print(sorted(m for m in sys.modules if 'faust' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_outcomes_written_before_the_correlation_keys_still_decode() -> None:
    """Issue #19: the keys are optional, so an outcome a sink wrote before them is still read."""
    old = (b'{"schema_version":1,"op_id":"op-1","munchkin_id":"123-ABC-456","kind":"lead_upsert",'
           b'"status":"created","marketo_id":"7","source_time":"2026-06-16T10:00:00Z",'
           b'"decided_at":"2026-06-16T10:00:01Z"}')
    outcome = decode(MARKETO_RESULTS, old)
    assert isinstance(outcome, RecordOutcome)
    assert (outcome.person_key, outcome.lead_id, outcome.request_id, outcome.session_id) == (None, None, None, None)


def test_an_outcome_person_key_is_a_hash_never_an_email() -> None:
    with pytest.raises(ContractError, match="person_key"):
        decode(MARKETO_RESULTS, encode(SAMPLES["marketo.results.v1"]).replace(
            b"email#0123456789abcdef", b"jane@example.com"))


def test_the_backfill_topic_is_partitioned_like_the_live_one() -> None:
    # Same key and partition count: an instance's two lanes share a partition number (range assignment).
    assert MARKETO_OPS_BACKFILL.partitions == MARKETO_OPS.partitions
    assert MARKETO_OPS_BACKFILL.key == MARKETO_OPS.key
    for op in OPS:
        assert decode(MARKETO_OPS_BACKFILL, encode(op)) == op


def test_kaltura_records_carry_their_lane_and_old_ones_are_live() -> None:
    spec = TOPICS_BY_NAME["kaltura.session-engagement.v1"]
    sample = SAMPLES[spec.name]
    assert isinstance(sample, SessionEngagement) and sample.lane == "live"
    marked = sample.model_copy(update={"lane": "backfill"})
    assert decode(spec, encode(marked)).lane == "backfill"
    old = json.loads(encode(sample))
    old.pop("lane")  # written before lanes existed
    assert decode(spec, json.dumps(old)).lane == "live"
    with pytest.raises(ContractError, match="lane"):
        decode(spec, json.dumps({**old, "lane": "history"}))
