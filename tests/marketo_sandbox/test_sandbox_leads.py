"""Leads: sync, get by filter/id, describe (docs/reference/marketo-api.md §5)."""

from __future__ import annotations

from marketo_sandbox.testing import SandboxHandle

LEADS = "/rest/v1/leads.json"


async def test_sync_actions_and_per_record_reasons(api) -> None:  # type: ignore[no-untyped-def]
    body = await api.post(LEADS, json={"input": [
        {"email": "ann@example.com", "firstName": "Ann"},
        {"email": "ANN@Example.com", "lastName": "Lee"},  # same lead, emails match case-insensitively
        {"email": "bob@example.com", "bogus": 1},
        {"email": "cy@example.com", "leadScore": "abc"},
    ]})
    assert set(body) == {"requestId", "result", "success"}
    assert body["result"] == [
        {"id": 1, "status": "created"},
        {"id": 1, "status": "updated"},
        {"status": "skipped", "reasons": [{"code": "1006", "message": "Field 'bogus' not found"}]},
        {"status": "skipped", "reasons": [{"code": "1001", "message": "Invalid value 'abc'. Required of type 'integer'"}]},
    ]
    body = await api.post(LEADS, json={"action": "createOnly", "input": [
        {"email": "ann@example.com"}, {"email": "dee@example.com"}, {"id": 5, "email": "x@example.com"}]})
    assert body["result"] == [
        {"status": "skipped", "reasons": [{"code": "1005", "message": "Lead already exists"}]},
        {"id": 2, "status": "created"},
        {"status": "skipped", "reasons": [{"code": "1003", "message": "Invalid data"}]},
    ]
    body = await api.post(LEADS, json={"action": "updateOnly", "input": [
        {"email": "nobody@example.com"}, {"email": "dee@example.com", "title": "CTO"}]})
    assert body["result"] == [
        {"status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]},
        {"id": 2, "status": "updated"},
    ]
    body = await api.post(LEADS, json={"action": "updateOnly", "lookupField": "id",
                                       "input": [{"id": 1, "company": "Acme"}, {"id": 77, "company": "X"}]})
    assert [r["status"] for r in body["result"]] == ["updated", "skipped"]
    sb: SandboxHandle = api.sb
    leads = {ld["id"]: ld for ld in sb.dump()["leads"]}
    assert leads[1]["firstName"] == "Ann" and leads[1]["lastName"] == "Lee" and leads[1]["company"] == "Acme"
    assert leads[2]["title"] == "CTO"


async def test_duplicate_leads_give_1007(api) -> None:  # type: ignore[no-untyped-def]
    await api.post(LEADS, json={"action": "createDuplicate", "input": [{"email": "d@x.com"}, {"email": "d@x.com"}]})
    body = await api.post(LEADS, json={"input": [{"email": "d@x.com", "firstName": "D"}]})
    assert body["result"] == [{"status": "skipped", "reasons": [
        {"code": "1007", "message": "Multiple leads match the lookup criteria"}]}]


async def test_response_level_errors(api) -> None:  # type: ignore[no-untyped-def]
    assert api.error_of(await api.post(LEADS, json={"lookupField": "firstName", "input": [{"email": "a@b.c"}]})) \
        == ("1011", "Field 'firstName' not supported")
    assert api.error_of(await api.post(LEADS, json={"lookupField": "nope", "input": [{"email": "a@b.c"}]})) \
        == ("1006", "Lookup field 'nope' not found")
    code, _ = api.error_of(await api.post(LEADS, json={"input": [{"email": f"{i}@x.com"} for i in range(301)]}))
    assert code == "1003"
    assert (await api.post(LEADS, json={"input": [{"email": f"{i}@x.com"} for i in range(300)]}))["success"]
    r = await api.http.post(LEADS, headers=api.headers() | {"Content-Type": "application/json"}, content=b"{nope")
    assert api.error_of(r.json()) == ("609", "Invalid JSON")
    r = await api.http.post(LEADS, headers=api.headers(), data={"input": "x"})  # a form body without _method=GET
    assert api.error_of(r.json()) == ("612", "Invalid Content Type")


async def test_get_by_filter_get_and_post_method_get_and_by_id(api) -> None:  # type: ignore[no-untyped-def]
    await api.post(LEADS, json={"input": [{"email": f"u{i}@x.com", "firstName": f"U{i}"} for i in range(5)]})
    body = await api.get(LEADS, params={"filterType": "email", "filterValues": "U1@X.com,u3@x.com"})
    assert [r["email"] for r in body["result"]] == ["u1@x.com", "u3@x.com"]
    assert set(body["result"][0]) == {"id", "email", "firstName", "createdAt", "updatedAt"}  # nulls left out
    assert body["result"][0]["createdAt"] == "2026-03-04T15:00:00Z"
    # long queries: POST ?_method=GET with a form body, or _method in the form
    body = await api.post(LEADS, params={"_method": "GET"},
                          data={"filterType": "id", "filterValues": "1,2,3,4,5", "fields": "email", "batchSize": "2"})
    assert [r["id"] for r in body["result"]] == [1, 2]
    assert body["result"][0] == {"id": 1, "email": "u0@x.com"}
    token = body["nextPageToken"]
    body = await api.post(LEADS, data={"_method": "GET", "filterType": "id", "filterValues": "1,2,3,4,5",
                                       "fields": "email", "batchSize": "2", "nextPageToken": token})
    assert [r["id"] for r in body["result"]] == [3, 4]
    body = await api.get(LEADS, params={"filterType": "email", "filterValues": "none@x.com"})
    assert body["result"] == [] and body["success"] is True
    body = await api.get("/rest/v1/lead/2.json", params={"fields": "email,firstName"})
    assert body["result"] == [{"id": 2, "email": "u1@x.com", "firstName": "U1"}]
    assert (await api.get("/rest/v1/lead/999.json"))["result"] == []
    assert api.error_of(await api.get(LEADS, params={"filterType": "firstName", "filterValues": "U1"}))[0] == "1011"


async def test_describe_and_describe2(api) -> None:  # type: ignore[no-untyped-def]
    d1 = (await api.get("/rest/v1/leads/describe.json"))["result"]
    email = next(f for f in d1 if f["rest"]["name"] == "email")
    assert email["dataType"] == "email" and email["rest"]["readOnly"] is False
    d2 = (await api.get("/rest/v1/leads/describe2.json"))["result"][0]
    assert d2["name"] == "API Lead"
    assert ["email"] in d2["searchableFields"] and ["id"] in d2["searchableFields"]
    idf = next(f for f in d2["fields"] if f["name"] == "id")
    assert idf["updateable"] is False and idf["dataType"] == "integer"


async def test_custom_lead_fields_from_config_and_schema_api() -> None:
    import httpx

    from marketo_sandbox.config import CustomLeadField, InstanceConfig
    from marketo_sandbox.testing import running_sandbox

    inst = InstanceConfig(lead_fields=[CustomLeadField(name="kalturaUserId", data_type="string"),
                                       CustomLeadField(name="attendedCount", data_type="integer")])
    async with running_sandbox(preset="empty", instances=[inst]) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        tok = (await http.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": sb.client_id,
            "client_secret": sb.client_secret})).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        body = (await http.post(LEADS, headers=h, json={"lookupField": "kalturaUserId", "input": [
            {"email": "k@x.com", "kalturaUserId": "u-1", "attendedCount": 2}]})).json()
        assert body["result"] == [{"id": 1, "status": "created"}]
        body = (await http.post(LEADS, headers=h, json={"lookupField": "kalturaUserId", "input": [
            {"kalturaUserId": "u-1", "attendedCount": 3}]})).json()
        assert body["result"] == [{"id": 1, "status": "updated"}]
        got = (await http.get(LEADS, headers=h, params={
            "filterType": "kalturaUserId", "filterValues": "u-1", "fields": "email,attendedCount"})).json()
        assert got["result"] == [{"id": 1, "email": "k@x.com", "attendedCount": 3}]
        d2 = (await http.get("/rest/v1/leads/describe2.json", headers=h)).json()["result"][0]
        assert ["kalturaUserId"] in d2["searchableFields"]
        body = (await http.post("/rest/v1/leads/schema/fields.json", headers=h, json={"input": [
            {"name": "sessionScore", "displayName": "Session Score", "dataType": "float"},
            {"name": "kalturaUserId", "displayName": "dup", "dataType": "string"}]})).json()
        assert [r["status"] for r in body["result"]] == ["created", "skipped"]
        f = (await http.get("/rest/v1/leads/schema/fields/sessionScore.json", headers=h)).json()["result"][0]
        assert f["isCustom"] is True and f["dataType"] == "float" and f["displayName"] == "Session Score"
        body = (await http.post(LEADS, headers=h, json={"input": [{"email": "k@x.com", "sessionScore": "x"}]})).json()
        assert body["result"][0]["reasons"][0]["code"] == "1001"
