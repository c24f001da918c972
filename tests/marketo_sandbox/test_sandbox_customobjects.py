"""Custom objects: schema, sync, query, delete (docs/reference/marketo-api.md §8) and the kaltura preset's objects."""

from __future__ import annotations

from kmsync_contracts.seed import ENGAGEMENT_OBJECT_DEDUPE_FIELDS, POLLS_OBJECT_DEDUPE_FIELDS
from marketo_sandbox import preset_kaltura
from marketo_sandbox.testing import SandboxHandle

ENG = "/rest/v1/customobjects/kalturaUserSessionEngagement.json"


async def test_preset_objects_have_the_seed_fields(api) -> None:  # type: ignore[no-untyped-def]
    d = (await api.get("/rest/v1/customobjects/kalturaUserSessionEngagement/describe.json"))["result"][0]
    assert d["idField"] == "marketoGUID" and d["dedupeFields"] == ["entry_id", "personId"]
    assert d["relationships"] == [{"field": "personId", "type": "child",
                                   "relatedTo": {"name": "Lead", "field": "id"}}]
    names = [f["name"] for f in d["fields"]]
    assert names[:5] == ["marketoGUID", "createdAt", "updatedAt", "entry_id", "personId"]
    assert names[5:] == [n for n, _ in preset_kaltura.ENGAGEMENT_FIELDS]
    assert "combined_live_engaged_users_play_time_ratio" in names and "raise_hand" in names
    polls = (await api.get("/rest/v1/customobjects/kalturaUserPolls_c/describe.json"))["result"][0]
    pnames = {f["name"]: f["dataType"] for f in polls["fields"]}
    assert pnames["poll_10_question"] == "text" and pnames["poll_1_type"] == "string"
    assert len([n for n in pnames if n.startswith("poll_")]) == 30
    # Both objects' keys are the contract's, and a key field is not updateable (§8.1).
    assert d["dedupeFields"] == list(ENGAGEMENT_OBJECT_DEDUPE_FIELDS)
    assert polls["dedupeFields"] == list(POLLS_OBJECT_DEDUPE_FIELDS) == ["entry_id", "email"]
    updateable = {f["name"]: f["updateable"] for f in polls["fields"]}
    assert (updateable["entry_id"], updateable["email"], updateable["user"]) == (False, False, True)
    listed = (await api.get("/rest/v1/customobjects.json"))["result"]
    assert {x["name"] for x in listed} == {"kalturaUserSessionEngagement", "kalturaUserPolls_c"}


async def test_sync_actions_dedupe_and_link(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    await api.post("/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}, {"email": "b@x.com"}]})
    body = await api.post(ENG, json={"input": [
        {"entry_id": "1_a", "personId": 1, "plays": 2},
        {"entry_id": "1_a", "personId": 2, "plays": 1},
        {"entry_id": "1_a", "personId": 1, "plays": 9},  # same key again in this call
        {"entry_id": "1_b", "personId": 404},
        {"entry_id": "1_c"},
        {"entry_id": "1_d", "personId": 1, "plays": "lots"},
        {"entry_id": "1_e", "personId": 1, "marketoGUID": "x"},
    ]})
    r = body["result"]
    assert [x["seq"] for x in r] == list(range(7))
    assert r[0]["status"] == "created" and len(r[0]["marketoGUID"]) == 36
    assert r[1]["status"] == "created"
    assert r[2] == {"seq": 2, "status": "skipped",
                    "reasons": [{"code": "1036", "message": "Duplicate object found in input"}]}
    assert r[3] == {"seq": 3, "status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]}
    assert r[4]["status"] == "skipped" and r[4]["reasons"][0]["code"] == "1003"
    assert r[5]["reasons"][0]["code"] == "1001"
    assert r[6]["reasons"][0]["code"] == "1003"
    guid = r[0]["marketoGUID"]
    body = await api.post(ENG, json={"input": [{"entry_id": "1_a", "personId": 1, "plays": 5}]})
    assert body["result"] == [{"seq": 0, "status": "updated", "marketoGUID": guid}]
    body = await api.post(ENG, json={"action": "createOnly", "input": [{"entry_id": "1_a", "personId": 1}]})
    assert body["result"][0]["reasons"][0]["code"] == "1017"
    body = await api.post(ENG, json={"action": "updateOnly", "input": [{"entry_id": "1_z", "personId": 1}]})
    assert body["result"][0]["reasons"] == [{"code": "1013", "message": "Object not found"}]
    body = await api.post(ENG, json={"action": "updateOnly", "dedupeBy": "idField",
                                     "input": [{"marketoGUID": guid, "plays": 6}]})
    assert body["result"] == [{"seq": 0, "status": "updated", "marketoGUID": guid}]
    body = await api.post(ENG, json={"dedupeBy": "idField", "input": [{"marketoGUID": guid}]})
    assert api.error_of(body)[0] == "1003"  # idField only with updateOnly
    stored = sb.dump()["customObjects"]["kalturaUserSessionEngagement"]
    assert len(stored) == 2
    assert next(x for x in stored if x["marketoGUID"] == guid)["plays"] == 6


async def test_query_and_delete(api) -> None:  # type: ignore[no-untyped-def]
    await api.post("/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}, {"email": "b@x.com"}]})
    await api.post(ENG, json={"input": [{"entry_id": "1_a", "personId": 1, "plays": 2},
                                        {"entry_id": "1_b", "personId": 1, "plays": 3},
                                        {"entry_id": "1_a", "personId": 2, "plays": 4}]})
    body = await api.get(ENG, params={"filterType": "personId", "filterValues": "1", "fields": "plays"})
    assert [(x["entry_id"], x["plays"]) for x in body["result"]] == [("1_a", 2), ("1_b", 3)]
    # compound key: POST ?_method=GET with a JSON body
    body = await api.post(ENG, params={"_method": "GET"}, json={
        "filterType": "dedupeFields", "fields": ["plays"], "input": [{"entry_id": "1_a", "personId": 2}]})
    assert [(x["personId"], x["plays"]) for x in body["result"]] == [(2, 4)]
    assert set(body["result"][0]) == {"seq", "marketoGUID", "entry_id", "personId", "createdAt", "updatedAt",
                                      "plays"}
    guid = body["result"][0]["marketoGUID"]
    body = await api.get(ENG, params={"filterType": "idField", "filterValues": guid})
    assert body["result"][0]["marketoGUID"] == guid
    body = await api.post("/rest/v1/customobjects/kalturaUserSessionEngagement/delete.json", json={
        "deleteBy": "dedupeFields", "input": [{"entry_id": "1_a", "personId": 2}, {"entry_id": "no", "personId": 1}]})
    assert body["result"] == [{"seq": 0, "status": "deleted", "marketoGUID": guid},
                              {"seq": 1, "status": "skipped",
                               "reasons": [{"code": "1013", "message": "Object not found"}]}]


async def test_schema_create_add_fields_approve(api) -> None:  # type: ignore[no-untyped-def]
    body = await api.post("/rest/v1/customobjects/schema.json", json={
        "apiName": "car_c", "displayName": "Car", "description": "Car owner"})
    assert body["result"] == [{"seq": 0, "status": "created", "apiName": "car_c"}]
    assert api.error_of(await api.get("/rest/v1/customobjects/car_c/describe.json"))[0] == "1013"  # draft only
    assert api.error_of(await api.post("/rest/v1/customobjects/schema/car_c/approve.json"))[0] == "1003"
    body = await api.post("/rest/v1/customobjects/schema/car_c/addField.json", json={"input": [
        {"name": "vin", "displayName": "VIN", "dataType": "string", "isDedupeField": True},
        {"name": "owner", "displayName": "Owner", "dataType": "link", "relatedTo": {"name": "lead", "field": "id"}},
        {"name": "year", "displayName": "Year", "dataType": "integer"},
        {"name": "bad", "dataType": "nonsense"},
    ]})
    assert [x["status"] for x in body["result"]] == ["created", "created", "created", "skipped"]
    d = (await api.get("/rest/v1/customobjects/schema/car_c/describe.json"))["result"][0]
    assert d["state"] == "draft" and d["dedupeFields"] == ["vin"]
    body = await api.post("/rest/v1/customobjects/schema/car_c/approve.json")
    assert body["result"][0]["state"] == "approved"
    d = (await api.get("/rest/v1/customobjects/car_c/describe.json"))["result"][0]
    assert d["relationships"] == [{"field": "owner", "type": "child", "relatedTo": {"name": "Lead", "field": "id"}}]
    body = await api.post("/rest/v1/customobjects/schema/car_c/addField.json", json={"input": [
        {"name": "vin2", "displayName": "VIN2", "dataType": "string", "isDedupeField": True},
        {"name": "color", "displayName": "Color", "dataType": "string"}]})
    assert [x["status"] for x in body["result"]] == ["skipped", "created"]  # no dedupe fields after approval
    await api.post("/rest/v1/customobjects/schema/car_c/approve.json")
    body = await api.post("/rest/v1/customobjects/car_c.json", json={"input": [{"vin": "V1", "color": "red"}]})
    assert body["result"][0]["status"] == "created"
