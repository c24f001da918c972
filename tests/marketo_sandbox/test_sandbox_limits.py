"""Limits at their exact boundaries (docs/reference/marketo-api.md §2.1, §12.5)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx

from kmsync_testing.waiting import wait_for
from marketo_sandbox.clock import ManualClock
from marketo_sandbox.config import ClientCredentials, InstanceConfig, LimitsConfig
from marketo_sandbox.testing import SandboxHandle, running_sandbox

DESCRIBE = "/rest/v1/leads/describe.json"
RATE_606 = {"code": "606", "message": "Max rate limit '100' exceeded with in '20' secs"}


async def test_100th_call_passes_101st_gets_606_then_window_rolls(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    for i in range(100):
        body = await api.get(DESCRIBE)
        assert body["success"] is True, (i, body)
    body = await api.get(DESCRIBE)
    assert body["success"] is False
    assert body["errors"] == [RATE_606]
    assert set(body) == {"requestId", "success", "errors"}
    sb.advance(19.999)
    assert api.error_of(await api.get(DESCRIBE))[0] == "606"
    sb.advance(0.001)  # the first 101 calls (made at t0) leave the window at t0 + 20 s
    assert (await api.get(DESCRIBE))["success"] is True
    assert sb.call_count("GET " + DESCRIBE, "606") == 2
    assert sb.call_count("GET " + DESCRIBE, "200") == 101


async def test_window_is_rolling_not_fixed(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    for _ in range(50):
        assert (await api.get(DESCRIBE))["success"]
    sb.advance(10)
    for _ in range(50):
        assert (await api.get(DESCRIBE))["success"]
    sb.advance(9)  # t = 19 s: all 100 still inside
    assert api.error_of(await api.get(DESCRIBE))[0] == "606"
    sb.advance(1)  # t = 20 s: the first 50 left; the 606 at t=19 occupies one slot
    for _ in range(49):
        assert (await api.get(DESCRIBE))["success"]
    assert api.error_of(await api.get(DESCRIBE))[0] == "606"


async def test_11th_concurrent_call_gets_615(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    clock = sb.manual_clock
    sb.set_faults({"rules": [{"endpoint": "GET /rest/v1/leads/describe.json", "latency_seconds": 5}]})
    slow = [asyncio.create_task(api.get(DESCRIBE)) for _ in range(10)]
    await wait_for(lambda: clock.sleepers == 10, within=5, what="10 calls parked in their latency fault")
    assert sb.instance().in_flight == 10
    body = await api.get("/rest/v1/leads/describe2.json")  # the 11th call in flight
    assert body["success"] is False
    assert body["errors"] == [{"code": "615", "message": "Concurrent access limit '10' reached"}]
    sb.advance(5)
    results = await asyncio.gather(*slow)
    assert all(r["success"] for r in results)
    assert sb.instance().in_flight == 0
    assert (await api.get("/rest/v1/leads/describe2.json"))["success"] is True


async def test_daily_quota_607_resets_at_midnight_central_not_utc() -> None:
    # 2026-03-04 23:59:00 UTC is 17:59 in Chicago (CST, UTC-6)
    clock = ManualClock(datetime(2026, 3, 4, 23, 59, tzinfo=UTC).timestamp())
    async with running_sandbox(preset="empty", clock=clock, limits={"daily_quota": 5}) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        async def auth() -> dict[str, str]:
            tok = (await http.get("/identity/oauth/token", params={
                "grant_type": "client_credentials", "client_id": sb.client_id,
                "client_secret": sb.client_secret})).json()["access_token"]
            return {"Authorization": f"Bearer {tok}"}

        h = await auth()
        for _ in range(5):
            assert (await http.get(DESCRIBE, headers=h)).json()["success"] is True
        body = (await http.get(DESCRIBE, headers=h)).json()
        assert body["errors"] == [{"code": "607", "message": "Daily quota reached"}]
        clock.advance(120)  # past UTC midnight: still the same Central day
        assert (await http.get(DESCRIBE, headers=h)).json()["errors"][0]["code"] == "607"
        clock.set(datetime(2026, 3, 5, 5, 59, 59, tzinfo=UTC).timestamp())  # 23:59:59 Central
        h = await auth()  # the first token has expired by now
        assert (await http.get(DESCRIBE, headers=h)).json()["errors"][0]["code"] == "607"
        clock.advance(1)  # 00:00:00 Central
        assert (await http.get(DESCRIBE, headers=h)).json()["success"] is True


async def test_free_codes_do_not_count(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    sb.set_limits({"rate_limit": 3})
    sb.set_faults({"rules": [{"endpoint": "*", "error": "604", "max_count": 4}]})
    for _ in range(4):
        assert api.error_of(await api.get(DESCRIBE)) == ("604", "Request time-out")
    for _ in range(3):
        assert (await api.get(DESCRIBE))["success"] is True
    assert api.error_of(await api.get(DESCRIBE))[0] == "606"
    # wrong method (605) is free too; unknown path (610) is counted
    sb.advance(20)
    r = await api.http.put(DESCRIBE, headers=api.headers())
    assert api.error_of(r.json()) == ("605", "HTTP Method not supported")
    assert api.error_of(await api.get("/rest/v1/nothing.json")) == ("610", "Requested resource not found")
    assert sb.instance().rate.count(sb.clock.time()) == 1


async def test_body_and_uri_size_limits(api) -> None:  # type: ignore[no-untyped-def]
    h = api.headers() | {"Content-Type": "application/json"}
    limit = 1_048_576
    r = await api.http.post("/rest/v1/leads.json", headers=h, content=b" " * (limit + 1))
    assert r.status_code == 413
    r = await api.http.post("/rest/v1/leads.json", headers=h, content=b" " * limit)
    assert r.status_code == 200  # exactly 1 MB is allowed
    # bulk allows 10 MB
    csv_body = b"email\n" + (b"a" * 94 + b"@b.co\n") * 21_000  # ~2.1 MB
    r = await api.http.post("/bulk/v1/leads.json", headers=api.headers(), files={"file": ("l.csv", csv_body)})
    assert r.status_code == 200 and r.json()["success"] is True
    r = await api.http.post("/bulk/v1/leads.json", headers=api.headers(),
                            files={"file": ("l.csv", b"email\n" + b"x" * 10_485_760)})
    assert r.status_code == 413
    r = await api.http.get("/rest/v1/leads.json", headers=api.headers(),
                           params={"filterType": "email", "filterValues": "a" * 8200})
    assert r.status_code == 414


async def test_limits_are_per_instance_and_routed_by_prefix() -> None:
    a = InstanceConfig(munchkin_id="111-AAA-111", limits=LimitsConfig(rate_limit=2))
    b = InstanceConfig(munchkin_id="222-BBB-222",
                       clients=[ClientCredentials(client_id="b-id", client_secret="b-secret", scope="b@x")])
    async with running_sandbox(preset="empty", instances=[a, b], clock=ManualClock()) as sb, \
            httpx.AsyncClient(base_url=sb.root_url) as http:
        assert sb.base_url == sb.root_url and sb.munchkin_id == "111-AAA-111"

        async def token(prefix: str, cid: str, secret: str) -> dict[str, str]:
            r = await http.get(f"{prefix}/identity/oauth/token", params={
                "grant_type": "client_credentials", "client_id": cid, "client_secret": secret})
            assert r.status_code == 200, r.text
            return {"Authorization": "Bearer " + r.json()["access_token"]}

        ha = await token("", sb.client_id, sb.client_secret)  # default instance at "/"
        hb = await token("/222-BBB-222", "b-id", "b-secret")
        # credentials and tokens do not cross instances
        r = await http.get("/222-BBB-222/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": sb.client_id, "client_secret": sb.client_secret})
        assert r.status_code == 401
        assert (await http.get("/222-BBB-222" + DESCRIBE, headers=ha)).json()["errors"][0]["code"] == "601"
        for _ in range(2):
            assert (await http.get("/111-AAA-111" + DESCRIBE, headers=ha)).json()["success"] is True
        assert (await http.get(DESCRIBE, headers=ha)).json()["errors"][0]["code"] == "606"
        for _ in range(5):
            assert (await http.get("/222-BBB-222" + DESCRIBE, headers=hb)).json()["success"] is True
        assert sb.call_count(munchkin_id="222-BBB-222", code="200") == 6  # 1 identity + 5 REST
