"""Fixtures for transform tests: a tenants config with a normal and a legacy event, record factories."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kmsync_config.tenants import TenantsConfig, parse_tenants
from kmsync_contracts import AttendanceStatus, AttendeeStatus, PollResponse, SessionEngagement

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
MUNCHKIN = "123-ABC-456"
PARTNER = 100
EVENT = 200
LEGACY_EVENT = 300
OVERRIDE_EVENT = 400
PROGRAM = 1001

TENANTS: dict[str, Any] = {
    "marketo_instances": {
        "main": {"munchkin_id": MUNCHKIN, "endpoint": "http://127.0.0.1:1", "client_id": "id",
                 "client_secret": {"env": "KMSYNC_TEST_UNUSED_SECRET"}},
    },
    "events": [
        {"name": "acme-summit", "partner_id": PARTNER, "virtual_event_id": EVENT, "marketo_instance": "main",
         "program_id": PROGRAM,
         "sessions": [{"entry_id": "0_keynote", "name": "Keynote", "channel_id": 7, "channel_name": "Main"}]},
        {"name": "legacy-webinar", "partner_id": PARTNER, "virtual_event_id": LEGACY_EVENT,
         "marketo_instance": "main", "program_id": 1002,
         "outputs": {"custom_objects": False, "legacy_activities_only": True}},
        {"name": "custom-channel", "partner_id": PARTNER, "virtual_event_id": OVERRIDE_EVENT,
         "marketo_instance": "main", "program_id": 1003,
         "status_overrides": {"participatedPostEvent": "Attended", "invitedPendingRegistration": "Created"}},
    ],
}


def tenants_config() -> TenantsConfig:
    return parse_tenants(TENANTS, "test tenants", check_secrets=False)


@pytest.fixture
def tenants() -> TenantsConfig:
    return tenants_config()


@pytest.fixture
def status_record() -> Callable[..., AttendeeStatus]:
    def make(status: str, user: str = "u1", email: str | None = " Ann@Example.COM ", minutes: int = 0,
             event: int = EVENT, **kw: Any) -> AttendeeStatus:
        t = T0 + timedelta(minutes=minutes)
        return AttendeeStatus(partner_id=PARTNER, virtual_event_id=event, user_id=user, email=email,
                              source="pull", source_time=t, ingested_at=t, status=AttendanceStatus(status),
                              status_time=t, **kw)
    return make


@pytest.fixture
def engagement_record() -> Callable[..., SessionEngagement]:
    def make(user: str = "u1", email: str | None = "ann@example.com", entry: str = "0_keynote",
             event: int = EVENT, final: bool = True, minutes: int = 0, **metrics: Any) -> SessionEngagement:
        t = T0 + timedelta(minutes=minutes)
        return SessionEngagement(partner_id=PARTNER, virtual_event_id=event, user_id=user, email=email,
                                 source="pull", source_time=t, ingested_at=t, entry_id=entry, is_final=final,
                                 **metrics)
    return make


@pytest.fixture
def poll_record() -> Callable[..., PollResponse]:
    def make(poll: str, answer: str = "yes", question: str = "Q?", user: str = "u1",
             email: str | None = "ann@example.com", entry: str = "0_keynote", event: int = EVENT,
             poll_type: str = "crowd vote") -> PollResponse:
        return PollResponse(partner_id=PARTNER, virtual_event_id=event, user_id=user, email=email,
                            source="pull", source_time=T0, ingested_at=T0, entry_id=entry, poll_id=poll,
                            poll_type=poll_type, question=question, answer=answer)
    return make
