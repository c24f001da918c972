"""What transform dropped or changed, as records an operator can read (transform.decisions.v1).

Every decision that keeps data from Marketo or changes it on the way becomes a TransformDecision
(kmsync_contracts.outcomes, docs/design/granular-statuses.md §4), produced with the step's
operations and dead letters (in the quix engine, in the same Kafka transaction). Each carries the
correlation keys of one person in one event: partner, virtual event, session, the keyed email hash
(`person_key`, the same hash as in every log line) and, where something was written, the op id.
Pure: no I/O here.
"""

from __future__ import annotations

from datetime import datetime

from kmsync_common import hash_email
from kmsync_contracts.base import Scalar
from kmsync_contracts.kaltura_records import KalturaRecord
from kmsync_contracts.outcomes import DecisionKind, TransformDecision
from kmsync_contracts.reasons import ReasonCode
from kmsync_transform.dead_letters import SourceRef


def decision(kind: DecisionKind, code: ReasonCode, reason: str, record: KalturaRecord, source: SourceRef,
             now: datetime, detail: dict[str, Scalar], *, email: str | None = None, munchkin_id: str | None = None,
             program_id: int | None = None, op_id: str | None = None) -> TransformDecision:
    """A decision about `record`; `email` is the normalised one (None when it is unusable), and the
    person key hashes it (else the email as Kaltura gave it)."""
    return TransformDecision(
        decision=kind, reason_code=code, reason=reason,
        partner_id=record.partner_id, virtual_event_id=record.virtual_event_id, user_id=record.user_id,
        session_id=getattr(record, "entry_id", None), person_key=hash_email(email or record.email),
        email=email, munchkin_id=munchkin_id, program_id=program_id, op_id=op_id,
        source_topic=source.topic, source_partition=source.partition, source_offset=source.offset,
        source_ref=record.source_ref, source_time=record.source_time, decided_at=now, detail=detail,
    )


def status_skip(record: KalturaRecord, source: SourceRef, now: datetime, *, email: str, munchkin_id: str,
                program_id: int, current: tuple[str, int], new: tuple[str, int]) -> TransformDecision:
    """A status lower than the member's: Marketo would skip it (docs/reference/marketo-api.md §6.1),
    so transform does not send it."""
    (from_status, from_step), (to_status, to_step) = current, new
    return decision(
        "forward_only_skip", ReasonCode.FORWARD_ONLY_SKIP,
        f"{to_status} (step {to_step}) after {from_status} (step {from_step}): program statuses only move "
        "forward, so it is not written",
        record, source, now, {"from_status": from_status, "to_status": to_status, "from_step": from_step,
                              "to_step": to_step},
        email=email, munchkin_id=munchkin_id, program_id=program_id)


def unusable_email(record: KalturaRecord, source: SourceRef, now: datetime, *, munchkin_id: str,
                   program_id: int) -> TransformDecision:
    """Nothing of this record reaches Marketo: leads are identified by email (the dead letter keeps it)."""
    problem = "missing" if not (record.email or "").strip() else "invalid"
    what = "no email" if problem == "missing" else "an email that cannot name a lead"
    return decision(
        "unusable_email", ReasonCode.UNUSABLE_EMAIL,
        f"Kaltura user {record.user_id} has {what}; nothing of this record is written (the record is on "
        "transform.dlq.v1)",
        record, source, now, {"email_problem": problem}, munchkin_id=munchkin_id, program_id=program_id)


def truncated(record: KalturaRecord, source: SourceRef, now: datetime, *, email: str, munchkin_id: str,
              program_id: int, op_id: str, field: str, original_length: int, kept_length: int) -> TransformDecision:
    return decision(
        "truncated", ReasonCode.TRUNCATED,
        f"{field} cut from {original_length} to {kept_length} characters, the seed field's length",
        record, source, now, {"field": field, "original_length": original_length, "kept_length": kept_length},
        email=email, munchkin_id=munchkin_id, program_id=program_id, op_id=op_id)


def too_many_polls(record: KalturaRecord, source: SourceRef, now: datetime, *, email: str, munchkin_id: str,
                   program_id: int, poll_id: str, position: int, slots: int) -> TransformDecision:
    return decision(
        "too_many_polls", ReasonCode.TOO_MANY_POLLS,
        f"poll {poll_id} is poll {position} of its session; the polls object has {slots} slots "
        f"(poll_1..poll_{slots}), so its answer is not written",
        record, source, now, {"poll_id": poll_id, "position": position},
        email=email, munchkin_id=munchkin_id, program_id=program_id)


def poll_moved(record: KalturaRecord, source: SourceRef, now: datetime, *, email: str, munchkin_id: str,
               program_id: int, op_id: str, poll_id: str, from_position: int, to_position: int) -> TransformDecision:
    return decision(
        "poll_moved", ReasonCode.POLL_MOVED,
        f"poll {poll_id} moved from poll_{from_position} to poll_{to_position}: its position in the session "
        "changed, the answer is written in its new slot and the old slot emptied",
        record, source, now, {"poll_id": poll_id, "from_position": from_position, "to_position": to_position},
        email=email, munchkin_id=munchkin_id, program_id=program_id, op_id=op_id)


def activity_once(record: KalturaRecord, source: SourceRef, now: datetime, *, email: str, munchkin_id: str,
                  program_id: int, activity_op_id: str, object_op_id: str | None) -> TransformDecision:
    """A final snapshot of a session whose custom activity was already emitted (insert-only in Marketo,
    docs/reference/marketo-api.md §7.1; once per session and person): not sent again."""
    what = "only the engagement object is updated" if object_op_id else "nothing is written"
    return decision(
        "activity_once", ReasonCode.ACTIVITY_ONCE,
        f"the session's engagement activity was already emitted ({activity_op_id}); activities are written once "
        f"per session and person with the first final figures, so {what}",
        record, source, now, {"activity_op_id": activity_op_id},
        email=email, munchkin_id=munchkin_id, program_id=program_id, op_id=object_op_id)


def label_skip(record: KalturaRecord, source: SourceRef, now: datetime, *, email: str, munchkin_id: str,
               program_id: int, from_label: str, to_label: str) -> TransformDecision:
    """A granular label lower in the label order than the member's (the status itself was not lower):
    not written (labels.py)."""
    return decision(
        "forward_only_skip", ReasonCode.FORWARD_ONLY_SKIP,
        f"granular label {to_label!r} after {from_label!r}: labels only move forward, so it is not written",
        record, source, now, {"from_label": from_label, "to_label": to_label},
        email=email, munchkin_id=munchkin_id, program_id=program_id)


def label_undecided(record: KalturaRecord, source: SourceRef, now: datetime, *, email: str, munchkin_id: str,
                    program_id: int) -> TransformDecision:
    """An attended status without the event's schedule: Pre- vs During-event visit cannot be told."""
    return decision(
        "label_undecided", ReasonCode.SCHEDULE_UNKNOWN,
        "attended, but the event's start is unknown (no schedule from Kaltura or the tenants file): "
        "no Pre-event or During-event visit label is written",
        record, source, now, {}, email=email, munchkin_id=munchkin_id, program_id=program_id)
