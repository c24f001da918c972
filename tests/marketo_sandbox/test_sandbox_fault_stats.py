"""Injected faults counted per instance and kind (GET /_sandbox/faults/stats), across fault-plan replacements."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from marketo_sandbox.clock import ManualClock
from marketo_sandbox.config import InstanceConfig
from marketo_sandbox.testing import SandboxHandle, running_sandbox

DESCRIBE = "/rest/v1/leads/describe.json"
SYNC = "POST /rest/v1/leads.json"
IDENTITY = "GET /identity/oauth/token"
START = 1_772_636_400.0


async def _login(http: httpx.AsyncClient, sb: SandboxHandle) -> str:
    r = await http.get("/identity/oauth/token", params={
        "grant_type": "client_credentials", "client_id": sb.client_id, "client_secret": sb.client_secret})
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def _code(r: httpx.Response) -> str:
    body = r.json()
    return "ok" if body["success"] else str(body["errors"][0]["code"])


async def test_counters_survive_a_fault_plan_replacement() -> None:
    async with running_sandbox(preset="empty", clock=ManualClock(START), seed=3) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        r = await http.put("/_sandbox/faults", json={"rules": [{"endpoint": "GET *", "error": "606", "max_count": 2}]})
        assert r.status_code == 200
        auth = {"Authorization": "Bearer " + await _login(http, sb)}
        assert [_code(await http.get(DESCRIBE, headers=auth)) for _ in range(3)] == ["606", "606", "ok"]
        calls_before = (await http.get("/_sandbox/calls")).json()
        stats_before = (await http.get("/_sandbox/faults/stats")).json()
        assert stats_before["by_kind"] == {"606": 2} and stats_before["total"] == 2

        r = await http.put("/_sandbox/faults", json={"rules": [{"endpoint": "GET *", "error": "608", "max_count": 1}]})
        assert r.status_code == 200
        assert (await http.get("/_sandbox/calls")).json() == calls_before
        assert (await http.get("/_sandbox/faults/stats")).json() == stats_before

        assert _code(await http.get(DESCRIBE, headers=auth)) == "608"
        stats = (await http.get("/_sandbox/faults/stats")).json()
        assert stats["munchkinId"] == "123-ABC-456"
        assert stats["by_kind"] == {"606": 2, "608": 1} and stats["total"] == 3
        assert stats["by_endpoint"] == {"GET " + DESCRIBE: {"606": 2, "608": 1}}
        calls = (await http.get("/_sandbox/calls")).json()
        assert calls["by_endpoint"]["GET " + DESCRIBE] == {"606": 2, "608": 1, "200": 1}

        assert (await http.post("/_sandbox/reset")).status_code == 200  # an explicit reset does forget them
        assert (await http.get("/_sandbox/faults/stats")).json()["by_kind"] == {}


async def test_marketo_code_rules_are_not_spent_on_identity() -> None:
    async with running_sandbox(preset="empty", clock=ManualClock(START),
                               faults={"rules": [{"error": "606", "max_count": 1}]}) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        auth = {"Authorization": "Bearer " + await _login(http, sb)}
        assert _code(await http.get(DESCRIBE, headers=auth)) == "606"
        assert sb.fault_stats()["by_endpoint"] == {"GET " + DESCRIBE: {"606": 1}}


async def test_applied_then_failed_with_http_statuses_and_drops() -> None:
    rules = [{"endpoint": SYNC, "error": "http_500", "apply_then_fail": True, "max_count": 1},
             {"endpoint": SYNC, "error": "http_503", "apply_then_fail": True, "max_count": 1},
             {"endpoint": SYNC, "error": "drop", "apply_then_fail": True, "max_count": 1},
             {"endpoint": SYNC, "error": "http_503", "max_count": 1}]
    async with running_sandbox(preset="empty", clock=ManualClock(START), faults={"rules": rules}) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        auth = {"Authorization": "Bearer " + await _login(http, sb)}

        async def sync(email: str) -> str:
            try:
                r = await http.post("/rest/v1/leads.json", headers=auth, json={"input": [{"email": email}]})
            except httpx.TransportError:
                return "dropped"
            return str(r.status_code) if r.status_code != 200 else _code(r)

        outcomes = [await sync(f"l{i}@x.com") for i in range(5)]
        assert outcomes == ["500", "503", "dropped", "503", "ok"]
        # The three applied-then-failed writes landed; the plain 503 did not.
        assert sorted(ld["email"] for ld in sb.dump()["leads"]) == ["l0@x.com", "l1@x.com", "l2@x.com", "l4@x.com"]
        assert sb.fault_stats()["by_kind"] == {"applied_then_failed:http_500": 1, "applied_then_failed:http_503": 1,
                                               "applied_then_failed:drop": 1, "http_503": 1}
        r = await http.put("/_sandbox/faults", json={"rules": [{"error": "606", "apply_then_fail": True}]})
        assert r.status_code == 400 and "606/615 before any work runs" in r.text
        r = await http.put("/_sandbox/faults", json={"rules": [{"apply_then_fail": True}]})
        assert r.status_code == 400 and "needs an error" in r.text


async def test_forced_token_expiry_every_n_seconds_answers_602_then_601() -> None:
    async with running_sandbox(preset="empty", clock=ManualClock(START)) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        r = await http.put("/_sandbox/faults", json={"token_ttl_seconds": 60, "token_expire_every_seconds": 20})
        assert r.status_code == 200 and r.json()["token_expire_every_seconds"] == 20
        first = await _login(http, sb)
        sb.advance(19.5)
        assert _code(await http.get(DESCRIBE, headers={"Authorization": "Bearer " + first})) == "ok"
        sb.advance(0.5)  # 20 s after the plan was installed
        assert _code(await http.get(DESCRIBE, headers={"Authorization": "Bearer " + first})) == "602"
        assert _code(await http.get(DESCRIBE, headers={"Authorization": "Bearer " + first})) == "601"
        second = await _login(http, sb)
        assert second != first
        sb.advance(45)  # two more boundaries (40 s, 60 s) pass with nobody calling
        r = await http.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": sb.client_id, "client_secret": sb.client_secret})
        third = r.json()["access_token"]
        assert third != second and r.json()["expires_in"] == 60
        assert _code(await http.get(DESCRIBE, headers={"Authorization": "Bearer " + third})) == "ok"
        assert _code(await http.get(DESCRIBE, headers={"Authorization": "Bearer " + second})) == "602"
        stats = (await http.get("/_sandbox/faults/stats")).json()
        assert stats["by_kind"] == {"token_expired:602": 2, "token_expired:601": 1}
        assert stats["forced_token_expiry"] == {"rounds": 3, "tokens": 2}


async def test_token_expiry_is_counted_only_when_injected() -> None:
    async with running_sandbox(preset="empty", clock=ManualClock(START)) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        token = await _login(http, sb)  # the instance's own life: 3600 s, not a fault
        sb.advance(3600)
        assert _code(await http.get(DESCRIBE, headers={"Authorization": "Bearer " + token})) == "602"
        assert sb.fault_stats()["by_kind"] == {}
        sb.set_faults({"token_ttl_seconds": 5})  # the plan's token life is
        token = await _login(http, sb)
        sb.advance(5)
        assert _code(await http.get(DESCRIBE, headers={"Authorization": "Bearer " + token})) == "602"
        assert sb.fault_stats()["by_kind"] == {"token_expired:602": 1}


async def test_stats_are_per_instance_and_the_plan_is_not() -> None:
    a, b = "111-AAA-111", "222-BBB-222"
    instances = [InstanceConfig(munchkin_id=a), InstanceConfig(munchkin_id=b)]
    async with running_sandbox(preset="empty", clock=ManualClock(START), instances=instances) as sb, \
            httpx.AsyncClient(base_url=sb.root_url) as http:
        r = await http.put(f"/_sandbox/faults?instance={b}", json={"rules": [{"error": "608"}]})
        assert r.status_code == 400 and "instance" in r.json()["error"]
        r = await http.put("/_sandbox/faults", json={"rules": [{"instance": b, "error": "608", "max_count": 1}]})
        assert r.status_code == 200
        for munchkin in (a, b):
            t = (await http.get(f"/{munchkin}/identity/oauth/token", params={
                "grant_type": "client_credentials", "client_id": sb.client_id,
                "client_secret": sb.client_secret})).json()["access_token"]
            await http.get(f"/{munchkin}{DESCRIBE}", headers={"Authorization": "Bearer " + t})
        assert (await http.get(f"/_sandbox/faults/stats?instance={a}")).json()["by_kind"] == {}
        stats_b = (await http.get(f"/_sandbox/faults/stats?instance={b}")).json()
        assert stats_b["munchkinId"] == b and stats_b["by_kind"] == {"608": 1}
        assert (await http.get("/_sandbox/faults/stats?instance=999-ZZZ-999")).status_code == 404


# The chaos plan's kinds, with rates raised so a few hundred calls see each of them.
CHAOS_RULES: list[dict[str, Any]] = [
    {"error": "606", "rate": 0.10},
    {"error": "615", "rate": 0.05},
    {"error": "604", "rate": 0.03},
    {"error": "604", "rate": 0.03, "apply_then_fail": True},
    {"error": "608", "rate": 0.03},
    {"error": "611", "rate": 0.03, "apply_then_fail": True},
    {"error": "http_503", "rate": 0.03},
    {"error": "http_500", "rate": 0.03, "apply_then_fail": True},
    {"error": "drop", "rate": 0.03},
    {"error": "drop", "rate": 0.03, "apply_then_fail": True},
]


async def test_per_kind_counts_match_what_the_client_saw() -> None:
    plan = {"rules": CHAOS_RULES, "token_ttl_seconds": 60, "token_expire_every_seconds": 20}
    seen: Counter[str] = Counter()
    async with running_sandbox(preset="empty", clock=ManualClock(START), seed=11) as sb, \
            httpx.AsyncClient(base_url=sb.base_url) as http:
        assert (await http.put("/_sandbox/faults", json=plan)).status_code == 200

        async def login() -> str:
            while True:  # Identity takes the http_* and drop faults too
                try:
                    r = await http.get("/identity/oauth/token", params={
                        "grant_type": "client_credentials", "client_id": sb.client_id,
                        "client_secret": sb.client_secret})
                except httpx.TransportError:
                    seen["drop"] += 1
                    continue
                if r.status_code != 200:
                    seen[f"http_{r.status_code}"] += 1
                    continue
                token: str = r.json()["access_token"]
                return token

        token = await login()
        for i in range(400):
            sb.advance(1)
            email = f"c{i}@x.com"
            try:
                r = await http.post("/rest/v1/leads.json", headers={"Authorization": "Bearer " + token},
                                    json={"input": [{"email": email}]})
                outcome = f"http_{r.status_code}" if r.status_code != 200 else _code(r)
            except httpx.TransportError:
                outcome = "drop"
            if outcome == "ok":
                continue
            if outcome in ("602", "601"):
                seen[f"token_expired:{outcome}"] += 1
                if outcome == "602":  # a second request still holding the token gets 601
                    r = await http.get(DESCRIBE, headers={"Authorization": "Bearer " + token})
                    assert _code(r) == "601"
                    seen["token_expired:601"] += 1
                token = await login()
                continue
            landed = bool(sb.instance().leads_by_email(email))  # did the write happen after all?
            seen[("applied_then_failed:" if landed else "") + outcome] += 1

        stats = (await http.get("/_sandbox/faults/stats")).json()
        assert stats["by_kind"] == dict(seen)
        assert stats["total"] == sum(seen.values())
        assert set(seen) >= {"606", "615", "604", "applied_then_failed:604", "608", "applied_then_failed:611",
                             "http_503", "applied_then_failed:http_500", "drop", "applied_then_failed:drop",
                             "token_expired:602", "token_expired:601"}
        assert stats["forced_token_expiry"]["rounds"] == 20  # 400 s at one boundary every 20 s
