"""Program member custom fields: reading the describe, checking the granular label's field, and the
record Sync Program Member Data takes (docs/reference/marketo-api.md §13).

Pure: the client makes the calls (client.py); the sink (services/kmsync_sink/member_data.py) and
`kmsync marketo check` (check.py) use these to decide what to send and what to tell the admin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kmsync_contracts.granular import (
    GRANULAR_STATUS_DESCRIPTION,
    GRANULAR_STATUS_DISPLAY_NAME,
    GRANULAR_STATUS_MIN_LENGTH,
    STATUS_REASON_FIELD,
)


@dataclass(frozen=True)
class MemberField:
    """One program member field as describe lists it (§13.3)."""

    name: str
    display_name: str
    data_type: str
    #: Characters a string field holds (None: describe gave none).
    length: int | None
    updateable: bool


def member_fields(describe: Sequence[Mapping[str, Any]]) -> dict[str, MemberField]:
    """API name → field, from the describe result (``result[0].fields``, §13.3)."""
    out: dict[str, MemberField] = {}
    for entry in describe[:1]:
        for f in entry.get("fields") or []:
            if not isinstance(f, Mapping) or not isinstance(f.get("name"), str):
                continue
            length = f.get("length")
            out[f["name"]] = MemberField(
                name=f["name"], display_name=str(f.get("displayName") or f["name"]),
                data_type=str(f.get("dataType") or ""), length=length if isinstance(length, int) else None,
                updateable=bool(f.get("updateable")))
    return out


#: What an admin does where the API cannot create the field (the role lacks Read-Write Schema Custom
#: Field, which the seed's role list does not give; §13.2, §13.7).
UI_INSTRUCTION = (
    "in Marketo, Admin > Field Management > New Custom Field; Object: Program Member; Type: String; "
    f"Name: {GRANULAR_STATUS_DISPLAY_NAME}; then set the API name it shows as "
    "marketo_instances.<name>.program_member_fields.granular_status in the tenants file")


def granular_field_problem(fields: Mapping[str, MemberField], api_name: str) -> str | None:
    """Why the granular label's field cannot take the labels (None: it can)."""
    f = fields.get(api_name)
    if f is None:
        other = next((g for g in fields.values() if g.display_name == GRANULAR_STATUS_DISPLAY_NAME), None)
        if other is not None:
            return (f"no program member field with API name {api_name!r}, but {other.display_name!r} has API name "
                    f"{other.name!r}: set marketo_instances.<name>.program_member_fields.granular_status: "
                    f"{other.name}")
        return f"no program member field {api_name!r}; {UI_INSTRUCTION}"
    if f.data_type != "string":
        return (f"program member field {api_name!r} is {f.data_type}, not string; create a string field "
                f"({UI_INSTRUCTION})")
    if not f.updateable:
        return f"program member field {api_name!r} is not updateable through the API"
    if f.length is not None and f.length < GRANULAR_STATUS_MIN_LENGTH:
        return (f"program member field {api_name!r} holds {f.length} characters; the longest label needs "
                f"{GRANULAR_STATUS_MIN_LENGTH} (length cannot be changed, §13.1: create another field)")
    return None


def granular_field_definition(api_name: str) -> dict[str, Any]:
    """The Create Program Member Field input for the granular label's field (§13.2)."""
    return {"displayName": GRANULAR_STATUS_DISPLAY_NAME, "name": api_name, "dataType": "string",
            "description": GRANULAR_STATUS_DESCRIPTION}


@dataclass(frozen=True)
class LabelRecord:
    record: dict[str, Any]
    #: The label's length before it was cut to the field's (None: sent whole).
    cut_from: int | None = None


def label_record(lead_id: int, label: str, field: str, *, length: int | None = None,
                 mirror_to_status_reason: bool = False) -> LabelRecord:
    """A Sync Program Member Data record writing ``label`` into ``field`` (and statusReason when
    mirrored, §13.5), cut to the field's length with the cut reported (§13.4 (c))."""
    value = label if length is None or len(label) <= length else label[:length]
    record: dict[str, Any] = {"leadId": int(lead_id), field: value}
    if mirror_to_status_reason:
        record[STATUS_REASON_FIELD] = label[:255]
    return LabelRecord(record, len(label) if value != label else None)
