"""Scenario configuration: defaults, and overrides read from a YAML file.

Every knob of the generated virtual event lives here so a test or a demo can shape the scenario
without touching code. Unknown keys are rejected with the path of the offending field, so a typo in
a scenario file fails loudly instead of being silently ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

HashAlgo = Literal["sha1", "sha256", "sha512"]

#: What the sandbox can post as Kaltura HTTP notifications (docs/reference/kaltura-api.md §7.2).
NotificationKind = Literal["virtual_event", "entry", "user", "user_profile"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NotificationConfig(_Strict):
    """How the sandbox posts Kaltura HTTP notifications (docs/reference/kaltura-api.md §2.4, §2.5)."""

    #: virtual_event: VirtualEvent changed at event start/end; entry: session entry changed when it
    #: ends; user: KalturaUser added when a registrant is created; user_profile: OUR EXTENSION (real
    #: Kaltura has no attendance webhook) - a UserProfile in the same envelope on each status change.
    kinds: tuple[NotificationKind, ...] = ("virtual_event", "entry")
    hash_algo: HashAlgo = "sha1"
    #: Fraction of successfully delivered notifications that are delivered a second time, same
    #: eventNotificationJobId and byte-identical body (Kaltura retries make receivers see this).
    duplicate_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    #: Real seconds before the first retry after a non-2xx answer; doubles on each further attempt.
    retry_base_seconds: float = Field(default=1.0, gt=0.0)
    retry_max_seconds: float = Field(default=60.0, gt=0.0)
    #: Attempts per notification, the first included. Kaltura's own count is UNCONFIRMED (§2.5).
    max_attempts: int = Field(default=10, ge=1)
    timeout_seconds: float = Field(default=10.0, gt=0.0)


class ScenarioConfig(_Strict):
    """A virtual event to generate. Times are the scenario's own (played by the sandbox clock)."""

    partner_id: int = Field(default=1234567, gt=0)
    #: Partner admin secret (KS signing and notification signing). Derived from the seed when unset.
    admin_secret: str | None = None
    virtual_event_id: int = Field(default=98765, gt=0)
    #: App Registry GUID of the event (user-profile appGuid). Derived from the seed when unset.
    app_guid: str | None = None
    event_name: str = "Q3 Product Summit"
    #: When the first session starts.
    event_start: datetime = datetime(2025, 6, 16, 13, 0, tzinfo=UTC)
    #: Invitations and registrations start this long before the event.
    registration_lead_hours: float = Field(default=72.0, gt=0.0)
    #: How long after the event participatedPostEvent (VOD) viewing can happen.
    post_event_hours: float = Field(default=6.0, ge=0.0)
    registrants: int = Field(default=3000, ge=1, le=100_000)
    sessions: int = Field(default=4, ge=1, le=50)
    session_minutes: int = Field(default=45, ge=5, le=600)
    break_minutes: int = Field(default=15, ge=0)
    #: Seed of the seed document: "Kaltura supports up to 10 polls per session" (the polls object's
    #: poll_1..poll_10). Above 10, the first session has more polls than slots (kmsync's too_many_polls).
    max_polls_per_session: int = Field(default=10, ge=0, le=20)
    #: Share of eligible (registered, not cancelled) registrants who attend live.
    attend_rate: float = Field(default=0.6, ge=0.0, le=1.0)
    #: Share of attendees who interact (chat, polls, Q&A, reactions, raise hand, mic/cam).
    participate_rate: float = Field(default=0.55, ge=0.0, le=1.0)
    #: Share of eligible non-attendees who watch the recording after the event.
    post_event_rate: float = Field(default=0.08, ge=0.0, le=1.0)
    unregister_rate: float = Field(default=0.04, ge=0.0, le=1.0)
    block_rate: float = Field(default=0.015, ge=0.0, le=1.0)
    #: Probability that an attendee watches any given session (at least one is always watched).
    session_watch_rate: float = Field(default=0.6, ge=0.0, le=1.0)
    #: Unregistered profiles that are then soft-deleted (invisible to user-profile/list afterwards).
    soft_deleted: int = Field(default=3, ge=0)
    #: Registrants whose Kaltura user has an unusable email (missing or malformed).
    malformed_users: int = Field(default=4, ge=0)
    #: Engagement rows damaged on purpose (missing fields, non-numeric value, blank email).
    malformed_engagement_rows: int = Field(default=6, ge=0)
    #: Poll-answer rows damaged on purpose (missing fields).
    malformed_poll_rows: int = Field(default=3, ge=0)
    #: Share of open answers longer than the polls object's 1,500 characters (kmsync cuts them and
    #: records a `truncated` decision).
    long_answer_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    #: Analytics lag: engagement/poll rows become visible this long after the session ends.
    report_lag_seconds: int = Field(default=60, ge=0)
    #: Share of rows that arrive late (after late_lag_seconds instead), so re-pulls matter.
    late_row_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    late_lag_seconds: int = Field(default=7200, ge=0)
    #: Share of status changes that user-profile/list shows only ``late_profile_seconds`` after their updatedAt
    #: (replica lag / eventual consistency: whether Kaltura does this is UNCONFIRMED, docs/reference/kaltura-api.md
    #: §7.1.1), so a profile with an older updatedAt appears after newer ones were served. Until then the profile
    #: shows its previous version (or is not listed). 0: every change is visible at its updatedAt.
    late_profile_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    late_profile_seconds: int = Field(default=0, ge=0)
    #: Reports microservice: status checks answered "processing" before a report is "completed".
    report_ready_after_checks: int = Field(default=1, ge=0)
    #: report.getTable non-CSV row cap (docs/reference/kaltura-api.md §3.3, MAX_RESULT_SIZE).
    report_row_cap: int = Field(default=12_000, ge=1)
    #: KS lifetime when session.start does not say (docs/reference/kaltura-api.md §1.2: default 86400).
    default_ks_expiry_seconds: int = Field(default=86_400, gt=0)
    notifications: NotificationConfig = NotificationConfig()
    #: The Events Platform answers no event and no sessions (docs/reference/kaltura-api.md §9.1), so a
    #: client must take the schedule from the tenants file (§9.4).
    hide_schedule: bool = False

    @field_validator("event_start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("event_start needs a timezone (e.g. 2025-06-16T13:00:00Z)")
        return value.astimezone(UTC)


class ScenarioFileError(ValueError):
    """The scenario YAML file is unreadable or does not validate; message names the fields."""


def load_scenario_file(path: str | Path, base: ScenarioConfig | None = None) -> ScenarioConfig:
    """Read a YAML file of overrides (a mapping of ScenarioConfig fields) on top of ``base``."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioFileError(f"{path}: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioFileError(f"{path}: expected a mapping of scenario fields, got {type(raw).__name__}")
    return apply_overrides(raw, base, source=str(path))


def apply_overrides(
    overrides: dict[str, Any], base: ScenarioConfig | None = None, *, source: str = "overrides"
) -> ScenarioConfig:
    """Merge a mapping of overrides into ``base`` (nested ``notifications`` merged key by key)."""
    merged: dict[str, Any] = (base or ScenarioConfig()).model_dump()
    for key, value in overrides.items():
        if key == "notifications" and isinstance(value, dict):
            merged["notifications"] = {**merged["notifications"], **value}
        else:
            merged[key] = value
    try:
        return ScenarioConfig.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ScenarioFileError(f"{source}: {problems}") from exc
