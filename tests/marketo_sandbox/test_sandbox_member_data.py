"""Program member custom fields and Sync Program Member Data (docs/reference/marketo-api.md §13)."""

from __future__ import annotations

from typing import Any

from marketo_sandbox.config import BehaviourConfig, ClientCredentials

DATA = "/rest/v1/programs/1001/members.json"
STATUS = "/rest/v1/programs/1001/members/status.json"
FIELDS = "/rest/v1/programs/members/schema/fields.json"


async def _members(api: Any, n: int) -> list[int]:
    body = await api.post("/rest/v1/leads.json", json={"input": [{"email": f"m{i}@x.com"} for i in range(n)]})
    ids = [r["id"] for r in body["result"]]
    await api.post(STATUS, json={"statusName": "Registered", "input": [{"leadId": i} for i in ids]})
    return ids


def _skip(code: str, message: str, seq: int = 0) -> dict[str, Any]:
    return {"seq": seq, "status": "skipped", "reasons": [{"code": code, "message": message}]}


async def test_describe_lists_the_preset_field_and_an_updateable_status_reason(api: Any) -> None:
    fields = {f["name"]: f for f in (await api.get("/rest/v1/programs/members/describe.json"))["result"][0]["fields"]}
    assert fields["kalturaGranularStatus"] == {"name": "kalturaGranularStatus", "displayName": "Kaltura Granular Status",
                                               "dataType": "string", "updateable": True, "crmManaged": False,
                                               "length": 255}
    assert fields["statusReason"]["updateable"] is True and fields["statusName"]["updateable"] is False


async def test_sync_member_data_updates_members_only_and_logs_the_change(api: Any) -> None:
    a, b = await _members(api, 2)
    outsider = (await api.post("/rest/v1/leads.json", json={"input": [{"email": "out@x.com"}]}))["result"][0]["id"]
    body = await api.post(DATA, json={"input": [
        {"leadId": a, "kalturaGranularStatus": "Confirmed email", "statusReason": "Confirmed email"},
        {"leadId": outsider, "kalturaGranularStatus": "Registered"},
        {"leadId": b, "noSuchField": "x"},
        {"leadId": b, "statusName": "Attended"},
        {"leadId": b, "kalturaGranularStatus": "x" * 256},
    ]})
    assert body["result"] == [
        {"seq": 0, "status": "updated", "leadId": a},
        _skip("1013", "Membership not found", 1),
        _skip("1006", "Field 'noSuchField' not found", 2),
        _skip("1006", "Field 'statusName' is not updateable", 3),
        _skip("1001", "Invalid value for a 'string' field: longer than 255 characters", 4),
    ]
    members = {m["leadId"]: m for m in api.sb.dump()["programMembers"]}
    assert members[a]["kalturaGranularStatus"] == "Confirmed email" and members[a]["statusReason"] == "Confirmed email"
    assert "kalturaGranularStatus" not in members[b]
    await api.post(DATA, json={"input": [{"leadId": a, "kalturaGranularStatus": "Pre-event visit"}]})
    got = await api.get("/rest/v1/programs/1001/members.json", params={
        "filterType": "leadId", "filterValues": str(a), "fields": "leadId,statusName,kalturaGranularStatus"})
    assert got["result"] == [{"seq": 0, "leadId": a, "statusName": "Registered",
                              "kalturaGranularStatus": "Pre-event visit"}]
    acts = await api.get("/rest/v1/activities.json", params={
        "nextPageToken": (await api.get("/rest/v1/activities/pagingtoken.json",
                                        params={"sinceDatetime": "2026-01-01T00:00:00Z"}))["nextPageToken"],
        "activityTypeIds": "175", "leadIds": str(a)})
    values = [next(x["value"] for x in r["attributes"] if x["name"] == "New Value") for r in acts["result"]
              if next(x["value"] for x in r["attributes"] if x["name"] == "Attribute Name") == "kalturaGranularStatus"]
    assert values == ["Confirmed email", "Pre-event visit"]


async def test_call_limits_and_the_response_level_switch(api: Any) -> None:
    (a,) = await _members(api, 1)
    too_many = await api.post(DATA, json={"input": [{"leadId": a}] * 301})
    assert api.error_of(too_many)[0] == "1003"
    inst = api.sb.instance()
    inst.config = inst.config.model_copy(update={"behaviour": BehaviourConfig(
        unknown_member_field_level="response", readonly_member_field_code="1007")})
    assert api.error_of(await api.post(DATA, json={"input": [{"leadId": a, "nope": 1}]})) == (
        "1006", "Field 'nope' not found")
    body = await api.post(DATA, json={"input": [{"leadId": a, "statusName": "x"}]})
    assert body["result"][0]["reasons"][0]["code"] == "1007"


async def test_creating_a_field_needs_the_schema_permission(api: Any) -> None:
    definition = {"input": [{"displayName": "Badge", "name": "badgeColour", "dataType": "string"}]}
    created = await api.post(FIELDS, json=definition)
    assert created["result"] == [{"seq": 0, "name": "badgeColour", "status": "created"}]
    again = await api.post(FIELDS, json=definition)
    assert again["result"][0]["status"] == "skipped"
    fields = {f["name"] for f in (await api.get(FIELDS))["result"]}
    assert {"badgeColour", "kalturaGranularStatus", "statusReason"} <= fields
    inst = api.sb.instance()
    inst.clients[api.sb.client_id] = ClientCredentials(client_id=api.sb.client_id, client_secret=api.sb.client_secret,
                                                       permissions=["Read-Write Person"])
    denied = await api.post(FIELDS, json={"input": [{"displayName": "B2", "name": "b2", "dataType": "string"}]})
    assert api.error_of(denied)[0] == "603"
