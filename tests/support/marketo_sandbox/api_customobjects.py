"""Custom objects: type metadata, sync, query, delete (docs/reference/marketo-api.md §8)."""

from __future__ import annotations

import re
from typing import Any

from .call import Call, decode_page, encode_page, input_records, int_arg, split_values
from .envelope import MarketoError, iso, reason
from .fields import DATA_TYPES, InvalidValue, coerce
from .instance import Instance
from .model import COField, CORecord, COType, COVersion

ACTIONS = ("createOrUpdate", "createOnly", "updateOnly")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # alphanumerics and '_' (§8.3)
MAX_TYPES = 10
MAX_FIELDS = 50
MAX_DEDUPE = 3
SYSTEM_FIELDS = ("marketoGUID", "createdAt", "updatedAt")


# ---- JSON shapes -----------------------------------------------------------------------------


def _field_json(f: COField) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "displayName": f.display_name, "dataType": f.data_type}
    if f.description:
        out["description"] = f.description
    if f.length is not None:
        out["length"] = f.length
    elif f.data_type in ("string", "email", "phone", "url"):
        out["length"] = 255
    out["updateable"] = f.updateable and not f.is_dedupe
    out["crmManaged"] = False
    return out


def describe_json(co: COType, v: COVersion, with_state: bool = False) -> dict[str, Any]:
    dedupe = v.dedupe_fields
    links = [f for f in v.fields if f.related_to]
    searchable = [dedupe] if dedupe else []
    searchable += [["marketoGUID"]] + [[f.name] for f in links if [f.name] != dedupe]
    out: dict[str, Any] = {
        "name": co.api_name,
        "displayName": v.display_name,
        "pluralName": v.plural_name,
        "description": v.description,
        "showInLeadDetail": v.show_in_lead_detail,
        "createdAt": iso(co.created),
        "updatedAt": iso(co.updated),
        "idField": "marketoGUID",
        "dedupeFields": dedupe,
        "searchableFields": searchable,
        # Emit relatedTo (not the describe example's "object"), §8.1/§11.
        "relationships": [{"field": f.name, "type": "child",
                           "relatedTo": {"name": f.related_to[0], "field": f.related_to[1]}}
                          for f in links if f.related_to],
        "fields": [
            {"name": "marketoGUID", "displayName": "Marketo GUID", "dataType": "string", "length": 36,
             "updateable": False, "crmManaged": False},
            {"name": "createdAt", "displayName": "Created At", "dataType": "datetime", "updateable": False,
             "crmManaged": False},
            {"name": "updatedAt", "displayName": "Updated At", "dataType": "datetime", "updateable": False,
             "crmManaged": False},
            *[_field_json(f) for f in v.fields],
        ],
    }
    if with_state:
        out["state"] = co.state
        out["version"] = "approved" if v is co.approved else "draft"
        out["apiName"] = co.api_name
    return out


def _approved(inst: Instance, api_name: str) -> tuple[COType, COVersion]:
    co = inst.co_types.get(api_name)
    if co is None or co.approved is None:
        raise MarketoError("1013", f"Custom object '{api_name}' not found")
    return co, co.approved


# ---- data endpoints --------------------------------------------------------------------------


def list_objects(call: Call) -> dict[str, Any]:
    """GET /rest/v1/customobjects.json[?names=]"""
    names = set(split_values(call.arg("names")))
    out = []
    for co in sorted(call.inst.co_types.values(), key=lambda c: c.api_name):
        if co.approved and (not names or co.api_name in names):
            d = describe_json(co, co.approved)
            d.pop("fields")
            out.append(d)
    return {"result": out}


def describe_object(call: Call) -> dict[str, Any]:
    """GET /rest/v1/customobjects/{apiName}/describe.json"""
    co, v = _approved(call.inst, call.params["apiName"])
    return {"result": [describe_json(co, v)]}


def _coerce_record(inst: Instance, v: COVersion, rec: dict[str, Any], allow_guid: bool,
                   by_name: dict[str, COField] | None = None) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """The record's values as the object's fields store them, or the reason it is refused. ``by_name``: the
    version's fields by name, made once per call by a caller that coerces many records (a version's fields do
    not change within a call; ``v.field`` walks the list for every value)."""
    find = by_name.get if by_name is not None else v.field
    values: dict[str, Any] = {}
    for key, raw in rec.items():
        if key == "marketoGUID":
            if not allow_guid:
                return None, reason("1003", "Field 'marketoGUID' is not allowed when dedupeBy is 'dedupeFields'")
            continue
        if key in ("createdAt", "updatedAt"):
            continue
        f = find(key)
        if f is None:
            return None, reason("1006", f"Field '{key}' not found")
        try:
            value = coerce(raw, f.data_type, f.length, inst.behaviour.over_length)
        except InvalidValue as e:
            return None, reason("1001", str(e))
        if f.related_to and value is not None and not _link_exists(inst, f, value):
            return None, reason("1004", "Lead not found")
        values[key] = value
    return values, None


def _link_exists(inst: Instance, f: COField, value: Any) -> bool:
    assert f.related_to is not None
    obj, target = f.related_to
    if obj.lower() != "lead":
        return True
    from .api_leads import find_leads

    return bool(find_leads(inst, target, value))


def _key(v: COVersion, values: dict[str, Any]) -> tuple[Any, ...] | None:
    parts = []
    for name in v.dedupe_fields:
        val = values.get(name)
        if val is None:
            return None
        parts.append(str(val).lower() if isinstance(val, str) else val)
    return tuple(parts)


def _index(inst: Instance, co: COType, v: COVersion) -> dict[tuple[Any, ...], str]:
    """Dedupe key → marketoGUID; rebuilt when it no longer matches the store (e.g. after a reset)."""
    store = inst.co_records[co.api_name]
    idx = inst.co_index.get(co.api_name)
    if idx is None or len(idx) != len(store):
        idx = {}
        for r in store.values():
            k = _key(v, r.values)
            if k is not None:
                idx[k] = r.guid
        inst.co_index[co.api_name] = idx
    return idx


def _find_by_key(inst: Instance, co: COType, v: COVersion, key: tuple[Any, ...]) -> CORecord | None:
    guid = _index(inst, co, v).get(key)
    return inst.co_records[co.api_name].get(guid) if guid is not None else None


def _store(inst: Instance, co: COType, v: COVersion, rec: CORecord) -> None:
    idx = _index(inst, co, v)
    inst.co_records[co.api_name][rec.guid] = rec
    k = _key(v, rec.values)
    if k is not None:
        idx[k] = rec.guid


def _update(inst: Instance, co: COType, v: COVersion, rec: CORecord, values: dict[str, Any], now: float) -> None:
    idx = _index(inst, co, v)
    old = _key(v, rec.values)
    rec.values.update(values)
    rec.updated = now
    new = _key(v, rec.values)
    if old != new:
        if old is not None and idx.get(old) == rec.guid:
            del idx[old]
        if new is not None:
            idx[new] = rec.guid


def _unstore(inst: Instance, co: COType, v: COVersion, rec: CORecord) -> None:
    idx = _index(inst, co, v)
    del inst.co_records[co.api_name][rec.guid]
    k = _key(v, rec.values)
    if k is not None and idx.get(k) == rec.guid:
        del idx[k]


def sync_objects(call: Call) -> dict[str, Any]:
    """POST /rest/v1/customobjects/{apiName}.json (§8.2)."""
    inst = call.inst
    co, v = _approved(inst, call.params["apiName"])
    body = call.body_dict()
    records = input_records(body, inst.limits.batch_size)
    action, dedupe_by = _sync_options(body)
    seen: set[Any] = set()
    by_name: dict[str, COField] = {}
    for f in v.fields:
        by_name.setdefault(f.name, f)  # the first of a name, as COVersion.field finds it
    return {"result": [_sync_one(call, co, v, rec, seq, action, dedupe_by, seen, by_name)
                       for seq, rec in enumerate(records)]}


def _sync_options(body: dict[str, Any]) -> tuple[str, str]:
    """(action, dedupeBy) of a sync request, validated."""
    action = body.get("action") or "createOrUpdate"
    if action not in ACTIONS:
        raise MarketoError("1003", f"Invalid action '{action}'")
    dedupe_by = body.get("dedupeBy") or "dedupeFields"
    if dedupe_by not in ("dedupeFields", "idField"):
        raise MarketoError("1003", f"Invalid dedupeBy '{dedupe_by}'")
    if dedupe_by == "idField" and action != "updateOnly":
        # idField is valid only with updateOnly (§8.2; [CO] wins over [LDB], see §11)
        raise MarketoError("1003", "Invalid data: dedupeBy 'idField' is only allowed with action 'updateOnly'")
    return action, dedupe_by


def _skipped(seq: int, code: str, message: str) -> dict[str, Any]:
    return {"seq": seq, "status": "skipped", "reasons": [reason(code, message)]}


def _sync_one(call: Call, co: COType, v: COVersion, rec: Any, seq: int, action: str, dedupe_by: str,
              seen: set[Any], by_name: dict[str, COField]) -> dict[str, Any]:
    """One input record of a sync: its result entry (created, updated or skipped with the reason)."""
    inst = call.inst
    if not isinstance(rec, dict):
        return _skipped(seq, "1003", "Invalid data")
    values, why = _coerce_record(inst, v, rec, allow_guid=(dedupe_by == "idField"), by_name=by_name)
    if why is not None or values is None:
        return {"seq": seq, "status": "skipped", "reasons": [why or reason("1003", "Invalid data")]}
    existing: CORecord | None
    if dedupe_by == "idField":
        guid = rec.get("marketoGUID")
        if not guid:
            return _skipped(seq, "1003", "Value for required field 'marketoGUID' not found")
        key: Any = ("guid", str(guid))
        existing = inst.co_records[co.api_name].get(str(guid))
    else:
        key = _key(v, values)
        if key is None:
            missing = [n for n in v.dedupe_fields if values.get(n) is None]
            return _skipped(seq, "1003", f"Value for required field '{missing[0]}' not found")
        existing = _find_by_key(inst, co, v, key)
    if key in seen:
        return _skipped(seq, "1036", "Duplicate object found in input")
    seen.add(key)
    if existing is None:
        if action == "updateOnly":
            return _skipped(seq, "1013", "Object not found")
        rec_obj = CORecord(guid=inst.ids.guid(), values=values, created=call.now, updated=call.now)
        _store(inst, co, v, rec_obj)
        return {"seq": seq, "status": "created", "marketoGUID": rec_obj.guid}
    if action == "createOnly":
        return _skipped(seq, "1017", "Object already exists")
    _update(inst, co, v, existing, values, call.now)
    return {"seq": seq, "status": "updated", "marketoGUID": existing.guid}


def upsert_object(inst: Instance, co: COType, v: COVersion, rec: dict[str, Any], now: float) -> str | None:
    """Bulk import helper: createOrUpdate by dedupe fields; → failure reason or None."""
    values, why = _coerce_record(inst, v, rec, allow_guid=False)
    if why is not None or values is None:
        return why["message"] if why else "Invalid data"
    k = _key(v, values)
    if k is None:
        return "missing.dedupe.fields"
    existing = _find_by_key(inst, co, v, k)
    if existing is None:
        _store(inst, co, v, CORecord(guid=inst.ids.guid(), values=values, created=now, updated=now))
    else:
        _update(inst, co, v, existing, values, now)
    return None


def _record_json(v: COVersion, r: CORecord, fields: list[str], seq: int) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": seq, "marketoGUID": r.guid}
    for name in v.dedupe_fields:
        out[name] = r.values.get(name)
    out["createdAt"] = iso(r.created)
    out["updatedAt"] = iso(r.updated)
    for f in fields:
        if f not in out:
            out[f] = r.values.get(f)
    return out


def query_objects(call: Call) -> dict[str, Any]:
    """GET /rest/v1/customobjects/{apiName}.json, or POST ?_method=GET with a JSON body (§8.2 Query)."""
    inst = call.inst
    co, v = _approved(inst, call.params["apiName"])
    filter_type = call.arg("filterType")
    if not filter_type:
        raise MarketoError("1003", "filterType not specified")
    fields = _query_fields(call, v)
    records = list(inst.co_records[co.api_name].values())
    inputs = call.json.get("input") if isinstance(call.json, dict) else None
    inputs = inputs if isinstance(inputs, list) else None
    if filter_type in ("idField", "marketoGUID"):
        matches = _by_guid(call, records, inputs)
    elif filter_type == "dedupeFields":
        matches = _by_dedupe_fields(call, v, records, inputs)
    else:
        matches = _by_field(call, v, filter_type, records, inputs)
    matches.sort(key=lambda r: r.created)
    batch = int_arg(call.arg("batchSize"), "batchSize", inst.limits.batch_size)
    offset = 0
    token = call.arg("nextPageToken")
    if token:
        offset = int(decode_page(token).get("o", 0))
    page = matches[offset: offset + batch]
    out: dict[str, Any] = {"result": [_record_json(v, r, fields, offset + i) for i, r in enumerate(page)]}
    if offset + batch < len(matches):
        out["nextPageToken"] = encode_page({"o": offset + batch})
        out["moreResult"] = True
    return out


def _query_fields(call: Call, v: COVersion) -> list[str]:
    """The fields a query asks for (a JSON list or the ``fields`` argument), each known (else 1006)."""
    fields: list[str]
    if isinstance(call.json, dict) and isinstance(call.json.get("fields"), list):
        fields = [str(x) for x in call.json["fields"]]
    else:
        fields = split_values(call.arg("fields"))
    for name in fields:
        if name not in SYSTEM_FIELDS and v.field(name) is None:
            raise MarketoError("1006", f"Field '{name}' not found")
    return fields


def _by_guid(call: Call, records: list[CORecord], inputs: list[Any] | None) -> list[CORecord]:
    wanted = split_values(call.arg("filterValues"))
    if inputs is not None:
        wanted += [str(i.get("marketoGUID")) for i in inputs if isinstance(i, dict)]
    return [r for r in records if r.guid in wanted]


def _by_dedupe_fields(call: Call, v: COVersion, records: list[CORecord], inputs: list[Any] | None) -> list[CORecord]:
    """Records whose dedupe key is one asked for: an input list (any key), or ``filterValues`` (one field)."""
    wanted: list[dict[str, Any]]
    if inputs is not None:
        wanted = [{k: i[k] for k in i if v.field(k)} for i in inputs if isinstance(i, dict)]
    elif len(v.dedupe_fields) == 1:
        wanted = [{v.dedupe_fields[0]: raw} for raw in split_values(call.arg("filterValues"))]
    else:
        raise MarketoError("1003", "Invalid data: a compound key needs POST ?_method=GET with an input list")
    keys: list[tuple[Any, ...]] = []
    for values in wanted:
        coerced, _ = _coerce_record(call.inst, v, values, allow_guid=False)
        k = _key(v, coerced or {})
        if k is not None:
            keys.append(k)
    return [r for r in records if _key(v, r.values) in keys]


def _by_field(call: Call, v: COVersion, filter_type: str, records: list[CORecord],
              inputs: list[Any] | None) -> list[CORecord]:
    """Records whose searchable field (a dedupe field or a link) has one of the values asked for."""
    ff = v.field(filter_type)
    searchable = set(v.dedupe_fields) | {x.name for x in v.fields if x.related_to}
    if ff is None or filter_type not in searchable:
        raise MarketoError("1003", f"Invalid filterType '{filter_type}'")
    raw_values = split_values(call.arg("filterValues"))
    if inputs is not None:
        raw_values += [str(i.get(filter_type)) for i in inputs if isinstance(i, dict)]
    wanted = set()
    for raw in raw_values:
        try:
            val = coerce(raw, ff.data_type)
        except InvalidValue:
            continue
        wanted.add(_normalised(val))
    return [r for r in records if _normalised(r.values.get(filter_type)) in wanted]


def _normalised(value: Any) -> Any:
    return str(value).lower() if isinstance(value, str) else value


def delete_objects(call: Call) -> dict[str, Any]:
    """POST /rest/v1/customobjects/{apiName}/delete.json (§8.2)."""
    inst = call.inst
    co, v = _approved(inst, call.params["apiName"])
    body = call.body_dict()
    records = input_records(body)
    delete_by = body.get("deleteBy") or "dedupeFields"
    store = inst.co_records[co.api_name]
    results: list[dict[str, Any]] = []
    for seq, rec in enumerate(records):
        target: CORecord | None = None
        if isinstance(rec, dict):
            if delete_by == "idField":
                target = store.get(str(rec.get("marketoGUID")))
            else:
                vals, _ = _coerce_record(inst, v, {k: rec[k] for k in rec if v.field(k)}, allow_guid=False)
                k = _key(v, vals or {})
                target = _find_by_key(inst, co, v, k) if k is not None else None
        if target is None:
            results.append({"seq": seq, "status": "skipped", "reasons": [reason("1013", "Object not found")]})
            continue
        _unstore(inst, co, v, target)
        results.append({"seq": seq, "status": "deleted", "marketoGUID": target.guid})
    return {"result": results}


# ---- schema (type metadata) endpoints ----------------------------------------------------------


def schema_list(call: Call) -> dict[str, Any]:
    """GET /rest/v1/customobjects/schema.json"""
    out = []
    for co in sorted(call.inst.co_types.values(), key=lambda c: c.api_name):
        v = co.approved or co.draft
        assert v is not None
        d = describe_json(co, v, with_state=True)
        d.pop("fields")
        out.append(d)
    return {"result": out}


def schema_sync(call: Call) -> dict[str, Any]:
    """POST /rest/v1/customobjects/schema.json — create or update a type (draft) (§8.3)."""
    inst = call.inst
    body = call.body_dict()
    action = body.get("action") or "createOrUpdate"
    if action not in ACTIONS:
        raise MarketoError("1003", f"Invalid action '{action}'")
    api_name = body.get("apiName")
    if not isinstance(api_name, str) or not NAME_RE.match(api_name):
        raise MarketoError("1003", f"Invalid apiName '{api_name}'")
    display = body.get("displayName")
    co = inst.co_types.get(api_name)
    if co is None:
        if action == "updateOnly":
            return {"result": [{"seq": 0, "status": "skipped", "reasons": [reason("1013", "Object not found")]}]}
        if not isinstance(display, str) or not display:
            raise MarketoError("701", "displayName cannot be blank")
        if len(inst.co_types) >= MAX_TYPES:
            raise MarketoError("1003", f"Invalid data: at most {MAX_TYPES} custom object types")
        version = COVersion(display_name=display, plural_name=str(body.get("pluralName") or display + "s"),
                            description=body.get("description"),
                            show_in_lead_detail=bool(body.get("showInLeadDetail", False)), fields=[])
        co = COType(api_name=api_name, created=call.now, updated=call.now, draft=version)
        inst.co_types[api_name] = co
        inst.co_records[api_name] = {}
        return {"result": [{"seq": 0, "status": "created", "apiName": api_name}]}
    if action == "createOnly":
        return {"result": [{"seq": 0, "status": "skipped", "reasons": [reason("1017", "Object already exists")]}]}
    draft = _draft(co)
    if display and co.approved is None:
        draft.display_name = str(display)
    if "pluralName" in body:
        draft.plural_name = str(body["pluralName"])
    if "description" in body:
        draft.description = body["description"]
    if "showInLeadDetail" in body:
        draft.show_in_lead_detail = bool(body["showInLeadDetail"])
    co.updated = call.now
    return {"result": [{"seq": 0, "status": "updated", "apiName": api_name}]}


def _draft(co: COType) -> COVersion:
    if co.draft is None:
        assert co.approved is not None
        co.draft = co.approved.copy()
    return co.draft


def _schema_type(inst: Instance, api_name: str) -> COType:
    co = inst.co_types.get(api_name)
    if co is None:
        raise MarketoError("1013", f"Custom object '{api_name}' not found")
    return co


def schema_describe(call: Call) -> dict[str, Any]:
    """GET /rest/v1/customobjects/schema/{apiName}/describe.json[?state=draft|approved|approvedWithDraft]"""
    co = _schema_type(call.inst, call.params["apiName"])
    state = call.arg("state")
    v = co.draft if state == "draft" else co.approved if state == "approved" else (co.draft or co.approved)
    if v is None:
        raise MarketoError("1013", f"Custom object '{co.api_name}' has no {state} version")
    return {"result": [describe_json(co, v, with_state=True)]}


def schema_add_fields(call: Call) -> dict[str, Any]:
    """POST /rest/v1/customobjects/schema/{apiName}/addField.json (§8.3)."""
    co = _schema_type(call.inst, call.params["apiName"])
    records = input_records(call.body_dict())
    draft = _draft(co)
    results: list[dict[str, Any]] = []
    for seq, rec in enumerate(records):
        why = _add_field(co, draft, rec)
        if why:
            results.append({"seq": seq, "status": "skipped", "reasons": [reason("1003", why)]})
        else:
            results.append({"seq": seq, "status": "created", "name": rec["name"]})
    co.updated = call.now
    return {"result": results}


def _add_field(co: COType, draft: COVersion, rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return "Invalid data"
    name = rec.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name) or name in SYSTEM_FIELDS:
        return f"Invalid field name '{name}'"
    if draft.field(name):
        return f"Field '{name}' already exists"
    data_type = rec.get("dataType")
    if data_type not in DATA_TYPES:
        return f"Invalid dataType '{data_type}'"
    if len(draft.fields) >= MAX_FIELDS:
        return "Max field limit reached"
    is_dedupe = bool(rec.get("isDedupeField", False))
    related = rec.get("relatedTo")
    if co.approved is not None and (is_dedupe or data_type == "link"):
        return "Cannot add dedupe or link fields after the object is approved"
    if is_dedupe and len(draft.dedupe_fields) >= MAX_DEDUPE:
        return f"At most {MAX_DEDUPE} dedupe fields"
    related_to: tuple[str, str] | None = None
    if data_type == "link":
        if not isinstance(related, dict) or not related.get("name") or not related.get("field"):
            return "A link field needs relatedTo {name, field}"
        if any(f.related_to for f in draft.fields):
            return "A custom object can have only one link field"
        related_to = (str(related["name"]).capitalize() if str(related["name"]).lower() == "lead"
                      else str(related["name"]), str(related["field"]))
    draft.fields.append(COField(name=name, display_name=str(rec.get("displayName") or name), data_type=data_type,
                                description=rec.get("description"), is_dedupe=is_dedupe, related_to=related_to,
                                updateable=not is_dedupe))
    return None


def schema_delete_fields(call: Call) -> dict[str, Any]:
    co = _schema_type(call.inst, call.params["apiName"])
    records = input_records(call.body_dict())
    draft = _draft(co)
    results = []
    for seq, rec in enumerate(records):
        name = rec.get("name") if isinstance(rec, dict) else None
        f = draft.field(str(name))
        if f is None:
            results.append({"seq": seq, "status": "skipped", "reasons": [reason("1013", "Object not found")]})
            continue
        draft.fields.remove(f)
        results.append({"seq": seq, "status": "deleted", "name": name})
    return {"result": results}


def schema_approve(call: Call) -> dict[str, Any]:
    """POST /rest/v1/customobjects/schema/{apiName}/approve.json"""
    co = _schema_type(call.inst, call.params["apiName"])
    if co.draft is None:
        raise MarketoError("1003", "Invalid data: nothing to approve")
    if not co.draft.dedupe_fields:
        raise MarketoError("1003", "Invalid data: a custom object needs at least one dedupe field")
    co.approved = co.draft
    co.draft = None
    co.updated = call.now
    return {"result": [describe_json(co, co.approved, with_state=True)]}


def schema_discard(call: Call) -> dict[str, Any]:
    co = _schema_type(call.inst, call.params["apiName"])
    if co.approved is None:
        raise MarketoError("1048", "Custom Object Discard Draft Failed")
    co.draft = None
    return {"result": [{"seq": 0, "status": "discarded", "apiName": co.api_name}]}


def schema_delete(call: Call) -> dict[str, Any]:
    co = _schema_type(call.inst, call.params["apiName"])
    if call.inst.co_records.get(co.api_name):
        raise MarketoError("1022", "Object in use")
    del call.inst.co_types[co.api_name]
    call.inst.co_records.pop(co.api_name, None)
    return {"result": [{"seq": 0, "status": "deleted", "apiName": co.api_name}]}


def field_data_types(call: Call) -> dict[str, Any]:
    return {"result": [{"dataType": t} for t in ("string", "boolean", "integer", "float", "link", "email",
                                                  "currency", "date", "datetime", "phone", "text")]}


def linkable_objects(call: Call) -> dict[str, Any]:
    return {"result": [{"name": "lead", "displayName": "Person", "pluralName": "People",
                        "fields": [{"name": f.name, "displayName": f.display_name, "dataType": f.data_type}
                                   for f in call.inst.lead_fields.values() if f.searchable]}]}
