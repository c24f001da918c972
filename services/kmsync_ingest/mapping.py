"""Kaltura's raw shapes (kmsync_kaltura.models) into kmsync's contracts (pure logic).

* User Profile joined with its Kaltura user → AttendeeStatus (docs/reference/kaltura-api.md §4.2, §7.4);
* report 60013 row (report.getTable) and report 4021 CSV row → SessionEngagement, under the seed's
  metric names; a metric the report does not carry stays None, so one report never zeroes what
  another delivered;
* poll answer row (our assumed pollsActivity layout, §7.1) → PollResponse.

Reports 60013 and 4021 identify the attendee by email only: the record's user_id is that email as
Kaltura printed it (Kaltura userIds are usually the registration email; UNCONFIRMED for SSO users,
whose userId differs - see README).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import ValidationError

from kmsync_contracts import (
    AttendanceStatus,
    AttendeeStatus,
    PollResponse,
    Scalar,
    SessionEngagement,
)
from kmsync_contracts.kaltura_records import Lane
from kmsync_kaltura.models import Attendee, EngagementCsvRow, EngagementRow, PollAnswerRow

SourceMode = Literal["pull", "webhook", "file"]


@dataclass(frozen=True)
class RecordContext:
    partner_id: int
    virtual_event_id: int
    source: SourceMode
    #: When Kaltura produced the figures (report time, export time); statuses use updatedAt.
    source_time: datetime
    ingested_at: datetime
    entry_name: str | None = None
    channel_id: int | None = None
    channel_name: str | None = None
    is_final: bool = True
    #: The lane the records travel in (``backfill``: a history load, served after live; issue #18).
    lane: Lane = "live"


def attendee_status(att: Attendee, ctx: RecordContext, source_ref: str) -> AttendeeStatus:
    p, user = att.profile, att.user
    ev = p.event_data
    first = (user.first_name if user else None) or _text(p.profile_data.get("firstName"))
    last = (user.last_name if user else None) or _text(p.profile_data.get("lastName"))
    # docs/reference/kaltura-api.md §10: the KalturaUser value when present, else the same-named profileData key.
    about = {k: (getattr(user, k) if user else None) or _text(p.profile_data.get(k)) for k in _REGISTRANT_ATTRIBUTES}
    return AttendeeStatus(
        partner_id=ctx.partner_id, virtual_event_id=ctx.virtual_event_id, user_id=p.user_id,
        email=att.email, source=ctx.source, source_ref=source_ref, source_time=p.updated_at,
        ingested_at=ctx.ingested_at, app_guid=p.app_guid, first_name=first, last_name=last,
        status=AttendanceStatus(ev.attendance_status.value),
        previous_status=AttendanceStatus(ev.previous_attendance_status.value)
        if ev.previous_attendance_status else None,
        reg_origin=ev.reg_origin, last_login_type=p.login_data.last_login_type if p.login_data else None,
        status_time=ev.status_update_time or p.updated_at, first_attended_time=ev.first_attended_status_time,
        **about, registration=registration_answers(p.profile_data),
    )


_REGISTRANT_ATTRIBUTES = ("title", "company", "country")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def registration_answers(profile_data: Mapping[str, Any]) -> dict[str, Scalar]:
    """The registration form's answers in a User Profile's ``profileData`` (docs/reference/kaltura-api.md §10):
    its scalar entries under their own keys, a list of scalars joined with "; " (a multi-select), empty
    answers and nested objects left out (no lead field can hold them)."""
    out: dict[str, Scalar] = {}
    for key, value in profile_data.items():
        if isinstance(value, list) and all(_is_scalar(v) for v in value):
            value = "; ".join(str(v) for v in value if v is not None and str(v).strip())
        if _is_scalar(value) and value is not None and (not isinstance(value, str) or value.strip()):
            out[key] = value
    return out


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _engagement_base(row: EngagementRow | EngagementCsvRow, ctx: RecordContext, source_ref: str) -> dict[str, object]:
    return {
        "partner_id": ctx.partner_id, "virtual_event_id": ctx.virtual_event_id, "user_id": row.email,
        "email": row.email, "source": ctx.source, "source_ref": source_ref, "source_time": ctx.source_time,
        "ingested_at": ctx.ingested_at, "entry_id": row.entry_id, "entry_name": ctx.entry_name,
        "channel_id": ctx.channel_id, "channel_name": ctx.channel_name, "is_final": ctx.is_final,
    }


def engagement_from_table(row: EngagementRow, ctx: RecordContext, source_ref: str) -> SessionEngagement:
    """Report 60013 (docs/reference/kaltura-api.md §3.4): minutes and fractions as Kaltura computes them."""
    return SessionEngagement.model_validate({
        **_engagement_base(row, ctx, source_ref),
        "vod_minutes_viewed": row.vod_view_time,
        "live_minutes_viewed": row.live_view_time,
        "total_vod_completion_rate": row.avg_completion_rate,
        "total_reactions_activity": row.count_reaction_clicked,
        "raise_hand": row.count_raise_hand_clicked,
        "combined_live_engaged_users_play_time_ratio": row.combined_live_engaged_users_play_time_ratio,
        "messages_sent_group": row.count_group_chat_messages_sent,
        "answered_polls": row.count_poll_answered,
        "qna_threads": row.count_q_and_a_threads,
    })


_CSV_4021_FIELDS = (
    "combined_live_engaged_users_play_time_ratio", "add_to_calendar", "raise_hand", "mic_on", "cam_on",
    "clap_clicked_count", "heart_clicked_count", "think_clicked_count", "wow_clicked_count",
    "smile_clicked_count", "total_reactions_activity", "answered_polls", "messages_sent_group", "qna_threads",
)


_CONTEXT_FIELDS = ("partner_id", "virtual_event_id", "source", "source_time", "ingested_at", "entry_name",
                   "channel_id", "channel_name", "is_final")


@lru_cache(maxsize=256)
def _engagement_template(ctx: RecordContext) -> SessionEngagement | None:
    """A SessionEngagement validated once per context, with placeholder row values; None when
    SessionEngagement refuses the context or would alter one of its values (a naive time, a name
    with spaces around it): that context's rows are then validated in full."""
    probe = {**{f: getattr(ctx, f) for f in _CONTEXT_FIELDS}, "user_id": "probe", "email": "probe",
             "source_ref": "probe", "entry_id": "probe"}
    try:
        record = SessionEngagement.model_validate(probe)
    except ValidationError:
        return None
    unchanged = all(type(getattr(record, f)) is type(probe[f]) and getattr(record, f) == probe[f]
                    for f in _CONTEXT_FIELDS)
    return record if unchanged else None


def _row_passes_unchanged(row: EngagementCsvRow, source_ref: str) -> bool:
    """What SessionEngagement checks beyond EngagementCsvRow: its three floats finite (the row
    model lets infinity through), no spaces to strip."""
    isfinite = math.isfinite
    return (isfinite(row.combined_live_engaged_users_play_time_ratio) and isfinite(row.mic_on)
            and isfinite(row.cam_on) and source_ref == source_ref.strip())


def engagement_from_csv(row: EngagementCsvRow, ctx: RecordContext, source_ref: str) -> SessionEngagement:
    """Report 4021 "User Reactions" (docs/reference/kaltura-api.md §3.5): the seed's field names verbatim.

    The row was validated at the boundary (EngagementCsvRow: non-empty stripped email and entry id,
    whole non-negative counts, non-negative numbers). When its context and its values are ones
    SessionEngagement accepts unchanged, the record is the context's validated template with the
    row's values (``model_copy``: ~5 us a row instead of ~8.5 us to validate; ``model_construct``
    costs ~43 us with pydantic 2.13, it resolves every default in Python). Anything else is
    validated in full, so every row SessionEngagement would refuse is refused with the same errors."""
    template = _engagement_template(ctx)
    if template is not None and _row_passes_unchanged(row, source_ref):
        return template.model_copy(update={
            "user_id": row.email, "email": row.email, "source_ref": source_ref, "entry_id": row.entry_id,
            **{f: getattr(row, f) for f in _CSV_4021_FIELDS}})
    return SessionEngagement.model_validate({
        **_engagement_base(row, ctx, source_ref), **{f: getattr(row, f) for f in _CSV_4021_FIELDS},
    })


def poll_response(row: PollAnswerRow, ctx: RecordContext, source_ref: str) -> PollResponse:
    return PollResponse(
        partner_id=ctx.partner_id, virtual_event_id=ctx.virtual_event_id, user_id=row.user_id,
        email=row.email, source=ctx.source, source_ref=source_ref, source_time=row.answered_at,
        ingested_at=ctx.ingested_at, entry_id=row.entry_id, poll_id=row.poll_id, poll_type=row.poll_type,
        question=row.question, answer=row.answer, answered_at=row.answered_at,
    )


def identity(record: SessionEngagement | PollResponse) -> str:
    """A re-pulled row's identity within its event."""
    if isinstance(record, PollResponse):
        return f"{record.entry_id}:{record.poll_id}:{record.user_id}"
    return f"{record.entry_id}:{record.user_id}"
