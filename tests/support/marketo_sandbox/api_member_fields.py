"""Program member fields: describe, the custom field schema endpoints and Sync Program Member Data
(docs/reference/marketo-api.md §13).

Custom program member fields are instance state (``Instance.member_fields``; the kaltura preset
seeds ``kalturaGranularStatus``, string 255), at most 20 of them (§13.1, §13.2). Sync Program Member
Data updates existing members only (``1013 Membership not found``), at most 300 per call; a field
that does not exist answers ``1006`` per record (or for the whole call, ``behaviour.
unknown_member_field_level``), a field that is not updateable answers ``behaviour.
readonly_member_field_code`` (both UNCONFIRMED, §13.4); each update logs a "Change Program Member
Data" activity on the lead.
"""

from __future__ import annotations

from typing import Any

from .call import Call, input_records
from .envelope import MarketoError, iso, reason
from .fields import InvalidValue, coerce
from .instance import Instance
from .member_field_defs import STANDARD_BY_NAME, MemberField, add_member_field
from .model import Activity, Member

#: The sandbox's id for the standard activity type "Change Program Member Data" (the id Marketo uses is
#: not in the reference; tests read it by this name).
CHANGE_PROGRAM_MEMBER_DATA_TYPE_ID = 175
def all_member_fields(inst: Instance) -> dict[str, MemberField]:
    return {**STANDARD_BY_NAME, **inst.member_fields}


def _field_json(f: MemberField, *, schema: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "displayName": f.display_name, "dataType": f.data_type,
                           "updateable": f.updateable, "crmManaged": False}
    if f.length is not None:
        out["length"] = f.length
    if schema:
        out.update({"description": f.description, "isCustom": f.custom, "isHidden": False,
                    "isApiCreated": f.api_created, "isSensitive": False, "isHtmlEncodingInEmail": False})
    return out


def describe_members(call: Call) -> dict[str, Any]:
    """GET /rest/v1/programs/members/describe.json (§13.3)."""
    fields = [_field_json(f) for f in all_member_fields(call.inst).values()]
    return {"result": [{"name": "API Program Membership", "description": "Map for API program membership fields",
                        "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
                        "dedupeFields": ["leadId", "programId"],
                        "searchableFields": [["leadId"], ["reachedSuccess"], ["statusName"]],
                        "fields": fields}]}


def list_member_fields(call: Call) -> dict[str, Any]:
    """GET /rest/v1/programs/members/schema/fields.json (§13.3; Read-Write Schema Custom Field)."""
    return {"result": [_field_json(f, schema=True) for f in all_member_fields(call.inst).values()]}


def get_member_field(call: Call) -> dict[str, Any]:
    """GET /rest/v1/programs/members/schema/fields/{fieldApiName}.json (§13.3)."""
    name = call.params.get("fieldApiName", "")
    f = all_member_fields(call.inst).get(name)
    if f is None:
        raise MarketoError("1006", f"Field '{name}' not found")
    return {"result": [_field_json(f, schema=True)]}


def create_member_fields(call: Call) -> dict[str, Any]:
    """POST /rest/v1/programs/members/schema/fields.json (§13.2): per-record created or skipped."""
    results: list[dict[str, Any]] = []
    for seq, rec in enumerate(input_records(call.body_dict())):
        if not isinstance(rec, dict) or not rec.get("name") or not rec.get("displayName") or not rec.get("dataType"):
            results.append({"seq": seq, "status": "skipped",
                            "reasons": [reason("1003", "name, displayName and dataType are required")]})
            continue
        try:
            f = add_member_field(call.inst.member_fields, str(rec["name"]), str(rec["displayName"]), str(rec["dataType"]),
                                 description=str(rec.get("description") or ""), api_created=True)
        except ValueError as e:
            results.append({"seq": seq, "status": "skipped", "reasons": [reason("1003", str(e))]})
            continue
        results.append({"seq": seq, "name": f.name, "status": "created"})
    return {"result": results}


def _lead_id(rec: Any) -> int | None:
    raw = rec.get("leadId") if isinstance(rec, dict) else None
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def sync_member_data(call: Call) -> dict[str, Any]:
    """POST /rest/v1/programs/{programId}/members.json (§13.4): fields of existing members only."""
    inst = call.inst
    program_id = call.int_param("programId")
    if program_id not in inst.programs:
        raise MarketoError("1013", f"Program '{program_id}' not found")
    records = input_records(call.body_dict(), inst.limits.batch_size)
    known = all_member_fields(inst)
    if inst.behaviour.unknown_member_field_level == "response":
        for rec in records:
            for name in (rec if isinstance(rec, dict) else {}):
                if name != "leadId" and name not in known:
                    raise MarketoError("1006", f"Field '{name}' not found")
    return {"result": [_member_record(inst, program_id, seq, rec, known, call.now) for seq, rec in enumerate(records)]}


def _member_record(inst: Instance, program_id: int, seq: int, rec: Any, known: dict[str, MemberField],
                   now: float) -> dict[str, Any]:
    def skipped(code: str, message: str) -> dict[str, Any]:
        return {"seq": seq, "status": "skipped", "reasons": [reason(code, message)]}

    lead_id = _lead_id(rec)
    if lead_id is None:
        return skipped("1003", "Invalid data: leadId is required")
    member = inst.members.get((program_id, lead_id))
    if member is None:
        return skipped("1013", "Membership not found")
    values: dict[str, Any] = {}
    for name, value in rec.items():
        if name == "leadId":
            continue
        f = known.get(name)
        if f is None:
            return skipped("1006", f"Field '{name}' not found")
        if not f.updateable:
            return skipped(inst.behaviour.readonly_member_field_code, f"Field '{name}' is not updateable")
        try:
            values[name] = coerce(value, f.data_type, f.length, inst.behaviour.over_length)
        except InvalidValue as e:
            return skipped("1001", str(e))
    _apply(inst, member, values, now)
    return {"seq": seq, "status": "updated", "leadId": lead_id}


def _apply(inst: Instance, member: Member, values: dict[str, Any], now: float) -> None:
    """Store the values and log one "Change Program Member Data" activity per field changed (§13.4)."""
    for name, value in values.items():
        old = member.data.get(name)
        member.data[name] = value
        act_id = inst.next_id("activity")
        program = inst.programs[member.program_id]
        inst.activities.append(Activity(
            id=act_id, guid=str(act_id), lead_id=member.lead_id, type_id=CHANGE_PROGRAM_MEMBER_DATA_TYPE_ID,
            date=now, primary_value=program.name,
            attributes=[{"name": "Attribute Name", "value": name}, {"name": "New Value", "value": value},
                        {"name": "Old Value", "value": old}, {"name": "Program Id", "value": program.id},
                        {"name": "Changed At", "value": iso(now)}],
            created=now))
    member.updated = now
