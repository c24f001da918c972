"""Custom activity types, Add Custom Activities and Get Lead Activities (docs/reference/marketo-api.md §7)."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from .call import Call, decode_page, encode_page, input_records, int_arg, split_values
from .envelope import MarketoError, iso, reason
from .fields import DATA_TYPES, InvalidValue, coerce, parse_datetime
from .instance import Instance
from .model import Activity, ActivityType, ActivityTypeVersion, Attribute

MAX_TYPES = 10  # §7.1 (1027)
MAX_ATTRIBUTES = 20  # §7.1 (1028)
MAX_ATTRIBUTE_BYTES = 65_536  # §7.1 (1049)
API_NAME_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9_]{1,255}$")

STANDARD_TYPES: list[dict[str, Any]] = [
    {"id": 1, "name": "Visit Webpage", "description": "User visits a web page",
     "primaryAttribute": {"name": "Webpage ID", "dataType": "integer"}, "attributes": []},
    {"id": 2, "name": "Fill Out Form", "description": "User fills out and submits a form",
     "primaryAttribute": {"name": "Webform ID", "dataType": "integer"}, "attributes": []},
    {"id": 12, "name": "New Lead", "description": "New person", "attributes": []},
    {"id": 13, "name": "Change Data Value", "description": "Changed attribute value for a person",
     "primaryAttribute": {"name": "Attribute Name", "dataType": "integer"}, "attributes": []},
    {"id": 104, "name": "Change Status in Progression", "description": "Change a status in a program progression",
     "primaryAttribute": {"name": "Program ID", "dataType": "integer"},
     "attributes": [{"name": "New Status", "dataType": "string"}, {"name": "Old Status", "dataType": "string"},
                    {"name": "Reason", "dataType": "string"}]},
    # §13.4: a Sync Program Member Data success logs one (the id is the sandbox's; api_member_fields.py).
    {"id": 175, "name": "Change Program Member Data", "description": "Change a program member's field value",
     "primaryAttribute": {"name": "Program ID", "dataType": "integer"},
     "attributes": [{"name": "Attribute Name", "dataType": "string"}, {"name": "New Value", "dataType": "string"},
                    {"name": "Old Value", "dataType": "string"}]},
]


def _attr_json(a: Attribute, created: float) -> dict[str, Any]:
    out: dict[str, Any] = {"apiName": a.api_name, "name": a.name, "dataType": a.data_type}
    if a.length is not None:
        out["length"] = a.length
    if a.description is not None:
        out["description"] = a.description
    out["createdAt"] = iso(created)
    out["updatedAt"] = iso(created)
    return out


def type_json(t: ActivityType, draft: bool = False) -> dict[str, Any]:
    v = (t.draft or t.approved) if draft else (t.approved or t.draft)
    assert v is not None
    return {
        "id": t.id,
        "apiName": t.api_name,
        "name": v.name,
        "description": v.description,
        "triggerName": v.trigger_name,
        "filterName": v.filter_name,
        "createdAt": iso(t.created),
        "updatedAt": iso(t.updated),
        "status": t.status,
        "primaryAttribute": _attr_json(v.primary, t.created),
        "attributes": [_attr_json(a, t.created) for a in v.attributes],
    }


def _type(inst: Instance, api_name: str) -> ActivityType:
    t = inst.activity_types.get(api_name)
    if t is None or t.deleted:
        raise MarketoError("1013", f"Activity type '{api_name}' not found")
    return t


def list_types(call: Call) -> dict[str, Any]:
    """GET /rest/v1/activities/external/types.json"""
    types = sorted((t for t in call.inst.activity_types.values() if not t.deleted), key=lambda t: t.id)
    return {"result": [type_json(t) for t in types]}


def describe_type(call: Call) -> dict[str, Any]:
    """GET /rest/v1/activities/external/type/{apiName}/describe.json[?draft=true]"""
    t = _type(call.inst, call.params["apiName"])
    return {"result": [type_json(t, draft=(call.arg("draft") or "").lower() == "true")]}


def all_types(call: Call) -> dict[str, Any]:
    """GET /rest/v1/activities/types.json: standard and approved custom types, not told apart (§7.2)."""
    result = list(STANDARD_TYPES)
    for t in sorted(call.inst.activity_types.values(), key=lambda t: t.id):
        if t.approved and not t.deleted:
            v = t.approved
            result.append({"id": t.id, "name": v.name, "description": v.description,
                           "primaryAttribute": {"name": v.primary.name, "dataType": v.primary.data_type},
                           "attributes": [{"name": a.name, "dataType": a.data_type} for a in v.attributes]})
    return {"result": result}


def _attribute(raw: Any, primary: bool) -> Attribute:
    if not isinstance(raw, dict):
        raise MarketoError("1003", "Invalid data: attribute must be an object")
    api_name = raw.get("apiName")
    name = raw.get("name")
    if not isinstance(api_name, str) or not API_NAME_RE.match(api_name):
        raise MarketoError("1003", f"Invalid apiName '{api_name}'")
    if not isinstance(name, str) or not name:
        raise MarketoError("701", "name cannot be blank")
    data_type = raw.get("dataType", "string")
    if data_type not in DATA_TYPES:
        raise MarketoError("1003", f"Invalid dataType '{data_type}'")
    return Attribute(api_name=api_name, name=name, data_type=data_type, description=raw.get("description"),
                     is_primary=primary)


def create_type(call: Call) -> dict[str, Any]:
    """POST /rest/v1/activities/external/type.json → a draft type (§7.2)."""
    inst = call.inst
    body = call.body_dict()
    for req in ("apiName", "name", "triggerName", "filterName", "primaryAttribute"):
        if not body.get(req):
            raise MarketoError("701", f"{req} cannot be blank")
    api_name = body["apiName"]
    if not isinstance(api_name, str) or not API_NAME_RE.match(api_name):
        raise MarketoError("1003", f"Invalid apiName '{api_name}'")
    live = [t for t in inst.activity_types.values() if not t.deleted]
    if api_name in inst.activity_types and not inst.activity_types[api_name].deleted:
        raise MarketoError("1017", "Object already exists")
    if len(live) >= MAX_TYPES:
        raise MarketoError("1027", "Max Activity Type Limit Reached")
    for t in live:
        v = t.approved or t.draft
        if v and (v.trigger_name == body["triggerName"] or v.filter_name == body["filterName"]):
            raise MarketoError("1003", "Invalid data: triggerName and filterName must be unique")
    primary = _attribute(body["primaryAttribute"], primary=True)
    version = ActivityTypeVersion(name=str(body["name"]), description=body.get("description"),
                                  trigger_name=str(body["triggerName"]), filter_name=str(body["filterName"]),
                                  primary=primary, attributes=[])
    t = ActivityType(id=inst.next_id("activity_type"), api_name=api_name, created=call.now, updated=call.now,
                     draft=version)
    inst.activity_types[api_name] = t
    return {"result": [type_json(t, draft=True)]}


def _draft(t: ActivityType) -> ActivityTypeVersion:
    if t.draft is None:
        assert t.approved is not None
        t.draft = t.approved.copy()
    return t.draft


def create_attributes(call: Call) -> dict[str, Any]:
    """POST /rest/v1/activities/external/type/{apiName}/attributes/create.json"""
    t = _type(call.inst, call.params["apiName"])
    raw = call.body_dict().get("attributes")
    if not isinstance(raw, list) or not raw:
        raise MarketoError("701", "attributes cannot be blank")
    new = [_attribute(a, primary=bool(isinstance(a, dict) and a.get("isPrimary"))) for a in raw]
    draft = _draft(t)
    existing = {a.api_name for a in draft.attributes} | {draft.primary.api_name}
    secondary = [a for a in new if not a.is_primary]
    if len(draft.attributes) + len(secondary) > MAX_ATTRIBUTES:
        raise MarketoError("1028", "Max field limit reached")
    for a in new:
        if a.api_name in existing:
            raise MarketoError("1017", "Object already exists")
        if a.is_primary:
            draft.attributes.append(draft.primary)
            draft.primary.is_primary = False
            draft.primary = a
        else:
            draft.attributes.append(a)
    t.updated = call.now
    return {"result": [type_json(t, draft=True)]}


def delete_attributes(call: Call) -> dict[str, Any]:
    """POST /rest/v1/activities/external/type/{apiName}/attributes/delete.json"""
    t = _type(call.inst, call.params["apiName"])
    raw = call.body_dict().get("attributes")
    if not isinstance(raw, list) or not raw:
        raise MarketoError("701", "attributes cannot be blank")
    names = {a.get("apiName") for a in raw if isinstance(a, dict)}
    draft = _draft(t)
    draft.attributes = [a for a in draft.attributes if a.api_name not in names]
    t.updated = call.now
    return {"result": [type_json(t, draft=True)]}


def approve_type(call: Call) -> dict[str, Any]:
    """POST /rest/v1/activities/external/type/{apiName}/approve.json: draft → live (§7.2)."""
    t = _type(call.inst, call.params["apiName"])
    if t.draft is None:
        raise MarketoError("1003", "Invalid data: activity type has no draft to approve")
    t.approved = t.draft
    t.draft = None
    t.updated = call.now
    return {"result": [type_json(t)]}


def discard_draft(call: Call) -> dict[str, Any]:
    t = _type(call.inst, call.params["apiName"])
    if t.approved is None:
        raise MarketoError("1003", "Invalid data: activity type has no approved version")
    t.draft = None
    t.updated = call.now
    return {"result": [type_json(t)]}


def delete_type(call: Call) -> dict[str, Any]:
    t = _type(call.inst, call.params["apiName"])
    t.deleted = True
    return {"result": [{"id": t.id, "apiName": t.api_name}]}


# ---- Add Custom Activities ---------------------------------------------------------------------


def _attributes_bytes_over(attrs_in: list[Any]) -> bool:
    """Whether the attributes' JSON (the standard encoder's, with its default separators and ASCII escapes) is over
    ``MAX_ATTRIBUTE_BYTES``. That text is at most 6 times orjson's compact UTF-8: DEL, one byte there, is escaped to
    six (``\u007f``); a character of 2-4 UTF-8 bytes to 6 or 12; a separator takes one more byte, a float's exponent
    at most two more characters, NaN and the infinities at most 2.25 times orjson's ``null``. So the exact measure
    is taken only when orjson's is over a sixth of the limit: it was a sixteenth of the sandbox's CPU for every
    activity (issue #22)."""
    try:
        if 6 * len(orjson.dumps(attrs_in)) <= MAX_ATTRIBUTE_BYTES:
            return False
    except orjson.JSONEncodeError:
        pass
    return len(json.dumps(attrs_in).encode()) > MAX_ATTRIBUTE_BYTES


def _skip(inst: Instance, code: str, message: str) -> dict[str, Any]:
    # The docs example puts the reasons under "errors"; other endpoints use "reasons" (§4.2, §11).
    return {"status": "skipped", inst.behaviour.activity_skip_key: [reason(code, message)]}


def add_activities(call: Call) -> dict[str, Any]:
    """POST /rest/v1/activities/external.json (§7.1)."""
    inst = call.inst
    records = input_records(call.body_dict(), inst.limits.batch_size)
    return {"result": [_add_one(inst, rec, call.now) for rec in records]}


def _add_one(inst: Instance, rec: Any, now: float) -> dict[str, Any]:
    if not isinstance(rec, dict):
        return _skip(inst, "1003", "Invalid data")
    for req in ("leadId", "activityDate", "activityTypeId", "primaryAttributeValue"):
        if rec.get(req) is None or rec.get(req) == "":
            return _skip(inst, "1002", f"Missing value for the required parameter '{req}'")
    try:
        lead_id = int(rec["leadId"])
        type_id = int(rec["activityTypeId"])
    except (TypeError, ValueError):
        return _skip(inst, "1001", f"Invalid value '{rec['leadId']}'. Required of type 'integer'")
    t = inst.activity_type_by_id(type_id)
    if t is None:
        return _skip(inst, "1003", f"Invalid data: activity type '{type_id}' not found")
    if t.approved is None:
        # Adding to a never-approved type is not allowed; the code is UNCONFIRMED (§7.1).
        return _skip(inst, "1003", f"Invalid data: activity type '{t.api_name}' is not approved")
    if lead_id not in inst.leads:
        return _skip(inst, "1004", "Lead not found")
    try:
        date = parse_datetime(str(rec["activityDate"]))
    except InvalidValue:
        return _skip(inst, "1001", f"Invalid value '{rec['activityDate']}'. Required of type 'datetime'")
    v = t.approved
    try:
        primary = coerce(rec["primaryAttributeValue"], v.primary.data_type, v.primary.length,
                         inst.behaviour.over_length)
    except InvalidValue as e:
        return _skip(inst, "1001", str(e))
    attrs_in = rec.get("attributes", [])
    if not isinstance(attrs_in, list):
        return _skip(inst, "1003", "Invalid data: attributes must be an array")
    if len(attrs_in) > MAX_ATTRIBUTES:
        return _skip(inst, "1028", "Max field limit reached")
    if _attributes_bytes_over(attrs_in):
        return _skip(inst, "1049", "Failed to Create Activity")
    by_api = {a.api_name: a for a in v.attributes}
    by_name = {a.name: a for a in v.attributes}
    stored: list[dict[str, Any]] = []
    for item in attrs_in:
        if not isinstance(item, dict):
            return _skip(inst, "1003", "Invalid data")
        key = str(item.get("apiName") or item.get("name"))
        attr = by_api.get(key) if item.get("apiName") else by_name.get(key)
        if attr is None:
            return _skip(inst, "1006", f"Field '{key}' not found")
        try:
            value = coerce(item.get("value"), attr.data_type, attr.length, inst.behaviour.over_length)
        except InvalidValue as e:
            return _skip(inst, "1001", str(e))
        stored.append({"apiName": attr.api_name, "name": attr.name, "value": value})
    act_id = inst.next_id("activity")
    inst.activities.append(Activity(id=act_id, guid=str(act_id), lead_id=lead_id, type_id=type_id, date=date,
                                    primary_value=str(primary), attributes=stored, created=now))
    return {"id": act_id, "marketoGUID": str(act_id), "status": "added"}


# ---- Read side: paging token and Get Lead Activities -------------------------------------------


def paging_token(call: Call) -> dict[str, Any]:
    """GET /rest/v1/activities/pagingtoken.json?sinceDatetime= (§4.1 nextPageToken)."""
    since = call.arg("sinceDatetime")
    if not since:
        raise MarketoError("701", "sinceDatetime cannot be blank")
    try:
        t = parse_datetime(since)
    except InvalidValue:
        raise MarketoError("1001", f"Invalid value '{since}'. Required of type 'datetime'") from None
    return {"nextPageToken": encode_page({"t": t, "id": 0})}


def activity_json(inst: Instance, a: Activity) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": a.id,
        "marketoGUID": a.guid,
        "leadId": a.lead_id,
        "activityDate": iso(a.date),
        "activityTypeId": a.type_id,
        "campaignId": a.campaign_id,
        "primaryAttributeValue": a.primary_value,
        "attributes": [{"name": x["name"], "value": x["value"], **({"apiName": x["apiName"]} if "apiName" in x
                                                                   else {})} for x in a.attributes],
    }
    return out


def get_activities(call: Call) -> dict[str, Any]:
    """GET /rest/v1/activities.json?nextPageToken=&activityTypeIds=[&leadIds=][&batchSize=] (§7, §4.1)."""
    inst = call.inst
    token = call.arg("nextPageToken")
    if not token:
        raise MarketoError("701", "nextPageToken cannot be blank")
    cursor = decode_page(token)
    since = float(cursor.get("t", 0))
    after_id = int(cursor.get("id", 0))
    type_ids = {int(x) for x in split_values(call.arg("activityTypeIds")) if x.isdigit()}
    if not type_ids:
        raise MarketoError("701", "activityTypeIds cannot be blank")
    if len(type_ids) > 10:
        raise MarketoError("1003", "Invalid data: at most 10 activityTypeIds")
    lead_ids = {int(x) for x in split_values(call.arg("leadIds")) if x.isdigit()}
    batch = int_arg(call.arg("batchSize"), "batchSize", 300)
    if batch < 1 or batch > 300:
        raise MarketoError("1003", f"Invalid batchSize '{batch}'")
    ordered = sorted(inst.activities, key=lambda a: (a.date, a.id))
    matched = [a for a in ordered
               if (a.date, a.id) > (since, after_id) and a.date >= since
               and a.type_id in type_ids and (not lead_ids or a.lead_id in lead_ids)]
    page = matched[:batch]
    more = len(matched) > batch
    if page:
        last = page[-1]
        next_token = encode_page({"t": last.date, "id": last.id})
    else:
        next_token = token
    out: dict[str, Any] = {}
    if page:
        out["result"] = [activity_json(inst, a) for a in page]
    out["nextPageToken"] = next_token
    out["moreResult"] = more
    return out
