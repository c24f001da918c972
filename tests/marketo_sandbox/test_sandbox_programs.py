"""Channels, programs and program member status (docs/reference/marketo-api.md §6)."""

from __future__ import annotations

from marketo_sandbox.testing import SandboxHandle

STATUS = "/rest/v1/programs/1001/members/status.json"
SEED_STATUSES = [("Created", 10, False), ("Invited", 20, False), ("Registered", 30, True),
                 ("Confirmed", 40, True), ("autoConfirmed", 40, True), ("Attended", 50, True),
                 ("Participated", 60, True), ("Blocked", 70, False), ("Un-registered", 80, False)]


async def _leads(api, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    body = await api.post("/rest/v1/leads.json", json={"input": [{"email": f"p{i}@x.com"} for i in range(n)]})
    return [r["id"] for r in body["result"]]


async def test_channel_program_and_asset_envelope(api) -> None:  # type: ignore[no-untyped-def]
    body = await api.get("/rest/asset/v1/channels.json")
    assert body["success"] is True and body["warnings"] == [] and body["errors"] == []
    ch = body["result"][0]
    assert ch["name"] == "Kaltura Virtual Event" and ch["applicableProgramType"] == "event"
    assert [(s["name"], s["step"], s["success"]) for s in ch["progressionStatuses"]] == SEED_STATUSES
    assert ch["createdAt"].endswith("Z+0000")
    by_name = await api.get("/rest/asset/v1/channel/byName.json", params={"name": "Kaltura Virtual Event"})
    assert by_name["result"] == [ch]
    missing = await api.get("/rest/asset/v1/channel/byName.json", params={"name": "Nope"})
    assert missing["success"] is True and "result" not in missing
    assert missing["warnings"] == ["No assets found for the given search criteria."]
    prog = (await api.get("/rest/asset/v1/program/1001.json"))["result"][0]
    assert prog["channel"] == "Kaltura Virtual Event" and prog["type"] == "Event"
    assert "result" not in await api.get("/rest/asset/v1/program/5.json")


async def test_status_sync_is_forward_only(api) -> None:  # type: ignore[no-untyped-def]
    a, b, c = await _leads(api, 3)
    body = await api.post(STATUS, json={"statusName": "Registered", "input": [{"leadId": a}, {"leadId": b}]})
    assert body["result"] == [{"seq": 0, "status": "created", "leadId": a},
                              {"seq": 1, "status": "created", "leadId": b}]
    body = await api.post(STATUS, json={"statusName": "Confirmed", "input": [
        {"leadId": a}, {"leadId": c}, {"leadId": 9999}]})
    assert body["result"] == [
        {"seq": 0, "status": "updated", "leadId": a},
        {"seq": 1, "status": "created", "leadId": c},
        {"seq": 2, "status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]},
    ]
    skip = [{"code": "1037", "message": "Lead skipped because it is already in or past this status"}]
    # lower step, and equal step (autoConfirmed is also 40) are skipped
    for name in ("Invited", "autoConfirmed", "Confirmed"):
        body = await api.post(STATUS, json={"statusName": name, "input": [{"leadId": a}]})
        assert body["result"] == [{"seq": 0, "status": "skipped", "reasons": skip}], name
    sb: SandboxHandle = api.sb
    members = {m["leadId"]: m for m in sb.dump()["programMembers"]}
    assert members[a]["statusName"] == "Confirmed" and members[a]["reachedSuccess"] is True
    assert members[b]["statusName"] == "Registered"
    got = await api.get("/rest/v1/programs/1001/members.json", params={
        "filterType": "leadId", "filterValues": f"{a},{b}", "fields": "leadId,statusName,reachedSuccess"})
    assert got["result"] == [{"seq": 0, "leadId": a, "statusName": "Confirmed", "reachedSuccess": True},
                             {"seq": 1, "leadId": b, "statusName": "Registered", "reachedSuccess": True}]
    # each change wrote a "Change Status in Progression" activity (type 104)
    changes = [x for x in sb.dump()["activities"] if x["activityTypeId"] == 104 and x["leadId"] == a]
    assert [x["attributes"][0]["value"] for x in changes] == ["Registered", "Confirmed"]


async def test_unknown_status_is_1025_and_batch_limits(api) -> None:  # type: ignore[no-untyped-def]
    (a,) = await _leads(api, 1)
    body = await api.post(STATUS, json={"statusName": "Confirmed email", "input": [{"leadId": a}]})
    assert api.error_of(body) == ("1025", "Program status not found")
    body = await api.post(STATUS, json={"statusName": "registered", "input": [{"leadId": a}]})  # case matters
    assert api.error_of(body)[0] == "1025"
    body = await api.post(STATUS, json={"statusName": "Invited", "input": [{"leadId": a}] * 301})
    assert api.error_of(body)[0] == "1003"
    assert api.error_of(await api.post(STATUS, json={"input": [{"leadId": a}]})) == ("701", "statusName cannot be blank")
    assert api.error_of(await api.post(STATUS, json={"statusName": "Invited", "input": []})) == (
        "701", "input cannot be blank")


async def test_deprecated_lead_program_status_needs_status_input_and_membership(api) -> None:  # type: ignore[no-untyped-def]
    old = "/rest/v1/leads/programs/1001/status.json"
    a, b = await _leads(api, 2)
    await api.post(STATUS, json={"statusName": "Registered", "input": [{"leadId": a}]})
    assert api.error_of(await api.post(old, json={"input": [{"id": a}]})) == ("701", "status cannot be blank")
    assert api.error_of(await api.post(old, json={"status": "Attended"})) == ("701", "input cannot be blank")
    body = await api.post(old, json={"status": "Attended", "input": [{"id": a}, {"id": b}]})
    assert body["result"] == [
        {"id": a, "status": "updated"},
        {"id": b, "status": "skipped", "reasons": [{"code": "1013", "message": "Membership not found"}]},
    ]


async def test_unknown_status_record_level_option() -> None:
    from marketo_sandbox.config import BehaviourConfig, InstanceConfig
    from marketo_sandbox.testing import running_sandbox

    inst = InstanceConfig(behaviour=BehaviourConfig(unknown_status_level="record"))
    import httpx

    async with running_sandbox(preset="kaltura", instances=[inst]) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        tok = (await http.post("/identity/oauth/token", data={
            "grant_type": "client_credentials", "client_id": sb.client_id,
            "client_secret": sb.client_secret})).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        await http.post("/rest/v1/leads.json", headers=h, json={"input": [{"email": "a@x.com"}]})
        body = (await http.post(STATUS, headers=h, json={"statusName": "Nope", "input": [{"leadId": 1}]})).json()
        assert body["success"] is True
        assert body["result"] == [{"seq": 0, "status": "skipped",
                                   "reasons": [{"code": "1025", "message": "Program status not found"}]}]


async def test_seed_channels_and_programs(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    sb.add_channel("Webinar", [("Invited", 10, False), ("Attended", 20, True)])
    pid = sb.add_program("Webinar 1", "Webinar")
    r = await api.http.post("/_sandbox/channels", json={
        "name": "Tradeshow", "statuses": [{"name": "Visited", "step": 10, "success": True}]})
    assert r.status_code == 200 and r.json()["progressionStatuses"][0]["name"] == "Visited"
    r = await api.http.post("/_sandbox/programs", json={"name": "Show 1", "channel": "Tradeshow", "id": 4242})
    assert r.status_code == 200 and r.json()["id"] == 4242
    r = await api.http.post("/_sandbox/programs", json={"name": "Show 2", "channel": "Nope"})
    assert r.status_code == 400
    r = await api.http.post("/_sandbox/channels", json={"name": "X", "statuses": []})
    assert r.status_code == 400 and r.json()["details"][0]["loc"] == ["statuses"]
    # the Asset API's create program
    body = await api.post("/rest/asset/v1/programs.json", data={
        "name": "Webinar 2", "type": "Event", "channel": "Webinar", "folder": '{"id":1,"type":"Folder"}'})
    assert body["success"] is True and body["result"][0]["channel"] == "Webinar"
    body = await api.post("/rest/asset/v1/programs.json", data={
        "name": "Webinar 2", "type": "Event", "channel": "Webinar", "folder": '{"id":1,"type":"Folder"}'})
    assert body["success"] is False and body["errors"][0]["code"] == "709" and body["warnings"] == []
    listed = await api.get("/rest/asset/v1/programs.json", params={"maxReturn": 200})
    assert {p["name"] for p in listed["result"]} >= {"Webinar 1", "Webinar 2", "Show 1"}
    (a,) = await _leads(api, 1)
    body = await api.post(f"/rest/v1/programs/{pid}/members/status.json",
                          json={"statusName": "Attended", "input": [{"leadId": a}]})
    assert body["result"][0]["status"] == "created"
    body = await api.post(f"/rest/v1/programs/{pid}/members/status.json",
                          json={"statusName": "Registered", "input": [{"leadId": a}]})
    assert api.error_of(body)[0] == "1025"  # statuses come from the program's own channel
