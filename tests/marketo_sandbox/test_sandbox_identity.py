"""Identity and token checks (docs/reference/marketo-api.md §1.2, §1.3, §12.2, §12.3)."""

from __future__ import annotations

import re

import httpx

from marketo_sandbox.testing import SandboxHandle

TOKEN_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:int$")


async def test_token_by_get_query_and_post_form_same_token_with_remaining_life(sb: SandboxHandle) -> None:
    creds = {"grant_type": "client_credentials", "client_id": sb.client_id, "client_secret": sb.client_secret}
    async with httpx.AsyncClient(base_url=sb.base_url) as http:
        r1 = await http.get("/identity/oauth/token", params=creds)
        assert r1.status_code == 200
        b1 = r1.json()
        assert set(b1) == {"access_token", "token_type", "expires_in", "scope"}
        assert TOKEN_RE.match(b1["access_token"])
        assert b1["token_type"] == "bearer"
        assert b1["expires_in"] == 3600
        assert b1["scope"] == "apiuser@sandbox.example"
        sb.advance(100)
        r2 = await http.post("/identity/oauth/token", data=creds)  # form body
        assert r2.json()["access_token"] == b1["access_token"]
        assert r2.json()["expires_in"] == 3500
        r3 = await http.post("/identity/oauth/token", params=creds)  # query on POST
        assert r3.json()["access_token"] == b1["access_token"]
        sb.advance(3500)  # now exactly at expiry → a new token
        r4 = await http.get("/identity/oauth/token", params=creds)
        assert r4.json()["access_token"] != b1["access_token"]
        assert r4.json()["expires_in"] == 3600


async def test_bad_credentials_get_http_401(sb: SandboxHandle) -> None:
    async with httpx.AsyncClient(base_url=sb.base_url) as http:
        r = await http.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": sb.client_id, "client_secret": "wrong"})
        assert r.status_code == 401
        assert r.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}
        r = await http.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": "nobody", "client_secret": sb.client_secret})
        assert r.status_code == 401
    assert sb.call_count("GET /identity/oauth/token", "http_401") == 2


async def test_expired_token_602_once_then_601(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    assert (await api.get("/rest/v1/leads/describe.json"))["success"] is True
    sb.advance(3600)
    assert api.error_of(await api.get("/rest/v1/leads/describe.json")) == ("602", "Access token expired")
    assert api.error_of(await api.get("/rest/v1/leads/describe.json")) == ("601", "Access token invalid")
    assert api.error_of(await api.get("/rest/v1/leads/describe.json")) == ("601", "Access token invalid")
    await api.login()
    assert (await api.get("/rest/v1/leads/describe.json"))["success"] is True


async def test_garbage_missing_and_legacy_tokens(api) -> None:  # type: ignore[no-untyped-def]
    http: httpx.AsyncClient = api.http
    r = await http.get("/rest/v1/leads/describe.json", headers={"Authorization": "Bearer nope:int"})
    assert r.status_code == 200
    assert api.error_of(r.json()) == ("601", "Access token invalid")
    r = await http.get("/rest/v1/leads/describe.json")
    assert api.error_of(r.json())[0] == "601"  # missing token: 601 by default (600 configurable)
    r = await http.get("/rest/v1/leads/describe.json", params={"access_token": api.token})  # legacy param
    assert r.json()["success"] is True
    body = r.json()
    assert re.match(r"^[0-9a-f]+#[0-9a-f]+$", body["requestId"])


async def test_token_checks_not_counted_toward_limits(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    sb.set_limits({"rate_limit": 3, "daily_quota": 1000})
    for _ in range(5):  # identity calls are never counted
        await api.login()
    for _ in range(5):  # 601 answers are not counted
        r = await api.http.get("/rest/v1/leads/describe.json", headers={"Authorization": "Bearer x"})
        assert api.error_of(r.json())[0] == "601"
    for _ in range(3):
        assert (await api.get("/rest/v1/leads/describe.json"))["success"] is True
    assert api.error_of(await api.get("/rest/v1/leads/describe.json"))[0] == "606"
    usage = sb.instance().quota.used(sb.clock.time())
    assert usage == 4  # three successes and the 606 answer


async def test_behaviour_switches_missing_token_600_and_case_sensitive_email() -> None:
    from marketo_sandbox.config import BehaviourConfig, InstanceConfig
    from marketo_sandbox.testing import running_sandbox

    inst = InstanceConfig(behaviour=BehaviourConfig(missing_token_code="600", email_case_insensitive=False,
                                                    accept_access_token_param=False))
    async with running_sandbox(preset="empty", instances=[inst]) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        r = await http.get("/rest/v1/leads/describe.json")
        assert r.json()["errors"] == [{"code": "600", "message": "Access token not specified"}]
        tok = (await http.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": sb.client_id,
            "client_secret": sb.client_secret})).json()["access_token"]
        r = await http.get("/rest/v1/leads/describe.json", params={"access_token": tok})
        assert r.json()["errors"][0]["code"] == "600"  # the legacy parameter is switched off
        h = {"Authorization": f"Bearer {tok}"}
        body = (await http.post("/rest/v1/leads.json", headers=h,
                                json={"input": [{"email": "a@x.com"}, {"email": "A@x.com"}]})).json()
        assert [x["status"] for x in body["result"]] == ["created", "created"]
