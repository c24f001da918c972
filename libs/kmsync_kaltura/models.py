"""Typed models of Kaltura's raw shapes - what Kaltura sends, with Kaltura's field names.

These are *not* kmsync's topic contracts (those live in ``kmsync_contracts``); ingest maps these to
them. JSON objects (UserProfile, KalturaUser, KalturaHttpNotification) use snake_case attributes with
Kaltura's camelCase as aliases and keep unknown fields (``extra="allow"``), because Kaltura adds
fields over time. Report rows use the report's own column names and ignore unknown columns; they are
parsed by header name, never by position.

Report values arrive as strings: counts must be whole numbers, metrics non-negative numbers; an
empty cell is an error, not zero (whether real Kaltura ever leaves one empty is UNCONFIRMED). Email
syntax is checked only when the validation context says ``{"validate_email": True}`` (the parsers'
default): report 60013 and 4021 identify the attendee by email alone, so a row without a usable one
cannot be attributed to anyone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

# One enum for the 11 attendanceStatus values (docs/reference/kaltura-api.md §4.2), declared with the contracts.
from kmsync_contracts.kaltura_records import AttendanceStatus

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def is_plausible_email(value: str) -> bool:
    """One '@', something before it, a dotted domain after it, no spaces. Deliberately loose."""
    return bool(_EMAIL.match(value))


# ------------------------------------------------------------------------------ JSON objects


class _KalturaObject(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)


class LoginData(_KalturaObject):
    last_login_date: AwareDatetime | None = None
    #: sso | emailPass | magicLink | simpleLogin | guestLogin
    last_login_type: str | None = None


class EventData(_KalturaObject):
    #: registration | invite | webhook | sso | admin
    reg_origin: str | None = None
    attendance_status: AttendanceStatus
    previous_attendance_status: AttendanceStatus | None = None
    status_update_time: AwareDatetime | None = None
    first_attended_status_time: AwareDatetime | None = None
    user_registration_type: str | None = None
    attendance_type: str | None = None
    allowed_attendance_type: str | None = None
    is_registered: bool | None = None


class UserProfile(_KalturaObject):
    """One person's profile for one event app (User Profile service, docs/reference/kaltura-api.md §4.2, §7.1)."""

    id: str = Field(min_length=1)
    partner_id: int
    app_guid: str
    user_id: str = Field(min_length=1)
    #: enabled | disabled | deleted
    status: str
    profile_data: dict[str, Any] = Field(default_factory=dict)
    login_data: LoginData | None = None
    event_data: EventData
    app_data: dict[str, Any] | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    deleted_at: AwareDatetime | None = None
    object_type: Literal["UserProfile"] = "UserProfile"


class KalturaUser(_KalturaObject):
    """api_v3 ``KalturaUser`` as ``user.list`` returns it (the email/name half of an attendee)."""

    id: str
    partner_id: int | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    screen_name: str | None = None
    title: str | None = None
    company: str | None = None
    country: str | None = None
    status: int | None = None
    #: Unix seconds, as api_v3 gives times.
    created_at: int | None = None
    updated_at: int | None = None
    object_type: str = "KalturaUser"


class Attendee(BaseModel):
    """A user profile joined with its Kaltura user (``user`` is None when user.list lacks it)."""

    model_config = ConfigDict(frozen=True)

    profile: UserProfile
    user: KalturaUser | None = None

    @property
    def email(self) -> str | None:
        return self.user.email if self.user else None


class HttpNotification(_KalturaObject):
    """``KalturaHttpNotification`` envelope (API-object data mode, docs/reference/kaltura-api.md §2.3, §7.2)."""

    object: dict[str, Any]
    #: int for core types (1 ENTRY, 8 KUSER, ...) or a plugin string such as
    #: ``virtualEventEventNotifications.VirtualEvent``.
    event_object_type: int | str
    #: 1..13 per EventNotificationEventType (3 OBJECT_CHANGED, ...); strings accepted too.
    event_type: int | str
    event_notification_job_id: int
    template_id: int | None = None
    template_name: str | None = None
    template_system_name: str | None = None
    object_type: Literal["KalturaHttpNotification"] = "KalturaHttpNotification"

    @property
    def kaltura_object_type(self) -> str | None:
        """``objectType`` of the carried object, e.g. ``KalturaUser``, ``KalturaVirtualEvent``."""
        value = self.object.get("objectType")
        return value if isinstance(value, str) else None


# ------------------------------------------------------------------------------- report rows


def _count(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            raise ValueError("missing value")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"not a number: {text!r}") from None
        if not number.is_integer():
            raise ValueError(f"not a whole number: {text!r}")
        return int(number)
    return value


def _metric(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            raise ValueError("missing value")
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"not a number: {text!r}") from None
    return value


Count = Annotated[int, BeforeValidator(_count), Field(ge=0)]
#: A non-negative, finite measure ("inf", "nan" or a value that overflows a float are refused).
Metric = Annotated[float, BeforeValidator(_metric), Field(ge=0, allow_inf_nan=False)]


class _ReportRow(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    #: The session (entry) the row belongs to - stamped by the client, not a report column.
    entry_id: str = Field(min_length=1)
    email: str

    @field_validator("email")
    @classmethod
    def _email(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            raise ValueError("missing email")
        if (info.context or {}).get("validate_email", True) and not is_plausible_email(value):
            raise ValueError(f"not a valid email address: {value!r}")
        return value


class EngagementRow(_ReportRow):
    """A row of report 60013 EP_WEBCAST_VOD_LIVE_USERS_ENGAGEMENT for one session (§3.4, §7.1).

    View times are minutes; ``avg_completion_rate`` and the engagement ratio are fractions.
    """

    first_name: str = ""
    last_name: str = ""
    title: str = ""
    company: str = ""
    country: str = ""
    role: str = ""
    industry: str = ""
    vod_view_time: Metric
    live_view_time: Metric
    total_view_time: Metric
    avg_completion_rate: Metric
    count_reaction_clicked: Count
    count_raise_hand_clicked: Count
    combined_live_engaged_users_play_time_ratio: Metric
    count_group_chat_messages_sent: Count
    count_poll_answered: Count
    count_q_and_a_threads: Count
    count_download_attachment_clicked: Count


class EngagementCsvRow(_ReportRow):
    """A row of custom report 4021 "User Reactions" CSV (docs/reference/kaltura-api.md §3.5, §7.1).

    The report has no entry id column, so it is pulled per session and the client stamps
    ``entry_id``. Whether ``mic_on``/``cam_on`` are minutes or flags is UNCONFIRMED; read as numbers.
    """

    combined_live_engaged_users_play_time_ratio: Metric
    download_attachment: Count
    add_to_calendar: Count
    raise_hand: Count
    mic_on: Metric
    cam_on: Metric
    clap_clicked_count: Count
    heart_clicked_count: Count
    think_clicked_count: Count
    wow_clicked_count: Count
    smile_clicked_count: Count
    total_reactions_activity: Count
    answered_polls: Count
    messages_sent_group: Count
    qna_threads: Count


class PollAnswerRow(_ReportRow):
    """One poll answer. Layout is OUR ASSUMPTION of the undocumented ``pollsActivity`` CSV (§7.1)."""

    poll_id: str = Field(min_length=1)
    #: Visual type, e.g. "rating scale", "crowd vote", "multiple choice", "slider poll", "open answers".
    poll_type: str = Field(min_length=1)
    question: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    answer: str
    answered_at: datetime

    @field_validator("answered_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("answered_at needs a timezone")
        return value


def required_columns(model: type[_ReportRow]) -> list[str]:
    """Report columns a row model needs (everything but the client-stamped ``entry_id``)."""
    return [
        name for name, f in model.model_fields.items()
        if f.is_required() and not (name == "entry_id" and model is not PollAnswerRow)
    ]
