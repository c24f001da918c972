"""Kaltura attendanceStatus → the event channel's status (seed "Channel setup") and granular label.

The default table follows docs/reference/kaltura-api.md §4.2 ("Mapping to the Marketo channel", itself marked
partly UNCONFIRMED), so every entry can be replaced per event with `status_overrides` in the
tenants file. Steps always come from the seed's channel (kmsync_contracts.seed.STATUS_STEPS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from kmsync_contracts.kaltura_records import AttendanceStatus, AttendeeStatus
from kmsync_contracts.seed import GRANULAR_STATUS_LABELS, STATUS_STEPS

A = AttendanceStatus

#: All 11 attendanceStatus values → a channel status name of the seed (docs/reference/kaltura-api.md §4.2).
DEFAULT_STATUS_MAP: Mapping[AttendanceStatus, str] = {
    A.CREATED: "Created",
    A.INVITED: "Invited",
    A.INVITED_PENDING_REGISTRATION: "Invited",
    A.REGISTERED: "Registered",
    A.CONFIRMED: "Confirmed",
    A.AUTO_CONFIRMED: "autoConfirmed",
    A.ATTENDED: "Attended",
    A.PARTICIPATED: "Participated",
    # §4.2 marks this one with "?": a post-event participation is still a participation.
    A.PARTICIPATED_POST_EVENT: "Participated",
    A.BLOCKED: "Blocked",
    A.UNREGISTERED: "Un-registered",
}

#: The seed's "List of statuses displayed on Marketo", per attendanceStatus (docs/reference/kaltura-api.md §4.2).
#: Statuses the seed gives no label for map to None.
DEFAULT_GRANULAR_LABELS: Mapping[AttendanceStatus, str | None] = {
    A.CREATED: None,
    A.INVITED: "Invited by team member",
    # §4.2's guess: "pending registration" is the invitation "to register".
    A.INVITED_PENDING_REGISTRATION: "Invited by team member to register",
    A.REGISTERED: "Registered",
    A.CONFIRMED: "Confirmed email",
    A.AUTO_CONFIRMED: "Registered no confirmation required",
    A.ATTENDED: None,  # Pre-event vs During-event visit: see attended_label()
    A.PARTICIPATED: None,
    A.PARTICIPATED_POST_EVENT: None,
    A.BLOCKED: "Blocked",
    A.UNREGISTERED: "Un-registered",
}
SSO_LABEL = "SSO login"
PRE_EVENT_VISIT = "Pre-event visit"
DURING_EVENT_VISIT = "During-event visit"
_REGISTRATION_STATUSES = frozenset({A.REGISTERED, A.CONFIRMED, A.AUTO_CONFIRMED})

assert set(DEFAULT_STATUS_MAP) == set(AttendanceStatus)
assert set(DEFAULT_STATUS_MAP.values()) <= set(STATUS_STEPS)
assert {v for v in DEFAULT_GRANULAR_LABELS.values() if v} | {SSO_LABEL, PRE_EVENT_VISIT, DURING_EVENT_VISIT} \
    <= set(GRANULAR_STATUS_LABELS)


@dataclass(frozen=True)
class LabelRules:
    """An event's replacements of the label rules (tenants file ``label_overrides``, ``visit_rules``)."""

    overrides: Mapping[AttendanceStatus, str | None]
    after_event: str | None = None


@dataclass(frozen=True)
class MappedStatus:
    """What a Kaltura status becomes in the event program."""

    name: str
    step: int
    granular: str | None


def attended_label(status_time: datetime, event_start: datetime | None,
                   event_end: datetime | None = None, after_event: str | None = None) -> str | None:
    """Pre-event vs during-event visit. How Kaltura derives it is UNCONFIRMED (docs/reference/kaltura-api.md
    §12): kmsync compares the status time with the event's schedule (§9): before the start → Pre-event
    visit, from the start until the end → During-event visit; after the end, or when the start is
    unknown, no label (the member keeps its last one; docs/design/granular-statuses.md §1.3), unless
    ``after_event`` names the label of a visit after the end (tenants file ``visit_rules``)."""
    if event_start is None:
        return None
    if status_time < event_start:
        return PRE_EVENT_VISIT
    if event_end is not None and status_time >= event_end:
        return after_event
    return DURING_EVENT_VISIT


def granular_label(record: AttendeeStatus, event_start: datetime | None = None,
                   event_end: datetime | None = None, rules: LabelRules | None = None) -> str | None:
    """The seed's most detailed label for this record, or None when the seed has none. ``rules``: the
    event's label overrides (attendanceStatus → label or None, replacing every rule below for that
    status) and the label of a visit after the event's end."""
    if rules is not None and record.status in rules.overrides:
        return rules.overrides[record.status]
    if record.status in _REGISTRATION_STATUSES and "sso" in {record.reg_origin, record.last_login_type}:
        # §4.2 (a guess): registrations through single sign-on are the seed's "SSO login".
        return SSO_LABEL
    if record.status is A.ATTENDED:
        return attended_label(record.status_time, event_start, event_end, rules.after_event if rules else None)
    return DEFAULT_GRANULAR_LABELS[record.status]


def map_status(
    record: AttendeeStatus,
    overrides: Mapping[AttendanceStatus, str] | None = None,
    event_start: datetime | None = None,
    event_end: datetime | None = None,
    rules: LabelRules | None = None,
) -> MappedStatus:
    """The channel status for a record; a per-event override replaces the default name."""
    name = (overrides or {}).get(record.status) or DEFAULT_STATUS_MAP[record.status]
    return MappedStatus(name=name, step=STATUS_STEPS[name],
                        granular=granular_label(record, event_start, event_end, rules))
