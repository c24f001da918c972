"""607 (daily quota) delays data, never fails it: the sink end to end (real Kafka, the Marketo sandbox
over HTTP on 127.0.0.1) on an instance whose quota runs out several times before the backlog is in.

The sandbox and the instance's limiter share one ManualClock: nothing moves it but this test, so the
sink stays parked until the test crosses midnight US Central, and crossing it takes no real time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kmsync_common.clock import ManualClock
from kmsync_marketo.from_config import settings_from_instance
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_testing.waiting import wait_for
from marketo_sandbox.config import LimitsConfig
from marketo_sandbox.testing import SandboxHandle, running_sandbox

from .test_sink_integration import (
    A,
    B,
    Harness,
    assert_sandbox_holds_exactly,
    harness,
    sandbox_instances,
    scenario,
    tenants_for,
)

pytestmark = pytest.mark.timeout(120)

START = datetime(2026, 3, 4, 20, 0, tzinfo=UTC)  # 14:00 CST


def beta(sb: SandboxHandle) -> dict[str, Any]:
    return {"beta": {"munchkin_id": B, "endpoint": sb.instance_url(B), "client_id": sb.client_id,
                     "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}}}


async def decided(h: Harness, munchkin: str) -> set[str]:
    return {o.op_id for o in await h.outcomes() if o.munchkin_id == munchkin}


async def test_every_record_parked_on_607_is_delivered_after_the_reset(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(START.timestamp())
    n = 12  # 12 attendees, 52 operations: a handful of calls, and Marketo allows one call a day
    async with running_sandbox(instances=sandbox_instances(A, B, limits={B: LimitsConfig(daily_quota=1)}),
                               clock=clock) as sb:
        tenants = tenants_for(sb, monkeypatch, beta(sb))
        async with harness(kafka_broker, topic_prefix, sb, tenants) as h:
            found = tenants.instance_by_munchkin(B)
            assert found is not None
            # The first client for an instance key fixes its limiter: B's runs on the test's clock.
            limiter: InstanceLimiter = h.limiters.get(B, settings_from_instance(found[1]).limits, clock)
            records = scenario(ops, B, n)
            want = {op.op_id for op in records}
            await h.produce(records)
            h.start_sink()

            # Day one: the quota runs out, Marketo answers 607, the sink parks B.
            await wait_for(lambda: limiter.parked_until is not None, 30, "B parked on 607")
            assert sb.call_count(code="607", munchkin_id=B) >= 1
            parked_at = await decided(h, B)
            assert parked_at < want, "records wait, parked"
            assert not any(o.status == "failed" for o in await h.outcomes())

            # Each time B is parked, move the clock past the reset it waits for: delayed, never failed.
            async def done_or_parked() -> bool:
                return limiter.parked_until is not None or want <= await decided(h, B)

            days = 1
            while not want <= await decided(h, B):
                reset = limiter.parked_until
                assert reset is not None
                clock.set(reset.timestamp() + 1.0)
                days += 1
                assert days <= 20, "the backlog fits in a few quota days"
                await wait_for(lambda r=reset: limiter.parked_until != r, 30, "B resumed after the reset")
                await wait_for(done_or_parked, 30, "B parked again or every record decided")

            final = {o.op_id: o for o in await h.outcomes() if o.munchkin_id == B}
            failed = {k: (o.reason_code, o.reason) for k, o in final.items() if o.status == "failed"}
            assert not failed, failed
            assert set(final) == want
            assert_sandbox_holds_exactly(sb, B, n)  # every parked record delivered, none twice
            # One park per quota day, over several days (7 at the time of writing).
            assert days >= 4 and limiter.stats().quota_parks == days - 1, (days, limiter.stats())
            assert sb.call_count(code="607", munchkin_id=B) >= days - 1

