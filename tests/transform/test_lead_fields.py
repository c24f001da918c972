"""Lead upserts carry the registration data the event maps (issue #16 §3): defaults, form fields,
overrides, removals, and nothing sent empty."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kmsync_config.lead_fields import LeadSource
from kmsync_config.tenants import parse_tenants
from kmsync_contracts import AttendeeStatus, LeadUpsert, encode
from kmsync_contracts.topics import ATTENDEE_STATUS
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.lead_fields import as_text, lead_field_values
from kmsync_transform.routing import route
from kmsync_transform.transformer import Transformer, TransformState

from .conftest import T0, TENANTS

SRC = SourceRef(topic="in", partition=0, offset=1, key="100:200:u1")
REGISTRANT: dict[str, Any] = {
    "first_name": "Ann", "last_name": "Lee", "title": "CTO", "company": "Acme", "country": "France",
    "registration": {"jobFunction": "Engineering", "companySize": 250, "optIn": True, "role": "Buyer"}}


def lead_of(record: AttendeeStatus, lead_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(TENANTS)
    if lead_fields is not None:
        raw["events"][0]["lead_fields"] = lead_fields
    tenants = parse_tenants(raw, check_secrets=False)
    routed = route(ATTENDEE_STATUS, encode(record), SRC, tenants, T0).routed
    assert routed is not None
    ops = Transformer(tenants, TransformState.in_memory(), clock=lambda: T0).apply(routed).ops
    [lead] = [op for op in ops if isinstance(op, LeadUpsert)]
    return lead.fields


def test_by_default_names_title_company_and_country_reach_the_lead(
        status_record: Callable[..., AttendeeStatus]) -> None:
    assert lead_of(status_record("registered", **REGISTRANT)) == {
        "firstName": "Ann", "lastName": "Lee", "title": "CTO", "company": "Acme", "country": "France"}


def test_form_answers_go_to_the_fields_the_event_names(status_record: Callable[..., AttendeeStatus]) -> None:
    fields = lead_of(status_record("registered", **REGISTRANT), {
        "jobFunction__c": "form:jobFunction", "employees": "form:companySize", "optIn__c": "form:optIn",
        "title": "form:role", "country": None, "unknownAnswer__c": "form:notOnTheForm"})
    assert fields == {"firstName": "Ann", "lastName": "Lee", "title": "Buyer", "company": "Acme",
                      "jobFunction__c": "Engineering", "employees": "250", "optIn__c": "true"}


def test_a_registrant_who_left_fields_empty_sends_nothing_for_them(
        status_record: Callable[..., AttendeeStatus]) -> None:
    record = status_record("registered", first_name="Ann", title="  ", company=None,
                           registration={"jobFunction": ""})
    assert lead_of(record, {"jobFunction__c": "form:jobFunction"}) == {"firstName": "Ann"}


def test_values_are_text_and_blanks_are_none() -> None:
    assert [as_text(v) for v in ("a", " b ", 3, 2.5, True, False, "", " ", None)] == [
        "a", "b", "3", "2.5", "true", "false", None, None, None]


def test_the_mapping_reads_only_what_it_names(status_record: Callable[..., AttendeeStatus]) -> None:
    record = status_record("registered", **REGISTRANT)
    assert lead_field_values(record, {"industry": LeadSource("form", "jobFunction")}) == {"industry": "Engineering"}
    assert lead_field_values(record, {}) == {}
