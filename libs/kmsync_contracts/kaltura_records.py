"""Records ingest produces from Kaltura (topics kaltura.*.v1), keyed partner:event:user.

Every ingest mode (pull, webhook, file) normalises to these. Shapes follow
docs/reference/kaltura-api.md §7.4 with the metric names of the seed document, so transform
maps them into Marketo without renaming. Values are Kaltura's as observed; cleaning that depends on
tenant configuration (email normalisation, rate clamping, status mapping) is transform's job.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from kmsync_contracts.base import ContractModel, NonEmptyStr, NonNegFloat, NonNegInt, Scalar


class AttendanceStatus(StrEnum):
    """Kaltura User Profile eventData.attendanceStatus, all 11 values (docs/reference/kaltura-api.md §4.2)."""

    CREATED = "created"
    INVITED = "invited"
    INVITED_PENDING_REGISTRATION = "invitedPendingRegistration"
    REGISTERED = "registered"
    CONFIRMED = "confirmed"
    AUTO_CONFIRMED = "autoConfirmed"
    ATTENDED = "attended"
    PARTICIPATED = "participated"
    PARTICIPATED_POST_EVENT = "participatedPostEvent"
    BLOCKED = "blocked"
    UNREGISTERED = "unregistered"


SourceMode = Literal["pull", "webhook", "file"]
#: Where an event's schedule came from: Kaltura's Events Platform, an api_v3 schedule event, or
#: the tenants file (docs/reference/kaltura-api.md §9).
ScheduleSource = Literal["events_api", "schedule_event", "tenants"]
#: How a record travels to Marketo (architecture.md principle 10): ``live`` (pulls, webhooks, ordinary
#: uploads) or ``backfill`` (`kmsync backfill`, uploads marked as history). Transform sends a backfill
#: record's operations to marketo.ops.backfill.v1, which the sink serves after live, on a capped budget.
Lane = Literal["live", "backfill"]


class KalturaRecord(ContractModel):
    """Fields every Kaltura-side record carries."""

    schema_version: Literal[1] = 1
    partner_id: int = Field(gt=0)
    virtual_event_id: int = Field(gt=0)
    user_id: NonEmptyStr
    #: As Kaltura gave it (may be mixed case or unusable: transform decides and dead-letters).
    email: str | None = None
    source: SourceMode
    #: Where it came from (report id and page, file name and line, notification job id).
    source_ref: str = ""
    #: When Kaltura says it happened or last changed: the start of end-to-end latency.
    source_time: AwareDatetime
    ingested_at: AwareDatetime
    #: Live or backfill (``Lane``); records written before lanes existed are live.
    lane: Lane = "live"

    def partition_key(self) -> str:
        return kaltura_key(self.partner_id, self.virtual_event_id, self.user_id)


def kaltura_key(partner_id: int, virtual_event_id: int, user_id: str) -> str:
    """The key of every kaltura.* topic: one attendee's records stay in order on one partition."""
    return f"{partner_id}:{virtual_event_id}:{user_id}"


class AttendeeStatus(KalturaRecord):
    """A registration/attendance status of one person for one virtual event (User Profile)."""

    app_guid: str = ""
    first_name: str | None = None
    last_name: str | None = None
    status: AttendanceStatus
    previous_status: AttendanceStatus | None = None
    #: registration | invite | webhook | sso | admin (User Profile eventData.regOrigin).
    reg_origin: str | None = None
    #: sso | emailPass | magicLink | simpleLogin | guestLogin (loginData.lastLoginType).
    last_login_type: str | None = None
    status_time: AwareDatetime
    first_attended_time: datetime | None = None
    #: The event's schedule as ingest knew it when it read this record (docs/reference/kaltura-api.md §9);
    #: transform decides Pre-event vs During-event visit from it (docs/design/granular-statuses.md §2).
    event_start: AwareDatetime | None = None
    event_end: AwareDatetime | None = None
    schedule_source: ScheduleSource | None = None
    #: Registrant data (docs/reference/kaltura-api.md §10): Kaltura's user attribute, else the
    #: same-named profileData key; mapped to lead fields per event (docs/design/granular-statuses.md §3).
    title: str | None = None
    company: str | None = None
    country: str | None = None
    #: The registration form's answers: profileData's scalar entries, keys exactly as Kaltura gives
    #: them (a list of scalars joined with "; ", nested objects left out).
    registration: dict[str, Scalar] = Field(default_factory=dict)


class SessionEngagement(KalturaRecord):
    """One person's engagement in one session (entry) of a virtual event: a snapshot.

    Metric names are the seed's custom object field names. A metric the source report does not
    carry is None (not 0), so an update never zeroes what another report delivered.
    """

    entry_id: NonEmptyStr
    entry_name: str | None = None
    channel_id: int | None = None
    channel_name: str | None = None
    #: True once the session has ended and this is the post-session (final) figure.
    is_final: bool = False
    plays: NonNegInt | None = None
    vod_minutes_viewed: NonNegFloat | None = None
    live_minutes_viewed: NonNegFloat | None = None
    total_vod_completion_rate: NonNegFloat | None = None
    no_live_engagement_rate: NonNegFloat | None = None
    low_live_engagement_rate: NonNegFloat | None = None
    fair_live_engagement_rate: NonNegFloat | None = None
    good_live_engagement_rate: NonNegFloat | None = None
    high_live_engagement_rate: NonNegFloat | None = None
    clap_clicked_count: NonNegInt | None = None
    heart_clicked_count: NonNegInt | None = None
    think_clicked_count: NonNegInt | None = None
    wow_clicked_count: NonNegInt | None = None
    smile_clicked_count: NonNegInt | None = None
    answered_polls: NonNegInt | None = None
    messages_sent_group: NonNegInt | None = None
    qna_threads: NonNegInt | None = None
    combined_live_engaged_users_play_time_ratio: NonNegFloat | None = None
    add_to_calendar: NonNegInt | None = None
    mic_on: NonNegFloat | None = None
    cam_on: NonNegFloat | None = None
    total_reactions_activity: NonNegInt | None = None
    raise_hand: NonNegInt | None = None


class PollResponse(KalturaRecord):
    """One person's answer to one poll of one session."""

    entry_id: NonEmptyStr
    poll_id: NonEmptyStr
    #: The visual type: rating scale, crowd vote, ... (seed: poll_N_type).
    poll_type: str = ""
    question: str
    answer: str
    answered_at: AwareDatetime | None = None
    #: The poll's position among its session's polls (1-based, also past 10), as ingest computes it from
    #: the whole session's pollsActivity pull (docs/reference/kaltura-api.md §11); transform uses it as
    #: the poll_N slot. None on records written before positions existed (transform numbers those itself).
    poll_position: int | None = Field(default=None, ge=1)
