"""Lead endpoints (docs/reference/marketo-api.md §5)."""

from __future__ import annotations

from typing import Any

from .call import Call, decode_page, encode_page, input_records, int_arg, split_values
from .envelope import MarketoError, iso, reason
from .fields import DATA_TYPES, DEFAULT_LEAD_FIELDS, InvalidValue, coerce, custom_lead_field
from .instance import Instance
from .model import Lead

ACTIONS = ("createOrUpdate", "createOnly", "updateOnly", "createDuplicate")
MAX_FILTER_MATCHES = 1000  # §5.2 "1003, Too many results match the filter"


def _norm(inst: Instance, field: str, value: Any) -> Any:
    if value is None:
        return None
    if field == "id":
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    text = str(value)
    f = inst.lead_fields.get(field)
    if f is not None and f.data_type == "email":
        if inst.behaviour.email_case_insensitive:
            return text.strip().lower()
    return text


def find_leads(inst: Instance, field: str, value: Any) -> list[Lead]:
    want = _norm(inst, field, value)
    if want is None:
        return []
    if field == "id":
        lead = inst.leads.get(want)
        return [lead] if lead else []
    if field == "email":
        return inst.leads_by_email(value)
    return [ld for ld in inst.leads.values() if _norm(inst, field, ld.values.get(field)) == want]


def lead_record(lead: Lead, fields: list[str]) -> dict[str, Any]:
    """A lead as Get Leads returns it: ``id`` plus the asked fields that hold a value (§5.2)."""
    out: dict[str, Any] = {"id": lead.id}
    for f in fields:
        if f == "id":
            continue
        if f == "createdAt":
            out[f] = iso(lead.created)
        elif f == "updatedAt":
            out[f] = iso(lead.updated)
        elif lead.values.get(f) is not None:
            out[f] = lead.values[f]
    return out


def _check_lookup_field(inst: Instance, name: str) -> None:
    f = inst.lead_fields.get(name)
    if f is None:
        raise MarketoError("1006", f"Lookup field '{name}' not found")
    if not f.searchable:
        raise MarketoError("1011", f"Field '{name}' not supported")


def _validated_values(inst: Instance, rec: dict[str, Any]
                      ) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    values: dict[str, Any] = {}
    for key, raw in rec.items():
        f = inst.lead_fields.get(key)
        if f is None:
            return None, reason("1006", f"Field '{key}' not found")
        if f.read_only:
            continue  # system-managed; id is handled by the caller
        try:
            values[key] = coerce(raw, f.data_type, f.length, inst.behaviour.over_length)
        except InvalidValue as e:
            return None, reason("1001", str(e))
    return values, None


def sync_leads(call: Call) -> dict[str, Any]:
    """POST /rest/v1/leads.json (§5.1)."""
    inst = call.inst
    body = call.body_dict()
    records = input_records(body, inst.limits.batch_size)
    action = body.get("action") or "createOrUpdate"
    if action not in ACTIONS:
        raise MarketoError("1003", f"Invalid action '{action}'")
    lookup = body.get("lookupField") or "email"
    if not isinstance(lookup, str):
        raise MarketoError("1003", "Invalid lookupField")
    _check_lookup_field(inst, lookup)
    if lookup == "id" and action != "updateOnly":
        raise MarketoError("1003", "Invalid data: lookupField 'id' is only allowed with action 'updateOnly'")
    results: list[dict[str, Any]] = []
    for rec in records:
        results.append(_sync_one(inst, rec, action, lookup, call.now, call.missing_on_arrival))
    return {"result": results}


def missing_on_arrival(call: Call) -> frozenset[str]:
    """The lookup values of a Sync Leads call that match no lead now (a call still in process keeps them, §5.1)."""
    try:
        body = call.body_dict()
        records = input_records(body, call.inst.limits.batch_size)
    except MarketoError:
        return frozenset()
    lookup = body.get("lookupField") or "email"
    if not isinstance(lookup, str):
        return frozenset()
    return frozenset(_norm(call.inst, lookup, r.get(lookup)) for r in records
                     if isinstance(r, dict) and r.get(lookup) not in (None, "") and not find_leads(call.inst, lookup,
                                                                                                 r.get(lookup)))


def _sync_one(inst: Instance, rec: Any, action: str, lookup: str, now: float,
              missing: frozenset[str] | None = None) -> dict[str, Any]:
    if not isinstance(rec, dict):
        return {"status": "skipped", "reasons": [reason("1003", "Invalid data")]}
    if "id" in rec and action in ("createOnly", "createDuplicate"):
        return {"status": "skipped", "reasons": [reason("1003", "Invalid data")]}
    if inst.behaviour.company_update_refused and "company" in rec:  # §14 (a switch: UNCONFIRMED)
        return {"status": "skipped", "reasons": [reason("1021", "Company update not allowed")]}
    values, why = _validated_values(inst, rec)
    if why is not None or values is None:
        return {"status": "skipped", "reasons": [why or reason("1003", "Invalid data")]}
    if action == "createDuplicate":
        return _create(inst, values, now)
    key = rec.get(lookup)
    if key is None or key == "":
        if action == "createOnly":
            return _create(inst, values, now)
        return {"status": "skipped", "reasons": [reason("1003", f"Value for lookup field '{lookup}' not found")]}
    matches = find_leads(inst, lookup, key)
    if missing is not None and _norm(inst, lookup, key) in missing:
        matches = []  # looked up when the call arrived, before a same-key call created the lead (§5.1)
    if action == "createOnly":
        if matches:
            return {"status": "skipped", "reasons": [reason("1005", "Lead already exists")]}
        return _create(inst, values, now)
    if len(matches) > 1:
        return {"status": "skipped", "reasons": [reason("1007", "Multiple leads match the lookup criteria")]}
    if not matches:
        if action == "updateOnly":
            return {"status": "skipped", "reasons": [reason("1004", "Lead not found")]}
        return _create(inst, values, now)
    lead = matches[0]
    inst.update_lead(lead, values, now)
    return {"id": lead.id, "status": "updated"}


def _create(inst: Instance, values: dict[str, Any], now: float) -> dict[str, Any]:
    lead = inst.add_lead(values, now)
    return {"id": lead.id, "status": "created"}


def upsert_lead_by(inst: Instance, lookup: str, values: dict[str, Any], now: float) -> tuple[Lead | None, str]:
    """Used by bulk import: createOrUpdate one lead; → (lead, "created"|"updated") or (None, reason)."""
    key = values.get(lookup)
    if key is None or key == "":
        return None, f"Value for lookup field '{lookup}' not found"
    matches = find_leads(inst, lookup, key)
    if len(matches) > 1:
        return None, "Multiple leads match the lookup criteria"
    if matches:
        inst.update_lead(matches[0], {k: v for k, v in values.items() if k != "id"}, now)
        return matches[0], "updated"
    if lookup == "id":
        return None, "Lead not found"
    return inst.add_lead({k: v for k, v in values.items() if k != "id"}, now), "created"


def _fields_arg(inst: Instance, raw: str | None) -> list[str]:
    fields = split_values(raw) or list(DEFAULT_LEAD_FIELDS)
    for f in fields:
        if f not in inst.lead_fields:
            raise MarketoError("1006", f"Field '{f}' not found")
    return fields


def get_leads(call: Call) -> dict[str, Any]:
    """GET /rest/v1/leads.json (also POST with _method=GET) (§5.2)."""
    inst = call.inst
    filter_type = call.arg("filterType")
    if not filter_type:
        raise MarketoError("1003", "filterType not specified")
    f = inst.lead_fields.get(filter_type)
    if f is None:
        raise MarketoError("1006", f"Field '{filter_type}' not found")
    if not f.searchable:
        raise MarketoError("1011", f"Field '{filter_type}' not supported")
    values = split_values(call.arg("filterValues"))
    if not values:
        raise MarketoError("1003", "filterValues not specified")
    limit = inst.limits.batch_size
    if len(values) > limit:
        raise MarketoError("1003", f"Invalid data: more than {limit} filterValues")
    fields = _fields_arg(inst, call.arg("fields"))
    batch = int_arg(call.arg("batchSize"), "batchSize", limit)
    if batch < 1 or batch > limit:
        raise MarketoError("1003", f"Invalid batchSize '{batch}'")
    seen: dict[int, Lead] = {}
    for v in values:
        for lead in find_leads(inst, filter_type, v):
            seen[lead.id] = lead
    matches = sorted(seen.values(), key=lambda ld: ld.id)
    if len(matches) > MAX_FILTER_MATCHES:
        raise MarketoError("1003", "Too many results match the filter")
    offset = 0
    token = call.arg("nextPageToken")
    if token:
        offset = int(decode_page(token).get("o", 0))
    page = matches[offset: offset + batch]
    out: dict[str, Any] = {"result": [lead_record(ld, fields) for ld in page]}
    if offset + batch < len(matches):
        out["nextPageToken"] = encode_page({"o": offset + batch})
        out["moreResult"] = True
    return out


def get_lead_by_id(call: Call) -> dict[str, Any]:
    """GET /rest/v1/lead/{id}.json (§5.2)."""
    lead_id = call.int_param("id")
    fields = _fields_arg(call.inst, call.arg("fields"))
    lead = call.inst.leads.get(lead_id)
    return {"result": [lead_record(lead, fields)] if lead else []}


def delete_leads(call: Call) -> dict[str, Any]:
    """POST /rest/v1/leads/delete.json (§5.3 "Other lead endpoints")."""
    body = call.body_dict()
    records = input_records(body)
    results: list[dict[str, Any]] = []
    for rec in records:
        lead_id = rec.get("id") if isinstance(rec, dict) else None
        try:
            lid = int(lead_id) if lead_id is not None else None
        except (TypeError, ValueError):
            lid = None
        if lid is not None and lid in call.inst.leads:
            call.inst.remove_lead(lid)
            results.append({"id": lid, "status": "deleted"})
        else:
            results.append({"id": lead_id, "status": "skipped", "reasons": [reason("1004", "Lead not found")]})
    return {"result": results}


def describe(call: Call) -> dict[str, Any]:
    """GET /rest/v1/leads/describe.json (§5.3)."""
    result = []
    for f in call.inst.lead_fields.values():
        item: dict[str, Any] = {"id": f.id, "displayName": f.display_name, "dataType": f.data_type}
        if f.length is not None:
            item["length"] = f.length
        item["rest"] = {"name": f.name, "readOnly": f.read_only}
        item["soap"] = {"name": f.name[0].upper() + f.name[1:], "readOnly": f.read_only}
        result.append(item)
    return {"result": result}


def describe2(call: Call) -> dict[str, Any]:
    """GET /rest/v1/leads/describe2.json (§5.3)."""
    fields = []
    for f in call.inst.lead_fields.values():
        item: dict[str, Any] = {"name": f.name, "displayName": f.display_name, "dataType": f.data_type}
        if f.length is not None:
            item["length"] = f.length
        item["updateable"] = not f.read_only
        item["crmManaged"] = False
        fields.append(item)
    searchable = [[f.name] for f in call.inst.lead_fields.values() if f.searchable]
    return {"result": [{"name": "API Lead", "searchableFields": searchable, "fields": fields}]}


# ---- lead field schema (§5.3 "Field schema endpoints") -------------------------------------------


def _schema_field_json(f: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"displayName": f.display_name, "name": f.name, "description": None,
                           "dataType": f.data_type}
    if f.length is not None:
        out["length"] = f.length
    out.update({"isHidden": False, "isHtmlEncodingInEmail": True, "isSensitive": False, "isCustom": f.custom})
    return out


def schema_fields(call: Call) -> dict[str, Any]:
    """GET /rest/v1/leads/schema/fields.json"""
    return {"result": [_schema_field_json(f) for f in call.inst.lead_fields.values()]}


def schema_field(call: Call) -> dict[str, Any]:
    """GET /rest/v1/leads/schema/fields/{fieldApiName}.json"""
    f = call.inst.lead_fields.get(call.params["fieldApiName"])
    if f is None:
        raise MarketoError("1006", f"Field '{call.params['fieldApiName']}' not found")
    return {"result": [_schema_field_json(f)]}


CUSTOM_LEAD_TYPES = frozenset(DATA_TYPES) - {"link", "reference"}


def create_schema_fields(call: Call) -> dict[str, Any]:
    """POST /rest/v1/leads/schema/fields.json — up to 100 custom fields per call."""
    inst = call.inst
    records = input_records(call.body_dict())
    if len(records) > 100:
        raise MarketoError("1003", "Invalid data: at most 100 fields per call")
    results: list[dict[str, Any]] = []
    for rec in records:
        name = rec.get("name") if isinstance(rec, dict) else None
        data_type = rec.get("dataType") if isinstance(rec, dict) else None
        if not isinstance(name, str) or not name or not name[0].isalpha() or not name.replace("_", "").isalnum():
            results.append({"name": name, "status": "skipped",
                            "reasons": [reason("1003", f"Invalid field name '{name}'")]})
        elif name in inst.lead_fields:
            results.append({"name": name, "status": "skipped",
                            "reasons": [reason("1017", "Object already exists")]})
        elif data_type not in CUSTOM_LEAD_TYPES:
            results.append({"name": name, "status": "skipped",
                            "reasons": [reason("1003", f"Invalid dataType '{data_type}'")]})
        else:
            assert isinstance(rec, dict)
            length = rec.get("length")
            inst.lead_fields[name] = custom_lead_field(
                name, rec.get("displayName"), str(data_type), int(length) if length else None,
                1000 + len(inst.lead_fields))
            results.append({"name": name, "status": "created"})
    return {"result": results}
