"""Custom activity types and Add/Get activities (docs/reference/marketo-api.md §7)."""

from __future__ import annotations

from marketo_sandbox import preset_kaltura
from marketo_sandbox.testing import SandboxHandle

ADD = "/rest/v1/activities/external.json"


def _act(lead: int, entry: str, type_id: int = 100001, **extra) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {"leadId": lead, "activityDate": "2026-03-04T14:00:00Z", "activityTypeId": type_id,
            "primaryAttributeValue": entry, **extra}


async def test_preset_type_matches_the_seed(api) -> None:  # type: ignore[no-untyped-def]
    types = (await api.get("/rest/v1/activities/external/types.json"))["result"]
    (t,) = types
    assert t["apiName"] == "userSessionEngagement" and t["status"] == "approved" and t["id"] == 100001
    d = (await api.get("/rest/v1/activities/external/type/userSessionEngagement/describe.json"))["result"][0]
    assert d["primaryAttribute"]["apiName"] == "entry_id"
    assert [(a["apiName"], a["dataType"]) for a in d["attributes"]] == \
        [(n, ty) for n, ty, _ in preset_kaltura.ACTIVITY_ATTRIBUTES]
    assert len(d["attributes"]) == 19
    all_types = (await api.get("/rest/v1/activities/types.json"))["result"]
    assert {100001, 104} <= {x["id"] for x in all_types}


async def test_add_activities_validation_and_read_back_with_paging(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    await api.post("/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}, {"email": "b@x.com"}]})
    body = await api.post(ADD, json={"input": [
        _act(1, "1_aaa", attributes=[{"apiName": "plays", "value": 3}, {"apiName": "vod_minutes_viewed",
                                                                         "value": "12.5"}]),
        _act(2, "1_bbb", attributes=[{"name": "channel_name", "value": "Main"}]),  # by display name
        _act(42, "1_ccc"),
        _act(1, "1_ddd", attributes=[{"apiName": "nope", "value": 1}]),
        _act(1, "1_eee", attributes=[{"apiName": "plays", "value": "many"}]),
        _act(1, "1_fff", type_id=999),
        {"leadId": 1, "activityTypeId": 100001, "primaryAttributeValue": "x"},
    ]})
    r = body["result"]
    assert r[0] == {"id": r[0]["id"], "marketoGUID": str(r[0]["id"]), "status": "added"}
    assert r[1]["status"] == "added"
    assert r[2] == {"status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]}
    assert r[3] == {"status": "skipped", "reasons": [{"code": "1006", "message": "Field 'nope' not found"}]}
    assert r[4]["reasons"][0] == {"code": "1001", "message": "Invalid value 'many'. Required of type 'integer'"}
    assert r[5]["status"] == "skipped" and r[5]["reasons"][0]["code"] == "1003"
    assert r[6]["reasons"][0] == {"code": "1002",
                                  "message": "Missing value for the required parameter 'activityDate'"}
    tok = (await api.get("/rest/v1/activities/pagingtoken.json",
                         params={"sinceDatetime": "2026-03-01T00:00:00Z"}))["nextPageToken"]
    page1 = await api.get("/rest/v1/activities.json", params={
        "nextPageToken": tok, "activityTypeIds": "100001", "batchSize": 1})
    assert page1["moreResult"] is True
    (a1,) = page1["result"]
    assert a1["leadId"] == 1 and a1["primaryAttributeValue"] == "1_aaa"
    assert a1["activityDate"] == "2026-03-04T14:00:00Z" and a1["activityTypeId"] == 100001
    assert {x["name"]: x["value"] for x in a1["attributes"]} == {"plays": 3, "vod_minutes_viewed": 12.5}
    page2 = await api.get("/rest/v1/activities.json", params={
        "nextPageToken": page1["nextPageToken"], "activityTypeIds": "100001", "batchSize": 1})
    assert page2["result"][0]["primaryAttributeValue"] == "1_bbb" and page2["moreResult"] is False
    page3 = await api.get("/rest/v1/activities.json", params={
        "nextPageToken": page2["nextPageToken"], "activityTypeIds": "100001"})
    assert "result" not in page3 and page3["moreResult"] is False and page3["nextPageToken"]
    # a later sinceDatetime sees nothing
    tok = (await api.get("/rest/v1/activities/pagingtoken.json",
                         params={"sinceDatetime": "2026-03-04T15:00:00Z"}))["nextPageToken"]
    assert "result" not in await api.get("/rest/v1/activities.json", params={
        "nextPageToken": tok, "activityTypeIds": "100001"})
    assert len([a for a in sb.dump()["activities"] if a["activityTypeId"] == 100001]) == 2


async def test_type_lifecycle_draft_approve_and_caps(api) -> None:  # type: ignore[no-untyped-def]
    await api.post("/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}]})
    body = await api.post("/rest/v1/activities/external/type.json", json={
        "apiName": "attendConference", "name": "Attend Conference", "triggerName": "Attends Conference",
        "filterName": "Attended Conference",
        "primaryAttribute": {"apiName": "conferenceName", "name": "Conference Name"}})
    t = body["result"][0]
    assert t["status"] == "draft" and t["primaryAttribute"]["dataType"] == "string"
    r = (await api.post(ADD, json={"input": [_act(1, "Summit", type_id=t["id"])]}))["result"][0]
    assert r["status"] == "skipped"  # draft-only types take no activities
    body = await api.post("/rest/v1/activities/external/type/attendConference/attributes/create.json", json={
        "attributes": [{"apiName": "badge", "name": "Badge", "dataType": "integer"}]})
    assert body["result"][0]["attributes"][0]["apiName"] == "badge"
    body = await api.post("/rest/v1/activities/external/type/attendConference/approve.json")
    assert body["result"][0]["status"] == "approved"
    r = (await api.post(ADD, json={"input": [_act(1, "Summit", type_id=t["id"],
                                                  attributes=[{"apiName": "badge", "value": 7}])]}))["result"][0]
    assert r["status"] == "added"
    body = await api.post("/rest/v1/activities/external/type/attendConference/attributes/create.json", json={
        "attributes": [{"apiName": "room", "name": "Room"}]})
    assert body["result"][0]["status"] == "approved with draft"
    too_many = [{"apiName": f"a{i}", "name": f"A{i}"} for i in range(20)]
    body = await api.post("/rest/v1/activities/external/type/attendConference/attributes/create.json",
                          json={"attributes": too_many})
    assert api.error_of(body) == ("1028", "Max field limit reached")
    for i in range(8):  # 2 types exist; 8 more reach the cap of 10
        body = await api.post("/rest/v1/activities/external/type.json", json={
            "apiName": f"t{i}", "name": f"T{i}", "triggerName": f"tr{i}", "filterName": f"fi{i}",
            "primaryAttribute": {"apiName": "p", "name": "P"}})
        assert body["success"] is True
    body = await api.post("/rest/v1/activities/external/type.json", json={
        "apiName": "t99", "name": "T99", "triggerName": "tr99", "filterName": "fi99",
        "primaryAttribute": {"apiName": "p", "name": "P"}})
    assert api.error_of(body) == ("1027", "Max Activity Type Limit Reached")
