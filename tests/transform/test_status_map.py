"""The status mapping table: every Kaltura status lands on a seed channel status with its step."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from kmsync_contracts import AttendanceStatus, AttendeeStatus
from kmsync_contracts.seed import GRANULAR_STATUS_LABELS, STATUS_STEPS
from kmsync_transform.status_map import DEFAULT_STATUS_MAP, attended_label, granular_label, map_status

EXPECTED = {
    "created": ("Created", 10, None),
    "invited": ("Invited", 20, "Invited by team member"),
    "invitedPendingRegistration": ("Invited", 20, "Invited by team member to register"),
    "registered": ("Registered", 30, "Registered"),
    "confirmed": ("Confirmed", 40, "Confirmed email"),
    "autoConfirmed": ("autoConfirmed", 40, "Registered no confirmation required"),
    "attended": ("Attended", 50, None),
    "participated": ("Participated", 60, None),
    "participatedPostEvent": ("Participated", 60, None),
    "blocked": ("Blocked", 70, "Blocked"),
    "unregistered": ("Un-registered", 80, "Un-registered"),
}


def test_table_covers_all_eleven_statuses() -> None:
    assert set(DEFAULT_STATUS_MAP) == set(AttendanceStatus)
    assert len(EXPECTED) == 11


@pytest.mark.parametrize(("status", "expected"), sorted(EXPECTED.items()))
def test_default_mapping(status: str, expected: tuple[str, int, str | None],
                         status_record: Callable[..., AttendeeStatus]) -> None:
    mapped = map_status(status_record(status))
    assert (mapped.name, mapped.step, mapped.granular) == expected
    assert STATUS_STEPS[mapped.name] == mapped.step
    assert mapped.granular is None or mapped.granular in GRANULAR_STATUS_LABELS


def test_override_replaces_name_and_takes_the_seed_step(status_record: Callable[..., AttendeeStatus]) -> None:
    overrides = {AttendanceStatus.PARTICIPATED_POST_EVENT: "Attended"}
    mapped = map_status(status_record("participatedPostEvent"), overrides)
    assert (mapped.name, mapped.step) == ("Attended", 50)
    # statuses without an override keep the default
    assert map_status(status_record("blocked"), overrides).name == "Blocked"


def test_sso_registrations_get_the_sso_label(status_record: Callable[..., AttendeeStatus]) -> None:
    assert granular_label(status_record("registered", reg_origin="sso")) == "SSO login"
    assert granular_label(status_record("confirmed", last_login_type="sso")) == "SSO login"
    # not for statuses that are not a registration
    assert granular_label(status_record("blocked", reg_origin="sso")) == "Blocked"


def test_attended_is_pre_or_during_event_only_when_the_start_is_known(
    status_record: Callable[..., AttendeeStatus],
) -> None:
    rec = status_record("attended")
    assert attended_label(rec.status_time, None) is None
    assert attended_label(rec.status_time, rec.status_time + timedelta(hours=1)) == "Pre-event visit"
    assert attended_label(rec.status_time, rec.status_time - timedelta(hours=1)) == "During-event visit"
    assert map_status(rec, event_start=rec.status_time).granular == "During-event visit"
