"""Live and backfill lanes through the sink (issue #18): a real broker, the Marketo sandbox at Marketo's
real limits. A big backfill and a live trickle share one instance: live outcomes are never queued behind
the backfill, the backfill stays within its share of every rolling window (the sandbox's request log),
and an older backfill value never overwrites a newer live one."""

from __future__ import annotations

import bisect
from datetime import timedelta
from typing import Any

import pytest

from kmsync_contracts import encode
from kmsync_contracts.marketo_ops import MarketoOperation
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import MARKETO_OPS_BACKFILL
from kmsync_kafka.clients import ensure_topics, reliable_producer, topic_name
from kmsync_testing.waiting import wait_for
from marketo_sandbox.testing import running_sandbox

from .conftest import T0
from .test_sink_integration import A, Harness, harness, sandbox_instances, tenants_for

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]

BACKFILL_DOMAIN = "@history.example"


async def produce_backfill(h: Harness, ops: list[MarketoOperation]) -> None:
    producer = reliable_producer(h.bootstrap)
    await producer.start()
    try:
        topic = topic_name(MARKETO_OPS_BACKFILL, h.prefix)
        futs = [await producer.send(topic, encode(op), key=op.munchkin_id.encode()) for op in ops]
        for f in futs:
            await f
    finally:
        await producer.stop()


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


async def test_live_is_not_queued_behind_a_backfill_which_keeps_to_its_share(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_backfill = 6_000  # lead upserts with data, bulk off: 20 REST calls of 300
    async with running_sandbox(instances=sandbox_instances(A)) as sb:
        tenants = tenants_for(sb, monkeypatch, {"alpha": {
            "munchkin_id": A, "endpoint": sb.instance_url(A), "client_id": sb.client_id,
            "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}, "share": 0.5, "backfill_share": 0.25,
            "bulk_min_records": 0}})
        async with harness(kafka_broker, topic_prefix, sb, tenants) as h:
            await ensure_topics(h.bootstrap, (MARKETO_OPS_BACKFILL,), h.prefix, partitions=3)
            old_value = ops.obj(f"shared{BACKFILL_DOMAIN}", munchkin=A, op_id="bf-shared", plays=1)
            backfill = [ops.lead(f"h{i}{BACKFILL_DOMAIN}", munchkin=A, op_id=f"bf-{i}", firstName="H")
                        for i in range(n_backfill)] + [old_value]
            await produce_backfill(h, backfill)
            sink = h.start_sink(window_max_records=300, window_max_age_seconds=0.5)
            backfill_ids = {op.op_id for op in backfill}

            async def backfill_started() -> bool:
                return any(o.op_id in backfill_ids for o in await h.outcomes())

            await wait_for(backfill_started, 60, "the backfill's first outcomes")
            # A live trickle arrives while the backfill is under way; one of its records is the backfill's
            # last one, with a value transform emitted later (newer).
            live = [ops.lead(f"l{i}@live.example", munchkin=A, op_id=f"live-lead-{i}", firstName="L")
                    for i in range(10)]
            live += [ops.status(f"l{i}@live.example", "Registered", munchkin=A, op_id=f"live-reg-{i}")
                     for i in range(10)]
            new_value = ops.obj(f"shared{BACKFILL_DOMAIN}", munchkin=A, op_id="live-shared", plays=2).model_copy(
                update={"emitted_at": T0 + timedelta(minutes=5)})
            live.append(new_value)
            await h.produce(live)
            final = await h.wait_for_outcomes({op.op_id for op in live})
            assert {o.status for o in final.values()} <= {"created", "updated"}, final
            decided_backfill = sum(1 for o in await h.outcomes() if o.op_id in backfill_ids)
            # Live went through while most of the backfill was still waiting for its share of the budget.
            assert decided_backfill <= n_backfill // 2, decided_backfill

            final = await h.wait_for_outcomes(backfill_ids, within=90)
            assert sum(1 for i, o in final.items() if i in backfill_ids and o.status in ("created", "updated")) \
                == n_backfill
            shared = final["bf-shared"]
            assert (shared.status, shared.reason_code) == ("skipped", ReasonCode.SUPERSEDED), shared
            stored = sb.dump(A)["customObjects"]["kalturaUserSessionEngagement"]
            assert [int(r["plays"]) for r in stored if r["email"] == f"shared{BACKFILL_DOMAIN}"] == [2]

            # The sandbox's request log: the backfill's write calls within its share of every 20 s.
            limiter = sink.workers[A].writer.limiter
            cap = limiter.backfill_window_limit
            assert cap == 10  # 0.25 of (100 × 0.5 − 10 headroom)
            writes = [r["at"] for r in sb.requests(A)
                      if r["method"] == "POST" and BACKFILL_DOMAIN in r["body"] and "leads.json" in r["path"]]
            assert len(writes) >= n_backfill // 300
            assert most_in_any_window(writes, 20.0) <= cap, writes
            # kmsync_sink_marketo_calls_total tells the lanes apart: the backfill's lead calls under lane="backfill".
            lanes = {s.labels["lane"]: s.value for m in sink.metrics.calls.collect() for s in m.samples
                     if s.name.endswith("_total") and s.labels["marketo_endpoint"] == "leads"}
            assert lanes.get("backfill", 0) >= n_backfill // 300 and lanes.get("live", 0) >= 1, lanes
            assert sb.call_count(code="606", munchkin_id=A) == 0
