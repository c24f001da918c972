"""Lead fields as the instance has them, and lead records shaped onto them (issue #16 §3).

kmsync writes the registration data an event maps (tenants file ``lead_fields``) into lead fields
through Sync Leads (docs/reference/marketo-api.md §5.1, §14). An instance's lead fields, their types,
lengths and whether they can be written come from Describe Lead (§5.3). A record is shaped onto them
before it is sent: a field the instance lacks or will not let the API write is left out (Sync Leads
would skip the whole lead with 1006 otherwise), a string longer than its field is cut (§5.3), and
both are noted in the lead's outcome. A lead refused with ``1021 Company update not allowed`` is
sent again once without its company fields (§14; the setting ``KMSYNC_SINK_COMPANY_ON_1021``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kmsync_marketo.outcomes import Outcome
from kmsync_marketo.schema import FieldInfo, cut

#: Lead field types a text value can be written to (docs/design/granular-statuses.md §3; §5.3 types).
STRING_LIKE_TYPES = frozenset({"string", "text", "email", "url", "phone"})
#: docs/reference/marketo-api.md §3.3, §14: Sync Leads refuses a company value on some instances.
COMPANY_REFUSED_CODE = "1021"
#: The lead fields a 1021 refers to: "Updating Company fields using Sync Leads endpoint is not
#: supported" (§14); kmsync maps only the standard ``company`` of them.
COMPANY_FIELDS: tuple[str, ...] = ("company",)
#: The lookup field every upsert carries: never shaped away.
IDENTITY_FIELDS = frozenset({"email"})


def lead_fields(described: Sequence[Mapping[str, Any]]) -> dict[str, FieldInfo]:
    """Describe Lead's rows (``GET /rest/v1/leads/describe.json``: ``rest.name``, ``rest.readOnly``,
    ``dataType``, ``length``; §5.3) → API name → FieldInfo."""
    out: dict[str, FieldInfo] = {}
    for row in described:
        rest = row.get("rest")
        name = rest.get("name") if isinstance(rest, Mapping) else row.get("name")
        if not isinstance(name, str) or not name:
            continue
        read_only = bool(rest.get("readOnly")) if isinstance(rest, Mapping) else not row.get("updateable", True)
        length = row.get("length")
        out[name] = FieldInfo(name, str(row.get("dataType") or "string").lower(),
                              int(length) if isinstance(length, int | float) and length > 0 else None,
                              not read_only)
    return out


def api_name_shown_as(described: Sequence[Mapping[str, Any]], wanted: str) -> str | None:
    """The API name of a lead field whose display name reads like ``wanted`` (case, spaces and
    punctuation ignored), for a mapping that used the name the Marketo UI shows."""
    key = re.sub(r"[^a-z0-9]", "", wanted.lower())
    for row in described:
        rest = row.get("rest")
        name = rest.get("name") if isinstance(rest, Mapping) else row.get("name")
        shown = re.sub(r"[^a-z0-9]", "", str(row.get("displayName") or "").lower())
        if shown and shown == key and isinstance(name, str) and name != wanted:
            return name
    return None


def field_problem(name: str, fields: Mapping[str, FieldInfo]) -> str | None:
    """Why kmsync cannot write text into lead field ``name`` of this instance; None when it can."""
    info = fields.get(name)
    if info is None:
        return f"the instance has no lead field with API name {name!r}"
    if not info.updateable:
        return f"lead field {name!r} is read-only for the API"
    if info.data_type not in STRING_LIKE_TYPES:
        return (f"lead field {name!r} is of type {info.data_type}; registration answers are text (use a field of "
                f"type {', '.join(sorted(STRING_LIKE_TYPES))})")
    return None


@dataclass(frozen=True)
class LeadShaped:
    """A lead record reduced to what the instance takes."""

    values: dict[str, Any]
    #: (field, why) of mapped fields left out.
    dropped: tuple[tuple[str, str], ...] = ()
    #: (field, original length, written length) of values cut to the field's length.
    truncated: tuple[tuple[str, int, int], ...] = ()

    def note(self) -> str | None:
        """What the lead's outcome says about it (RecordOutcome.reason); None when nothing changed."""
        parts = [f"{name} not written: {why}" for name, why in self.dropped]
        parts += [f"{name} cut from {n} to {m} characters (the field's length)" for name, n, m in self.truncated]
        return "; ".join(parts) or None


def shape_lead(fields: Mapping[str, FieldInfo], record: Mapping[str, Any]) -> LeadShaped:
    """Only fields the API can write, strings cut to their length; the identity always stays."""
    values: dict[str, Any] = {}
    dropped: list[tuple[str, str]] = []
    truncated: list[tuple[str, int, int]] = []
    for name, value in record.items():
        info = fields.get(name)
        if name in IDENTITY_FIELDS or (info is not None and info.updateable and value is None):
            values[name] = value
            continue
        if info is None or not info.updateable:
            dropped.append((name, "no such lead field in this instance" if info is None else "read-only"))
            continue
        limit = info.limit
        if limit is None or not isinstance(value, str) or (len(value) <= limit and info.data_type != "text"):
            values[name] = value  # nothing ``cut`` could cut (most values; issue #22)
            continue
        new, before = cut(value, info)
        if before is not None:
            truncated.append((name, before, len(new.encode()) if info.data_type == "text" else len(new)))
        values[name] = new
    return LeadShaped(values, tuple(dropped), tuple(truncated))


class LeadSyncer(Protocol):
    async def sync_leads(self, leads: Sequence[Mapping[str, Any]]) -> Any: ...


@dataclass
class CompanyRetry:
    """Outcomes after the 1021 fallback: ``outcomes[i]`` and ``lead_ids`` as Sync Leads gives them, and
    ``dropped[i]``: the company fields record ``i`` was finally written without."""

    outcomes: list[Outcome]
    lead_ids: dict[str, int]
    dropped: dict[int, tuple[str, ...]]


async def sync_leads_without_refused_company(writer: LeadSyncer, records: Sequence[Mapping[str, Any]]
                                             ) -> CompanyRetry:
    """Sync Leads; the records refused with 1021 that carry a company field are sent once more without
    it (§14). Other failures are returned as they are."""
    first = await writer.sync_leads(records)
    outcomes: list[Outcome] = list(first.outcomes)
    lead_ids: dict[str, int] = dict(first.lead_ids)
    again = [i for i, o in enumerate(outcomes) if o.status == "failed" and o.reason_code == COMPANY_REFUSED_CODE
             and any(f in records[i] for f in COMPANY_FIELDS)]
    if not again:
        return CompanyRetry(outcomes, lead_ids, {})
    retry = await writer.sync_leads([{k: v for k, v in records[i].items() if k not in COMPANY_FIELDS}
                                     for i in again])
    dropped: dict[int, tuple[str, ...]] = {}
    for i, o in zip(again, retry.outcomes, strict=True):
        outcomes[i] = dataclasses.replace(o, seq=i)
        if o.ok:
            dropped[i] = tuple(f for f in COMPANY_FIELDS if f in records[i])
    lead_ids.update(retry.lead_ids)
    return CompanyRetry(outcomes, lead_ids, dropped)


def company_note(dropped: Sequence[str]) -> str | None:
    """The outcome note for a lead written without its company fields after a 1021 (§14)."""
    if not dropped:
        return None
    return (f"{', '.join(dropped)} not written: Marketo refused it with {COMPANY_REFUSED_CODE} Company update not "
            "allowed (docs/reference/marketo-api.md §14); the lead was written without it")
