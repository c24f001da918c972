"""events[].lead_fields: defaults, overrides, removal, and precise messages for a bad mapping (issue #16 §3)."""

from __future__ import annotations

from typing import Any

import pytest

from kmsync_config import ConfigError, parse_tenants
from kmsync_config.lead_fields import DEFAULT_LEAD_FIELDS, LeadSource, parse_source


def tenants(lead_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"name": "q3", "partner_id": 1, "virtual_event_id": 2, "marketo_instance": "acme",
                             "program_id": 3}
    if lead_fields is not None:
        event["lead_fields"] = lead_fields
    return {"marketo_instances": {"acme": {"munchkin_id": "123-abc-456", "endpoint": "https://x.mktorest.com",
                                           "client_id": "c", "client_secret": {"env": "UNUSED"}}},
            "events": [event]}


def problems(lead_fields: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_tenants(tenants(lead_fields), check_secrets=False)
    return err.value.problems


def test_without_a_mapping_the_five_standard_fields_come_from_kaltura() -> None:
    event = parse_tenants(tenants(), check_secrets=False).events[0]
    assert event.lead_sources == {
        "firstName": LeadSource("kaltura", "first_name"), "lastName": LeadSource("kaltura", "last_name"),
        "title": LeadSource("kaltura", "title"), "company": LeadSource("kaltura", "company"),
        "country": LeadSource("kaltura", "country")}
    assert set(DEFAULT_LEAD_FIELDS) == set(event.lead_sources)


def test_an_entry_adds_a_form_field_replaces_a_default_and_null_removes_one() -> None:
    event = parse_tenants(tenants({"jobFunction__c": "form:jobFunction", "title": "form:role", "company": None,
                                   "country": None}), check_secrets=False).events[0]
    assert event.lead_sources == {
        "firstName": LeadSource("kaltura", "first_name"), "lastName": LeadSource("kaltura", "last_name"),
        "title": LeadSource("form", "role"), "jobFunction__c": LeadSource("form", "jobFunction")}


def test_every_bad_entry_is_reported_at_once_by_its_path() -> None:
    found = problems({"email": "kaltura:title", "job function": "form:x", "industry": "kaltura:industry",
                      "sector": "industry", "size": "form:", "how": "form: how"})
    assert sorted(found) == sorted([
        "events.0.lead_fields.email.[key]: 'email' is the lead's identity (kmsync writes it from Kaltura's "
        "email); it cannot be mapped",
        "events.0.lead_fields.job function.[key]: 'job function' is not a Marketo lead field API name (letters, "
        "digits and _, starting with a letter; see Admin > Field Management or `kmsync marketo check`)",
        "events.0.lead_fields.industry: 'kaltura:industry': Kaltura gives no 'industry'; use one of "
        "kaltura:first_name, kaltura:last_name, kaltura:title, kaltura:company, kaltura:country",
        "events.0.lead_fields.sector: 'industry' is not a source: use one of kaltura:first_name, "
        "kaltura:last_name, kaltura:title, kaltura:company, kaltura:country, or form:<profileData key>",
        "events.0.lead_fields.size: 'form:': give the registration form field's profileData key after 'form:', "
        "exactly as Kaltura stores it (no spaces around it)",
        "events.0.lead_fields.how: 'form: how': give the registration form field's profileData key after "
        "'form:', exactly as Kaltura stores it (no spaces around it)",
    ])


def test_a_source_that_is_not_text_is_refused() -> None:
    [problem] = problems({"title": 5})
    assert problem.startswith("events.0.lead_fields.title: ")


@pytest.mark.parametrize("text", ["kaltura:first_name", "form:companySize", "form:Job Function"])
def test_a_source_reads_back_as_written(text: str) -> None:
    assert str(parse_source(text)) == text
