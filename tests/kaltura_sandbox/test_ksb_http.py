"""HTTP conformance of the sandbox against docs/reference/kaltura-api.md §7 - over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest_asyncio

from kaltura_sandbox.formats import REPORT_4021_COLUMNS, REPORT_60013_COLUMNS
from kaltura_sandbox.testing import RunningSandbox, running_sandbox

SMALL = {"registrants": 300, "sessions": 3}


async def start_ks(http: httpx.AsyncClient, sb: RunningSandbox, session_type: int = 2) -> str:
    r = await http.post("/api_v3/service/session/action/start", data={
        "format": "1", "secret": sb.admin_secret, "partnerId": str(sb.partner_id),
        "type": str(session_type), "userId": "tester"})
    assert r.status_code == 200
    ks = r.json()
    assert isinstance(ks, str) and ks
    return ks


@pytest_asyncio.fixture
async def env() -> AsyncIterator[tuple[RunningSandbox, httpx.AsyncClient, str]]:
    async with running_sandbox(SMALL, seed=4) as sb, httpx.AsyncClient(base_url=sb.base_url) as http:
        yield sb, http, await start_ks(http, sb)


async def profiles(http: httpx.AsyncClient, ks: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post("/api/v1/user-profile/list", json=body, headers={"Authorization": f"Bearer {ks}"})


async def get_table(http: httpx.AsyncClient, ks: str, **params: Any) -> dict[str, Any]:
    r = await http.post("/api_v3/service/report/action/getTable",
                        json={"format": 1, "ks": ks, "reportType": 60013, **params})
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


# ---------------------------------------------------------------------------------------- KS


async def test_bad_ks_is_a_kaltura_api_exception_inside_http_200(env: Any) -> None:
    _sb, http, ks = env
    for bad in ("not-a-ks", ks[:-4] + "AAAA"):
        r = await http.post("/api_v3/service/user/action/list", data={"format": "1", "ks": bad})
        assert r.status_code == 200
        assert r.json()["objectType"] == "KalturaAPIException" and r.json()["code"] == "INVALID_KS"
        r = await profiles(http, bad, {})
        assert r.status_code == 200 and r.json()["code"] == "INVALID_KS"
    r = await http.post("/api_v3/service/user/action/list", data={"format": "1"})
    assert r.json()["code"] == "MISSING_KS"


async def test_session_start_checks_the_admin_secret_and_revocation_invalidates(env: Any) -> None:
    sb, http, ks = env
    r = await http.post("/api_v3/service/session/action/start",
                        data={"format": "1", "secret": "wrong", "partnerId": str(sb.partner_id), "type": "2"})
    assert r.status_code == 200 and r.json()["code"] == "START_SESSION_ERROR"
    assert (await profiles(http, ks, {})).json().get("objects") is not None
    assert (await http.post("/_sandbox/ks/revoke")).json()["revoked"] >= 1
    assert (await profiles(http, ks, {})).json()["code"] == "INVALID_KS"
    user_ks = await start_ks(http, sb, session_type=0)
    assert (await profiles(http, user_ks, {})).json()["code"] == "SERVICE_FORBIDDEN"


# ----------------------------------------------------------------------------- user profiles


async def test_profiles_appear_as_scenario_time_passes_and_soft_deleted_vanish(env: Any) -> None:
    sb, http, ks = env
    body = {"filter": {"appGuidIn": [sb.app_guid]}, "pager": {"limit": 500}}
    assert (await profiles(http, ks, body)).json() == {"objects": [], "totalCount": 0}
    sb.advance_to(sb.sandbox.scenario.event_start)
    mid = (await profiles(http, ks, body)).json()
    assert 0 < mid["totalCount"] < 300
    sb.advance_to_end()
    full = (await profiles(http, ks, body)).json()
    truth = sb.truth()
    visible = {a["profile_id"]: a for a in truth["attendees"] if not a["deleted"]}
    assert full["totalCount"] == len(visible) == 300 - sb.sandbox.config.soft_deleted
    for p in full["objects"]:
        assert p["objectType"] == "UserProfile" and p["appGuid"] == sb.app_guid
        assert p["eventData"]["attendanceStatus"] == visible[p["id"]]["final_status"]
    other_app = {"filter": {"appGuidIn": ["someone-else"]}}
    assert (await profiles(http, ks, other_app)).json()["totalCount"] == 0


async def test_profile_paging_and_total_count(env: Any) -> None:
    sb, http, ks = env
    sb.advance_to_end()
    seen: list[str] = []
    offset = 0
    while True:
        page = (await profiles(http, ks, {"pager": {"offset": offset, "limit": 37}, "orderBy": "updatedAt"})).json()
        seen += [p["id"] for p in page["objects"]]
        offset += 37
        if len(page["objects"]) < 37:
            break
    assert len(seen) == len(set(seen)) == page["totalCount"]
    no_total = await profiles(http, ks, {"pager": {"limit": 1}, "includeTotalCount": False})
    assert no_total.json()["totalCount"] == -1


async def test_updated_at_watermark_is_inclusive_and_ordered(env: Any) -> None:
    sb, http, ks = env
    sb.advance_to_end()
    everything = (await profiles(http, ks, {"pager": {"limit": 500}, "orderBy": "updatedAt"})).json()["objects"]
    stamps = [p["updatedAt"] for p in everything]
    assert stamps == sorted(stamps)
    mark = stamps[len(stamps) // 2]
    since = (await profiles(http, ks, {"filter": {"updatedAtGreaterThanOrEqual": mark},
                                       "pager": {"limit": 500}, "orderBy": "updatedAt"})).json()["objects"]
    assert [p["id"] for p in since] == [p["id"] for p in everything if p["updatedAt"] >= mark]
    upto = (await profiles(http, ks, {"filter": {"updatedAtLessThanOrEqual": mark},
                                      "pager": {"limit": 500}})).json()["objects"]
    assert {p["id"] for p in upto} == {p["id"] for p in everything if p["updatedAt"] <= mark}
    newest_first = (await profiles(http, ks, {"pager": {"limit": 5}, "orderBy": "-updatedAt"})).json()["objects"]
    assert [p["updatedAt"] for p in newest_first] == sorted(stamps, reverse=True)[:5]


async def test_profile_list_rejects_malformed_requests_with_field_messages(env: Any) -> None:
    _sb, http, ks = env
    cases = [
        ({"filter": {"updatedAtGreaterThanOrEqual": "yesterday"}}, "filter.updatedAtGreaterThanOrEqual"),
        ({"pager": {"limit": 501}}, "pager.limit"),
        ({"pager": {"offset": -1}}, "pager.offset"),
        ({"orderBy": "email"}, "orderBy"),
    ]
    for body, field in cases:
        r = await profiles(http, ks, body)
        assert r.status_code == 400, body
        assert field in r.json()["message"]
    r = await http.post("/api/v1/user-profile/list", content=b"{nope", headers={"Authorization": f"Bearer {ks}"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]


async def test_user_list_by_id_gives_email_and_names(env: Any) -> None:
    sb, http, ks = env
    sb.advance_to_end()
    truth = sb.truth()["attendees"]
    picked = [a for a in truth if a["email"]][:3]
    ids = ",".join(a["user_id"].upper() if "@" in a["user_id"] else a["user_id"] for a in picked)
    r = await http.post("/api_v3/service/user/action/list",
                        data={"format": "1", "ks": ks, "filter[idIn]": ids, "pager[pageSize]": "500"})
    body = r.json()
    assert body["objectType"] == "KalturaUserListResponse" and body["totalCount"] == 3
    got = {u["id"]: u for u in body["objects"]}
    for a in picked:
        assert got[a["user_id"]]["email"] == a["email"]
        assert got[a["user_id"]]["firstName"] == a["first_name"]


# ------------------------------------------------------------------------------------ reports


async def test_report_table_delimiter_trailing_semicolon_and_paging(env: Any) -> None:
    sb, http, ks = env
    sb.advance_to_end()
    entry = sb.session_entry_ids[0]
    flt = {"virtualEventIdIn": str(sb.virtual_event_id), "entryIdIn": entry}
    whole = await get_table(http, ks, reportInputFilter=flt, pager={"pageSize": 1000, "pageIndex": 1},
                            responseOptions={"delimiter": "|"})
    assert whole["objectType"] == "KalturaReportTable"
    assert whole["header"].split("|") == list(REPORT_60013_COLUMNS)
    assert whole["data"].endswith(";")
    rows = whole["data"].split(";")[:-1]
    truth_rows = [e for e in sb.truth()["engagement"] if e["entry_id"] == entry]
    assert len(rows) == whole["totalCount"] == len(truth_rows) > 0
    paged: list[str] = []
    for index in range(1, 100):
        page = await get_table(http, ks, reportInputFilter=flt, pager={"pageSize": 7, "pageIndex": index},
                               responseOptions={"delimiter": "|"})
        assert page["totalCount"] == len(rows)
        chunk = page["data"].split(";")[:-1]
        paged += chunk
        if len(chunk) < 7:
            break
    assert paged == rows


async def test_report_values_containing_the_delimiter_are_flattened(env: Any) -> None:
    sb, http, ks = env
    sb.advance_to_end()
    flt = {"entryIdIn": ",".join(sb.session_entry_ids)}
    table = await get_table(http, ks, reportInputFilter=flt, pager={"pageSize": 5000, "pageIndex": 1})
    header = table["header"].split(",")
    rows = [r.split(",") for r in table["data"].split(";")[:-1]]
    title = header.index("title")
    assert any(r[title] == "Director  Demand Gen" for r in rows if len(r) == len(header))
    assert all(len(r) in (len(header), len(header) - 3) for r in rows)  # -3: the damaged rows


async def test_multi_value_filters_are_split_by_the_response_delimiter(env: Any) -> None:
    sb, http, ks = env
    sb.advance_to_end()
    a, b = sb.session_entry_ids[:2]
    both = await get_table(http, ks, reportInputFilter={"entryIdIn": f"{a}|{b}"},
                           pager={"pageSize": 1, "pageIndex": 1}, responseOptions={"delimiter": "|"})
    one = await get_table(http, ks, reportInputFilter={"entryIdIn": a}, pager={"pageSize": 1, "pageIndex": 1})
    two = await get_table(http, ks, reportInputFilter={"entryIdIn": b}, pager={"pageSize": 1, "pageIndex": 1})
    assert both["totalCount"] == one["totalCount"] + two["totalCount"]
    wrong_delim = await get_table(http, ks, reportInputFilter={"entryIdIn": f"{a}|{b}"},
                                  pager={"pageSize": 1, "pageIndex": 1})
    assert wrong_delim["totalCount"] == 0


async def test_engagement_appears_only_after_session_end_plus_lag(env: Any) -> None:
    sb, http, ks = env
    session = sb.sandbox.scenario.sessions[0]
    flt = {"entryIdIn": session.entry_id}
    sb.advance_to(session.end)
    assert (await get_table(http, ks, reportInputFilter=flt))["totalCount"] == 0
    sb.advance(sb.sandbox.config.report_lag_seconds)
    on_time = (await get_table(http, ks, reportInputFilter=flt))["totalCount"]
    assert on_time > 0
    sb.advance(sb.sandbox.config.late_lag_seconds)
    assert (await get_table(http, ks, reportInputFilter=flt))["totalCount"] >= on_time


async def test_report_12000_row_cap() -> None:
    big = {"registrants": 13_000, "sessions": 1, "attend_rate": 1.0, "unregister_rate": 0.0,
           "block_rate": 0.0, "late_row_rate": 0.0, "max_polls_per_session": 2}
    async with running_sandbox(big, seed=1) as sb, httpx.AsyncClient(base_url=sb.base_url, timeout=60) as http:
        ks = await start_ks(http, sb)
        sb.advance_to_end()
        flt = {"entryIdIn": sb.session_entry_ids[0]}
        first = await get_table(http, ks, reportInputFilter=flt, pager={"pageSize": 20_000, "pageIndex": 1})
        assert first["totalCount"] > 12_000
        assert len(first["data"].split(";")[:-1]) == 12_000  # first page silently clamped
        last_ok = await get_table(http, ks, reportInputFilter=flt, pager={"pageSize": 500, "pageIndex": 24})
        assert len(last_ok["data"].split(";")[:-1]) == 500
        beyond = await get_table(http, ks, reportInputFilter=flt, pager={"pageSize": 500, "pageIndex": 25})
        assert beyond["objectType"] == "KalturaAPIException" and "12000" in beyond["message"]


async def test_only_report_60013_is_served(env: Any) -> None:
    _sb, http, ks = env
    r = await http.post("/api_v3/service/report/action/getTable",
                        json={"format": 1, "ks": ks, "reportType": 40009})
    assert r.status_code == 200 and r.json()["objectType"] == "KalturaAPIException"


# ---------------------------------------------------------------------------------------- CSV


async def test_engagement_csv_export_has_bom_header_and_flattened_commas(env: Any) -> None:
    sb, http, ks = env
    sb.advance_to_end()
    entry = sb.session_entry_ids[0]
    r = await http.post("/api_v3/service/report/action/getCsvFromStringParams", json={
        "format": 1, "ks": ks, "id": 4021, "params": f"entry_ids={entry};virtualeventid={sb.virtual_event_id}"})
    url = r.json()
    assert isinstance(url, str) and f"Report_4021_{sb.partner_id}_" in url
    csv = await http.get(url)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.content.startswith(b"\xef\xbb\xbf")
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[0].split(",") == list(REPORT_4021_COLUMNS)
    assert len(lines) - 1 == len([e for e in sb.truth()["engagement"] if e["entry_id"] == entry])
    admin = await http.get(f"/_sandbox/exports/engagement/{entry}.csv")
    assert admin.content == csv.content
    unauth = await http.get(url.split("?")[0])
    assert unauth.json()["code"] == "MISSING_KS"


async def test_poll_answers_csv_export(env: Any) -> None:
    sb, http, _ks = env
    sb.advance_to_end()
    entry = sb.session_entry_ids[0]
    r = await http.get(f"/_sandbox/exports/polls/{entry}.csv")
    text = r.content.decode("utf-8")
    assert text.startswith("\ufeffentry_id,poll_id,poll_type,question,user_id,email,answer,answered_at\n")
    body = text.splitlines()[1:]
    truth = [a for a in sb.truth()["poll_answers"] if a["entry_id"] == entry]
    assert len(body) == len(truth) > 0
    exported_questions = {line.split(",")[3] for line in body if line.count(",") == 7}
    assert all("," not in q for q in exported_questions)
    assert {a["question_as_exported"] for a in truth if a["defect"] is None} <= exported_questions


# -------------------------------------------------------------------------------------- admin


async def test_exports_of_an_unknown_session_are_404(env: Any) -> None:
    _sb, http, _ks = env
    for kind in ("engagement", "polls"):
        r = await http.get(f"/_sandbox/exports/{kind}/0_nosuch.csv")
        assert r.status_code == 404 and r.text == "no session 0_nosuch"


async def test_admin_advance_play_pause_reset_and_truth(env: Any) -> None:
    sb, http, _ = env
    status = (await http.get("/_sandbox/status")).json()
    assert status["now"] == status["origin"] and status["speed"] == 0
    moved = (await http.post("/_sandbox/advance", json={"seconds": 3600})).json()
    assert moved["now"] != status["now"]
    assert (await http.post("/_sandbox/advance", json={"seconds": -5})).status_code == 400
    assert (await http.post("/_sandbox/advance", json={"to": "end"})).json()["finished"] is True
    truth = (await http.get("/_sandbox/truth")).json()
    assert len(truth["attendees"]) == 300 and truth["engagement"] and truth["poll_answers"]
    assert {"final_status", "transitions", "deleted", "email_defect"} <= set(truth["attendees"][0])
    played = (await http.post("/_sandbox/play", json={"speed": 100})).json()
    assert played["speed"] == 100
    assert (await http.post("/_sandbox/pause")).json()["speed"] == 0
    reset = (await http.post("/_sandbox/reset")).json()
    assert reset["now"] == reset["origin"]
    creds = (await http.get("/_sandbox/credentials")).json()
    assert (creds["admin_secret"], creds["app_guid"]) == (sb.admin_secret, sb.app_guid)
    assert creds["user_profile_url"] == sb.user_profile_url
    as_of = (await http.get("/_sandbox/truth", params={"as_of": "now"})).json()
    assert as_of["attendees"] == []
    assert sb.now() - sb.sandbox.scenario.origin < timedelta(seconds=1)


async def test_reports_microservice_polls_activity(env: Any) -> None:
    sb, http, ks = env
    sb.advance_to_end()
    auth = {"Authorization": f"Bearer {ks}"}
    entry = sb.session_entry_ids[0]
    bad = await http.post("/api/v1/report/generate", json={"reportName": "pollsActivity"},
                          headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 200 and bad.json()["code"] == "INVALID_KS"
    wrong = await http.post("/api/v1/report/generate", json={"reportName": "chatUserActivity"}, headers=auth)
    assert wrong.status_code == 400 and "reportName" in wrong.json()["message"]
    started = await http.post("/api/v1/report/generate", headers=auth, json={
        "reportName": "pollsActivity",
        "reportParameters": {"entries_ids": [entry], "virtual_event_ids": [str(sb.virtual_event_id)]}})
    session_id = started.json()["sessionId"]
    early = await http.post("/api/v1/report/serve", json={"sessionId": session_id}, headers=auth)
    assert early.json()["objectType"] == "KalturaAPIException"
    statuses = [
        (await http.post("/api/v1/report/serve", json={"sessionId": session_id, "statusOnly": True},
                         headers=auth)).json()["status"]
        for _ in range(2)
    ]
    assert statuses == ["processing", "completed"]
    csv = await http.post("/api/v1/report/serve", json={"sessionId": session_id}, headers=auth)
    assert csv.headers["content-type"].startswith("text/csv") and csv.content.startswith(b"\xef\xbb\xbf")
    admin = await http.get(f"/_sandbox/exports/polls/{entry}.csv")
    assert csv.content == admin.content
    unknown = await http.post("/api/v1/report/serve", json={"sessionId": "nope"}, headers=auth)
    assert unknown.json()["code"] == "OBJECT_NOT_FOUND"
