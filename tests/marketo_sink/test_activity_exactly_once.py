"""Custom activities are insert-only: the sink writes each exactly once under ambiguous answers,
replayed copies and a kill -9 (real Kafka, the Marketo sandbox over HTTP on 127.0.0.1).

An activity the sink may have written without learning it (an ambiguous answer, a kill before the
outcome reached Kafka) keeps its intent on marketo.activity-intents.v1 and is looked up in the lead's
activity log (GET /rest/v1/activities.json) before it is ever sent again.
"""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from typing import Any

import pytest

from kmsync_common.metrics_text import sample_sum
from kmsync_contracts import RecordOutcome
from kmsync_contracts.marketo_ops import MarketoOperation
from kmsync_testing.processes import free_port
from kmsync_testing.waiting import wait_for
from marketo_sandbox.preset_kaltura import ACTIVITY_TYPE_ID
from marketo_sandbox.testing import SandboxHandle, running_sandbox

from .conftest import ensure_dead, sink_process, sink_process_env
from .test_sink_integration import (
    A,
    assert_sandbox_holds_exactly,
    committed_to_the_end,
    harness,
    lifted_instance,
    lifted_tenants,
    sandbox_instances,
    scenario,
    tenants_for,
)

pytestmark = pytest.mark.timeout(120)
ACTIVITIES_POST = "POST /rest/v1/activities/external.json"
ACTIVITIES_GET = "GET /rest/v1/activities.json"


def latest(outcomes: list[RecordOutcome]) -> dict[str, RecordOutcome]:
    final: dict[str, RecordOutcome] = {}
    for o in outcomes:
        final[o.op_id] = o
    return final


def applied_then_failed(sb: SandboxHandle) -> int:
    return sum(n for kind, n in sb.fault_stats(A)["by_kind"].items() if kind.startswith("applied_then_failed:"))


def activities_in_marketo(sb: SandboxHandle) -> list[dict[str, Any]]:
    return [a for a in sb.dump(A)["activities"] if a["activityTypeId"] == ACTIVITY_TYPE_ID]



def held_work(port: int) -> tuple[float, float]:
    """The sink process's (kmsync_sink_undecided_records, kmsync_sink_activities_awaiting_verification);
    (-1, -1) while it is not serving."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return -1.0, -1.0
    return (sample_sum(text, "kmsync_sink_undecided_records"),
            sample_sum(text, "kmsync_sink_activities_awaiting_verification"))


async def test_ambiguous_answers_and_a_second_copy_of_every_op_write_each_activity_once(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Most activities calls are applied by Marketo and then answered with an error (604, 611, HTTP
    500, a dropped connection), some fail before any work (604 not applied); transform re-emits every
    operation under the same op_id (as after each of its restarts). Every activity is in Marketo
    exactly once, every operation ends written, and only uncertain activities were read back."""
    n = 80
    rule = {"endpoint": ACTIVITIES_POST, "rate": 0.6}
    faults = {"rules": [
        {**rule, "error": "604", "apply_then_fail": True, "max_count": 3},
        {**rule, "error": "http_500", "apply_then_fail": True, "max_count": 2},
        {**rule, "error": "drop", "apply_then_fail": True, "max_count": 2},
        {**rule, "error": "611", "apply_then_fail": True, "max_count": 2},
        {**rule, "error": "604", "max_count": 2},  # not applied: verified absent, then sent
    ]}
    async with running_sandbox(instances=lifted_instance(), faults=faults) as sb:
        async with harness(kafka_broker, topic_prefix, sb, lifted_tenants(sb, monkeypatch)) as h:
            first = scenario(ops, A, n)
            await h.produce(first)
            # Windows of 60 over REST (bulk never: the windows' size is what spreads the faults over calls).
            h.start_sink(window_max_records=60, window_max_age_seconds=0.2, bulk_min_records=0,
                         sink_activity_verify_delay_seconds=0.2)
            await h.wait_for_outcomes({op.op_id for op in first[: len(first) // 2]}, within=60)
            again: list[MarketoOperation] = list(first)  # transform's second copy, same op_ids
            await h.produce(again)
            await wait_for(lambda: committed_to_the_end(h), 90, "every copy decided and committed")
            await h.wait_for_outcomes({op.op_id for op in first})
            every = await h.outcomes()
            final = latest(every)
            failed = {k: (v.reason_code, v.reason) for k, v in final.items() if v.status == "failed"}
            assert not failed, failed
            assert_sandbox_holds_exactly(sb, A, n)
            assert applied_then_failed(sb) >= 5, sb.fault_stats(A)
            acts = [op.op_id for op in first if op.kind == "custom_activity"]
            verified = {o.op_id for o in every if o.reason_code == "kmsync.verified_written"}
            assert verified, "some activities were found in Marketo instead of being sent again"
            assert {final[a].status for a in acts} <= {"created", "skipped"}
            # Reads only for uncertain activities: at most one per ambiguous or failed call, a few pages each.
            reads = sb.call_count(ACTIVITIES_GET, munchkin_id=A)
            assert 1 <= reads <= 4 * sb.fault_stats(A)["total"], (reads, sb.fault_stats(A))


async def test_sigkill_after_marketo_applied_an_activity_call_writes_it_once_after_restart(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """`kmsync sink` as a process. Marketo applies its activities call and the answer never arrives
    (the connection drops after the write); the sink holds the activities undecided (their look-up
    waits for the verification delay, an hour here), so no final outcome is on Kafka, and it is
    killed with SIGKILL. The restarted sink finds their intents, reads the leads' activity logs,
    records them as written with Marketo's ids, and sends nothing again."""
    faults = {"rules": [{"endpoint": ACTIVITIES_POST, "error": "drop", "apply_then_fail": True, "max_count": 1}]}
    async with running_sandbox(instances=sandbox_instances(A), faults=faults) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            port = free_port()
            env = sink_process_env(sb, A, h.bootstrap, topic_prefix, h.group, tmp_path,
                                   window_max_age_seconds="0.3", sink_commit_interval_seconds="3600",
                                   sink_activity_verify_delay_seconds="3600", http_port=str(port))
            batch = scenario(ops, A, 10)
            await h.produce(batch)
            acts = {op.op_id for op in batch if op.kind == "custom_activity"}
            proc = await sink_process(env)
            try:
                await wait_for(lambda: applied_then_failed(sb) == 1, 60, "Marketo applied the activities call")
                await wait_for(lambda: len(activities_in_marketo(sb)) == len(acts), 10, "the activities written")
                # The rest of the window is decided; the activities are not (no final outcome on Kafka).
                others = {op.op_id for op in batch} - acts
                await h.wait_for_outcomes(others, within=30)
                assert not {o.op_id for o in await h.outcomes() if o.status != "failed"} & acts
                # An operator sees them held, not lost: the sink's gauges count them until verified.
                await wait_for(lambda: held_work(port) == (len(acts), len(acts)), 10,
                               "the held activities on /metrics, undecided and awaiting verification")
                proc.send_signal(signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 30)
            finally:
                await ensure_dead(proc)
            h.results.seen.clear()  # from here on: the restarted sink's outcomes only
            env.update({"KMSYNC_SINK_ACTIVITY_VERIFY_DELAY_SECONDS": "0.2", "KMSYNC_SINK_COMMIT_INTERVAL_SECONDS": "1"})
            proc = await sink_process(env)
            try:
                final = await h.wait_for_outcomes({op.op_id for op in batch})
                await wait_for(lambda: committed_to_the_end(h), 30, "everything committed")
                await wait_for(lambda: held_work(port) == (0, 0), 10, "nothing held once all is decided")
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 60) == 0
            finally:
                await ensure_dead(proc)
            assert all(o.status != "failed" for o in final.values()), final
            assert_sandbox_holds_exactly(sb, A, 10)
            stored = {str(a["marketoGUID"]) for a in activities_in_marketo(sb)}
            assert {(final[i].status, final[i].reason_code) for i in acts} == {("created", "kmsync.verified_written")}
            assert {final[i].marketo_id for i in acts} == stored, "Marketo's own ids recorded"
            assert sb.call_count(ACTIVITIES_POST, munchkin_id=A) == 1, "never sent again"
            assert sb.call_count(ACTIVITIES_GET, munchkin_id=A) >= 1
