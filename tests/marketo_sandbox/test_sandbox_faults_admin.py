"""Fault injection (deterministic under a seed) and the /_sandbox/ admin API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from marketo_sandbox.clock import ManualClock
from marketo_sandbox.config import FaultConfig, load_faults
from marketo_sandbox.testing import SandboxHandle, running_sandbox

DESCRIBE = "/rest/v1/leads/describe.json"


async def _codes(seed: int, n: int = 40) -> list[str]:
    faults = {"rules": [{"endpoint": "GET /rest/v1/leads/*", "error": "608", "rate": 0.3},
                        {"endpoint": "*", "error": "502", "rate": 0.2}]}
    out = []
    async with running_sandbox(preset="empty", faults=faults, seed=seed, clock=ManualClock()) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        tok = (await http.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": sb.client_id,
            "client_secret": sb.client_secret})).json()["access_token"]
        for _ in range(n):
            sb.advance(1)
            body = (await http.get(DESCRIBE, headers={"Authorization": f"Bearer {tok}"})).json()
            out.append("ok" if body["success"] else body["errors"][0]["code"])
    return out


async def test_faults_are_deterministic_under_seed() -> None:
    a, b, c = await _codes(1), await _codes(1), await _codes(2)
    assert a == b
    assert a != c
    assert {"ok", "608", "502"} == set(a)


async def test_http_errors_drops_and_apply_then_fail(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    sb.set_faults({"rules": [{"endpoint": "GET /rest/v1/leads/describe.json", "error": "http_503", "max_count": 1},
                             {"endpoint": "GET /rest/v1/leads/describe2.json", "error": "drop", "max_count": 1},
                             {"endpoint": "POST /rest/v1/leads.json", "error": "604", "apply_then_fail": True,
                              "max_count": 1}]})
    r = await api.http.get(DESCRIBE, headers=api.headers())
    assert r.status_code == 503
    assert (await api.get(DESCRIBE))["success"] is True  # max_count reached
    with pytest.raises(httpx.TransportError):
        await api.http.get("/rest/v1/leads/describe2.json", headers=api.headers())
    body = await api.post("/rest/v1/leads.json", json={"input": [{"email": "amb@x.com"}]})
    assert api.error_of(body) == ("604", "Request time-out")
    assert [ld["email"] for ld in sb.dump()["leads"]] == ["amb@x.com"]  # the write happened anyway
    assert sb.call_count("GET " + DESCRIBE, "http_503") == 1
    assert sb.call_count("GET /rest/v1/leads/describe2.json", "drop") == 1


async def test_fault_injected_rate_and_concurrency_codes_use_marketo_messages(api) -> None:  # type: ignore[no-untyped-def]
    api.sb.set_faults({"rules": [{"error": "606", "max_count": 1}, {"error": "615", "max_count": 1}]})
    assert api.error_of(await api.get(DESCRIBE)) == ("606", "Max rate limit '100' exceeded with in '20' secs")
    assert api.error_of(await api.get(DESCRIBE)) == ("615", "Concurrent access limit '10' reached")


async def test_token_lifetime_from_fault_plan() -> None:
    async with running_sandbox(preset="empty", faults={"token_ttl_seconds": 5}, clock=ManualClock()) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        body = (await http.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": sb.client_id,
            "client_secret": sb.client_secret})).json()
        assert body["expires_in"] == 5
        sb.advance(5)
        r = await http.get(DESCRIBE, headers={"Authorization": "Bearer " + body["access_token"]})
        assert r.json()["errors"][0]["code"] == "602"


def test_fault_file_yaml_and_validation(tmp_path: Path) -> None:
    p = tmp_path / "faults.yaml"
    p.write_text("token_ttl_seconds: 30\nrules:\n  - endpoint: 'POST /rest/v1/leads.json'\n"
                 "    error: '606'\n    rate: 0.25\n  - latency_seconds: 0.5\n")
    fc = load_faults(p)
    assert fc.token_ttl_seconds == 30 and fc.rules[0].error == "606" and fc.rules[1].latency_seconds == 0.5
    with pytest.raises(ValueError, match="rate"):
        FaultConfig.model_validate({"rules": [{"error": "606", "rate": 2}]})
    with pytest.raises(ValueError, match="error"):
        FaultConfig.model_validate({"rules": [{"error": "999"}]})


async def test_admin_api_over_http(api) -> None:  # type: ignore[no-untyped-def]
    http: httpx.AsyncClient = api.http
    await api.post("/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}]})
    await api.post("/rest/v1/programs/1001/members/status.json",
                   json={"statusName": "Attended", "input": [{"leadId": 1}]})
    dump = (await http.get("/_sandbox/dump")).json()
    assert dump["munchkinId"] == "123-ABC-456"
    assert dump["leads"][0]["email"] == "a@x.com"
    assert dump["programMembers"] == [{"programId": 1001, "leadId": 1, "statusName": "Attended", "step": 50,
                                       "reachedSuccess": True, "membershipDate": "2026-03-04T15:00:00Z",
                                       "updatedAt": "2026-03-04T15:00:00Z"}]
    assert set(dump["customObjects"]) == {"kalturaUserSessionEngagement", "kalturaUserPolls_c"}
    calls = (await http.get("/_sandbox/calls")).json()
    assert calls["by_endpoint"]["POST /rest/v1/leads.json"] == {"200": 1}
    assert calls["by_endpoint"]["GET /identity/oauth/token"] == {"200": 1}
    assert calls["by_client"]["sandbox-client-id"]["POST /rest/v1/programs/{programId}/members/status.json"] \
        == {"200": 1}
    r = await http.put("/_sandbox/faults", json={"rules": [{"error": "611"}]})
    assert r.status_code == 200 and r.json()["rules"][0]["error"] == "611"
    assert api.error_of(await api.get(DESCRIBE)) == ("611", "System error")
    r = await http.put("/_sandbox/faults", json={"rules": [{"error": "nope"}]})
    assert r.status_code == 400
    await http.put("/_sandbox/faults", json={"rules": []})
    assert (await http.post("/_sandbox/tokens/expire")).json() == {"expired": 1}
    assert api.error_of(await api.get(DESCRIBE))[0] == "602"
    assert (await http.post("/_sandbox/reset")).json() == {"ok": True}
    dump = (await http.get("/_sandbox/dump")).json()
    assert dump["leads"] == [] and dump["programMembers"] == []
    assert len(dump["activityTypes"]) == 1  # the preset is provisioned again
    assert (await http.get("/_sandbox/calls")).json()["total"] == 0
    r = await http.post("/_sandbox/clock", json={"advance": 10})
    assert r.status_code == 200 and r.json()["manual"] is True
    assert api.sb.clock.time() == 1_772_636_410.0
    inst = (await http.get("/_sandbox/instances")).json()
    assert inst[0]["munchkinId"] == "123-ABC-456" and inst[0]["default"] is True
    assert (await http.get("/_sandbox/nothing")).status_code == 404


async def test_request_log_keeps_bodies_and_redacts_secrets(api) -> None:  # type: ignore[no-untyped-def]
    await api.post("/rest/v1/leads.json", json={"input": [{"email": "log@x.com"}]})
    await api.http.get("/rest/v1/leads/describe.json", params={"access_token": api.token})
    log = (await api.http.get("/_sandbox/requests")).json()
    ident, sync, legacy = log[-3:]
    assert ident["endpoint"] == "GET /identity/oauth/token" and "client_secret=<redacted>" in ident["query"]
    assert api.sb.client_secret not in str(log)
    assert sync["endpoint"] == "POST /rest/v1/leads.json" and "log@x.com" in sync["body"]
    assert sync["headers"]["Authorization"] == "<redacted>" and sync["code"] == "200"
    assert legacy["query"] == "access_token=<redacted>" and api.token not in str(log)


async def test_identity_takes_http_and_drop_faults(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    sb.set_faults({"rules": [{"endpoint": "* /identity/oauth/token", "error": "http_502", "max_count": 1},
                             {"endpoint": "* /identity/oauth/token", "error": "drop", "max_count": 1},
                             {"endpoint": "* /identity/oauth/token", "error": "606"}]})
    params = {"grant_type": "client_credentials", "client_id": sb.client_id, "client_secret": sb.client_secret}
    assert (await api.http.get("/identity/oauth/token", params=params)).status_code == 502
    with pytest.raises(httpx.TransportError):
        await api.http.get("/identity/oauth/token", params=params)
    r = await api.http.get("/identity/oauth/token", params=params)  # Marketo codes never hit Identity
    assert r.status_code == 200 and r.json()["access_token"]


def test_instances_file_and_preset_inheritance(tmp_path: Path) -> None:
    from marketo_sandbox.config import load_instances
    from marketo_sandbox.server import build_sandbox

    p = tmp_path / "instances.yaml"
    p.write_text("instances:\n  - munchkin_id: 111-AAA-111\n    limits: {rate_limit: 50}\n"
                 "  - munchkin_id: 222-BBB-222\n    preset: empty\n"
                 "    clients: [{client_id: b, client_secret: s}]\n")
    sandbox = build_sandbox(preset="kaltura", instances=load_instances(p))
    a, b = sandbox.instance("111-aaa-111"), sandbox.instance("222-BBB-222")
    assert sandbox.default is a and a.limits.rate_limit == 50 and b.limits.rate_limit == 100
    assert 1001 in a.programs and b.programs == {}  # --preset applies where the file names none
    assert set(b.clients) == {"b"}
    p.write_text("- munchkin_id: 111-AAA-111\n- munchkin_id: 111-AAA-111\n")
    with pytest.raises(ValueError, match="unique"):
        build_sandbox(instances=load_instances(p))


async def test_a_clock_shared_with_a_client_is_driven_like_the_sandbox_own_manual_clock() -> None:
    """Client tests share one clock between their client and the sandbox (kmsync_common's ManualClock):
    the sandbox carries its own clocks but takes any clock with a manual clock's methods as manual."""
    from kmsync_common.clock import ManualClock as ClientManualClock

    shared = ClientManualClock(1_772_636_400.0)
    async with running_sandbox(preset="empty", clock=shared) as sb, httpx.AsyncClient(base_url=sb.base_url) as http:
        assert sb.manual_clock is shared
        r = await http.post("/_sandbox/clock", json={"advance": 10})
        assert r.status_code == 200 and r.json() == {"now": 1_772_636_410.0, "iso": "2026-03-04T15:00:10Z",
                                                      "manual": True}
        assert shared.time() == 1_772_636_410.0
    async with running_sandbox(preset="empty") as sb, httpx.AsyncClient(base_url=sb.base_url) as http:
        r = await http.post("/_sandbox/clock", json={"advance": 10})
        assert r.status_code == 409 and "not manual" in r.json()["error"]
        with pytest.raises(TypeError, match="system clock"):
            sb.manual_clock  # noqa: B018
