"""The limiter against the sandbox's real limits, faults and quota, on one shared virtual clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from kmsync_marketo.settings import LimiterSettings, RetrySettings
from marketo_sandbox.config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    ClientCredentials,
    FaultConfig,
    FaultRule,
    InstanceConfig,
    LimitsConfig,
)

from .conftest import sandbox_env

CHICAGO = ZoneInfo("America/Chicago")


def _emails(prefix: str, n: int) -> list[dict[str, str]]:
    return [{"email": f"{prefix}{i}@example.com"} for i in range(n)]


async def test_backlog_alone_on_the_instance_causes_no_606_or_615() -> None:
    async with sandbox_env() as env:  # Marketo's limits: 100 calls / 20 s, 10 in flight
        client = env.client(env.settings(limits=LimiterSettings(share=1.0, rate_headroom_calls=10,
                                                                max_concurrency=5)))
        # 240 one-record calls queued at once: more than two windows' worth.
        results = await asyncio.gather(*(client.sync_leads([r]) for r in _emails("b", 240)))
        assert all(r.outcomes[0].status == "created" for r in results)
        assert env.count("606") == 0 and env.count("615") == 0
        stats = client.limiter.stats()
        assert stats.calls_started == 240 and stats.waits > 0 and stats.throttles == {}
        # Exact window: 90 per 20 s → the 240th call starts in the third window, not later.
        elapsed = env.manual.time() - datetime(2026, 3, 4, 15, 0, tzinfo=UTC).timestamp()
        assert 40.0 <= elapsed < 61.0


async def test_a_client_without_headroom_is_throttled_and_recovers_without_losing_records() -> None:
    async with sandbox_env() as env:
        # Configured as if it owned 3x the instance: Marketo answers 606 and the client adapts.
        greedy = LimiterSettings(rate_limit_calls=300, rate_headroom_calls=0, max_concurrency=10)
        client = env.client(env.settings(limits=greedy, retry=RetrySettings(max_attempts=8)))
        results = await asyncio.gather(*(client.sync_leads([r]) for r in _emails("g", 250)))
        assert all(r.outcomes[0].status == "created" for r in results)
        assert env.count("606") > 0  # the sandbox did push back ...
        stats = client.limiter.stats()
        assert stats.throttles.get("606", 0) == env.count("606")
        assert stats.rate_fraction < 1.0  # ... and the client slowed down
        assert len(env.inst.leads) == 250  # nothing lost, nothing duplicated
        throttled_at = env.manual.time()
        # Gradual recovery after a quiet spell.
        env.manual.set(throttled_at + 400)
        await client.sync_leads(_emails("late", 1))
        assert client.limiter.stats().rate_fraction == 1.0


async def test_injected_faults_are_retried_and_every_record_lands_once() -> None:
    faults = FaultConfig(rules=[
        FaultRule(endpoint="POST /rest/v1/leads.json", error="604", rate=0.2, apply_then_fail=True),
        FaultRule(endpoint="*", error="606", rate=0.1),
        FaultRule(endpoint="*", error="615", rate=0.05),
        FaultRule(endpoint="*", error="608", rate=0.05),
        FaultRule(endpoint="*", error="http_503", rate=0.05),
        FaultRule(endpoint="*", error="drop", rate=0.03),
        FaultRule(endpoint="*", error="713", rate=0.05),
    ])
    async with sandbox_env("kaltura", faults=faults) as env:
        client = env.client(env.settings(retry=RetrySettings(max_attempts=12)))
        batches = [_emails(f"f{b}-", 20) for b in range(15)]
        results = await asyncio.gather(*(client.sync_leads(batch) for batch in batches))
        outcomes = [o for r in results for o in r.outcomes]
        assert len(outcomes) == 300 and all(o.status in ("created", "updated") for o in outcomes)
        assert len(env.inst.leads) == 300
        lead_ids = [lid for r in results for lid in r.lead_ids.values()]
        statuses = await client.sync_program_member_status(1001, "Registered", lead_ids)
        assert all(o.status in ("created", "updated") for o in statuses)
        assert sum(1 for k in env.inst.members if k[0] == 1001) == 300
        injected = sum(env.count(c) for c in ("604", "606", "615", "608", "713", "http_503", "drop"))
        assert injected > 5  # faults really hit
        assert client.transport.stats.retries >= injected - env.count("606") - env.count("615")


async def test_607_parks_until_midnight_central_and_resumes_across_dst() -> None:
    # 2026-03-07 23:00 CST; the quota resets at 2026-03-08 00:00 CST (06:00 UTC), the night DST starts.
    start = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)
    async with sandbox_env(limits=LimitsConfig(daily_quota=25), start=start) as env:
        client = env.client()  # believes the quota is 50,000: learns from Marketo's 607
        results = []
        for i in range(40):
            results.append(await client.sync_leads([{"email": f"q{i}@example.com"}]))
        assert all(r.outcomes[0].status == "created" for r in results)
        assert len(env.inst.leads) == 40
        assert env.count("607") == 1  # one 607, then parked: no hammering of an exhausted quota
        stats = client.limiter.stats()
        assert stats.quota_parks == 1 and stats.parked_until is None
        now = env.manual.now()
        reset = datetime(2026, 3, 8, 0, 0, tzinfo=CHICAGO)
        assert now >= reset and now - reset < timedelta(minutes=10)
        # The day after the reset saw the rest of the calls; the token (1 h) expired while parked.
        days = {d.isoformat(): sum(c.values()) for d, c in env.inst.usage.items()}
        assert days["2026-03-07"] == 25 + 1  # 25 within quota + the 607 answer (counted, §2.1)
        assert days["2026-03-08"] == 15


async def test_usage_reconciliation_parks_before_the_quota_other_integrations_used() -> None:
    clients = [ClientCredentials(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET),
               ClientCredentials(client_id="other-integration", client_secret="other-secret", scope="other@x.io")]
    instance = InstanceConfig(clients=clients, limits=LimitsConfig(daily_quota=50))
    start = datetime(2026, 7, 1, 15, 0, tzinfo=UTC)  # 10:00 CDT
    async with sandbox_env(instances=[instance], start=start) as env:
        other = env.client(env.settings(client_id="other-integration", secret="other-secret"))
        for i in range(30):
            await other.sync_leads([{"email": f"o{i}@example.com"}])
        ours = env.client(env.settings(limits=LimiterSettings(daily_quota=50, daily_headroom_calls=5)))
        assert await ours.usage_today() == 30
        stamps = []
        for i in range(16):
            await ours.sync_leads([{"email": f"u{i}@example.com"}])
            stamps.append(env.clock.now())
        assert env.count("607") == 0  # parked by its own accounting, never told off by Marketo
        midnight = datetime(2026, 7, 2, 0, 0, tzinfo=CHICAGO)
        assert stamps[14] < midnight <= stamps[15]  # 30 + 15 = 45 = quota − headroom
        assert ours.limiter.stats().quota_parks == 1


async def test_automatic_usage_reconciliation_every_n_calls() -> None:
    clients = [ClientCredentials(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET),
               ClientCredentials(client_id="other-integration", client_secret="other-secret", scope="other@x.io")]
    instance = InstanceConfig(clients=clients, limits=LimitsConfig(daily_quota=60))
    async with sandbox_env(instances=[instance], start=datetime(2026, 7, 1, 15, 0, tzinfo=UTC)) as env:
        other = env.client(env.settings(client_id="other-integration", secret="other-secret"))
        for i in range(40):
            await other.sync_leads([{"email": f"o{i}@example.com"}])
        ours = env.client(env.settings(limits=LimiterSettings(daily_quota=60, daily_headroom_calls=5,
                                                              reconcile_every_calls=4)))
        for i in range(25):  # 40 + 25 > 60: without reconciliation Marketo would answer 607
            await ours.sync_leads([{"email": f"u{i}@example.com"}])
        usage_calls = env.count("200", "GET /rest/v1/stats/usage.json")
        assert usage_calls >= 2  # read on its own, every few calls
        assert env.count("607") == 0  # the other integration's 40 calls were taken into account
        assert ours.limiter.stats().quota_parks == 1


async def _four_calls_on_a_quota_of_one(retry: RetrySettings) -> tuple[list[str], dict[str, int], int]:
    # 14:00 CST. One call a day gets through; the last of four meets 607 on three days running.
    async with sandbox_env(limits=LimitsConfig(daily_quota=1), start=datetime(2026, 3, 4, 20, 0, tzinfo=UTC)) as env:
        client = env.client(env.settings(retry=retry))
        results = await asyncio.gather(*(client.sync_leads([{"email": f"p{i}@example.com"}]) for i in range(4)))
        statuses = [r.outcomes[0].status for r in results]
        days = {d.isoformat(): sum(c.values()) for d, c in env.inst.usage.items()}
        return statuses, days, env.count("607")


async def test_607_parks_as_often_as_needed_and_never_fails_the_data() -> None:
    statuses, days, refusals = await _four_calls_on_a_quota_of_one(RetrySettings())
    assert RetrySettings().max_quota_parks is None  # the default never fails data on 607
    assert statuses == ["created"] * 4
    # One lead a day over four US-Central days (each day: the one within quota + the 607 answers,
    # counted, §2.1); the last call was parked three times, one more than the old bound allowed.
    assert days == {"2026-03-04": 1 + 3, "2026-03-05": 1 + 2, "2026-03-06": 1 + 1, "2026-03-07": 1}, days
    assert refusals == 3 + 2 + 1


async def test_an_explicit_bound_on_quota_parks_is_an_opt_in_to_fail() -> None:
    statuses, _, _ = await _four_calls_on_a_quota_of_one(RetrySettings(max_quota_parks=1))
    assert statuses.count("created") == 2  # day one, and the one that won day two
    assert statuses.count("failed") == 2
