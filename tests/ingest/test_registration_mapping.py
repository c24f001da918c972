"""A User Profile joined with its Kaltura user → AttendeeStatus carries the registrant's title,
company, country and registration-form answers (docs/reference/kaltura-api.md §10, issue #16 §3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaltura_sandbox.scenario import REGISTRATION_FORM
from kaltura_sandbox.testing import running_sandbox
from kmsync_config import parse_tenants
from kmsync_contracts import AttendeeStatus, decode, encode
from kmsync_contracts.topics import ATTENDEE_STATUS
from kmsync_ingest.kaltura_source import client_for
from kmsync_ingest.mapping import RecordContext, attendee_status, registration_answers
from kmsync_kaltura.models import Attendee, KalturaUser, UserProfile
from kmsync_testing.ingest import settings_for, tenants_document

from .test_schedule import pulled

T = datetime(2026, 6, 16, 14, 0, tzinfo=UTC)
CTX = RecordContext(partner_id=1, virtual_event_id=2, source="pull", source_time=T, ingested_at=T)


def attendee(profile_data: dict[str, Any], **user: Any) -> Attendee:
    profile = UserProfile.model_validate({
        "id": "p1", "partnerId": 1, "appGuid": "g", "userId": "jane", "status": "enabled",
        "profileData": profile_data, "eventData": {"attendanceStatus": "registered"},
        "createdAt": T.isoformat(), "updatedAt": T.isoformat()})
    return Attendee(profile=profile, user=KalturaUser(id="jane", email="jane@acme.test", **user))


def test_the_kaltura_user_wins_and_profile_data_fills_what_it_lacks() -> None:
    record = attendee_status(attendee({"title": "Form title", "company": "Form Co", "country": "France"},
                                      title="CTO", company="", country=None), CTX, "ref")
    assert (record.title, record.company, record.country) == ("CTO", "Form Co", "France")


def test_without_either_the_attributes_stay_empty() -> None:
    record = attendee_status(attendee({"company": "  "}), CTX, "ref")
    assert (record.title, record.company, record.country) == (None, None, None)


def test_form_answers_keep_their_keys_scalars_and_lists_only() -> None:
    answers = registration_answers({
        "jobFunction": "Engineering", "companySize": 250, "optIn": True, "Job Level": "VP",
        "interests": ["AI", "Video", None], "address": {"city": "Paris"}, "empty": "", "blank": " ",
        "none": None, "mixed": ["a", {"b": 1}]})
    assert answers == {"jobFunction": "Engineering", "companySize": 250, "optIn": True, "Job Level": "VP",
                       "interests": "AI; Video"}


def test_the_answers_travel_on_the_topic() -> None:
    record = attendee_status(attendee({"jobFunction": "Marketing", "companySize": "51-200"}, title="CMO"), CTX,
                             "ref")
    decoded = decode(ATTENDEE_STATUS, encode(record))
    assert isinstance(decoded, AttendeeStatus)
    assert decoded.registration == {"jobFunction": "Marketing", "companySize": "51-200"}
    assert decoded.title == "CMO"


async def test_pulled_statuses_carry_each_registrants_form_as_the_sandbox_holds_it(tmp_path: Path) -> None:
    """Over HTTP: user.list + User Profile list from the Kaltura sandbox, whose registrants fill a
    registration form, leave questions blank, and whose virtual event lists the form's keys."""
    async with running_sandbox({"registrants": 40, "sessions": 1}, seed=4) as sb:
        sb.advance_to_end()
        records = await pulled(sb, tenants_document(sb, tmp_path))
        settings = settings_for("127.0.0.1:1", "t.", sb)
        doc = parse_tenants(tenants_document(sb, tmp_path), "test tenants")
        client = client_for(sb.partner_id, doc.kaltura_partners[sb.partner_id], settings)
        try:
            event = await client.api_v3("virtualevent_virtualevent", "get", {"id": sb.virtual_event_id})
        finally:
            await client.aclose()
        people = {r.user_id: r for r in sb.sandbox.scenario.registrants}
    schema = json.loads(event["registrationFormSchema"])
    assert set(REGISTRATION_FORM) <= set(schema["properties"])
    assert records
    for record in records:
        person = people[record.user_id]
        assert (record.title, record.company, record.country) == (person.title or None, person.company or None,
                                                                  person.country)
        assert {k: v for k, v in record.registration.items() if k in REGISTRATION_FORM} == person.form
    assert any(not r.title for r in records) and any(r.title for r in records)
