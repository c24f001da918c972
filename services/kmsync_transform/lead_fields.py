"""An attendee's registration data → the lead fields its event maps (pure; issue #16 §3).

The event's ``lead_sources`` (kmsync_config.lead_fields: the defaults firstName, lastName, title,
company, country plus the tenants file's ``lead_fields``) say which Marketo lead field takes which
Kaltura value. A source with no value is left out, never sent empty: Sync Leads writes what it is
given, so an empty value would wipe what Marketo has from elsewhere (docs/reference/marketo-api.md §5.1).
Values go as strings; the sink cuts them to each field's length in the instance (§5.3).

A lead upsert goes with every status that moves forward, and also when the mapped fields change while
the status stays (a profile edit: ``LeadMemory``, a fingerprint per member kept in the state).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from kmsync_config.lead_fields import LeadSource
from kmsync_contracts.base import Scalar
from kmsync_contracts.kaltura_records import AttendeeStatus
from kmsync_transform.op_ids import content_fingerprint


def source_value(record: AttendeeStatus, source: LeadSource) -> Scalar:
    """The value ``source`` names on ``record`` (None when Kaltura gave none)."""
    if source.kind == "kaltura":
        value: Scalar = getattr(record, source.key)
    else:
        value = record.registration.get(source.key)
    return value


def as_text(value: Scalar) -> str | None:
    """A lead field value as Marketo receives it: text, booleans as true/false, blanks as None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def lead_field_values(record: AttendeeStatus, sources: Mapping[str, LeadSource]) -> dict[str, Scalar]:
    """Marketo lead field API name → value, for every mapped field Kaltura has a value for."""
    out: dict[str, Scalar] = {}
    for name, source in sources.items():
        text = as_text(source_value(record, source))
        if text is not None:
            out[name] = text
    return out


def lead_key(member_key: str) -> str:
    """Where the member's lead fingerprint lives in the statuses table (next to its status entry)."""
    return f"lead|{member_key}"


class LeadMemory:
    """The fingerprint of the mapped lead fields last sent per member, in the statuses table under
    ``lead_key`` as {"fingerprint": ...}: a registrant who edits their profile while the status stays
    is updated in Marketo once, and a re-pull of the same data sends nothing. State written before the
    fingerprint existed has none: "unknown", so the next record sends once and is then remembered."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    def update(self, member_key: str, fields: Mapping[str, Scalar]) -> str | None:
        """Remember the fields' fingerprint; it when it differs from the member's (or none is known), else None."""
        fingerprint = content_fingerprint(dict(fields))
        current = self.table.get(lead_key(member_key))
        if current and current.get("fingerprint") == fingerprint:
            return None
        self.table[lead_key(member_key)] = {"fingerprint": fingerprint}
        return fingerprint
