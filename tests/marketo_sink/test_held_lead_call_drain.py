"""A stop does not abandon a lead call the Marketo client holds by its replay delay (worker.py ``stop``).

The client replays a Sync Leads call Marketo may still be processing (here a 604) no earlier than
``KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS`` after its send (docs/reference/marketo-api.md §5.1). A revocation or
a graceful stop in that wait used to abandon the window after ``sink_drain_timeout_seconds``, and the partition's
next owner upserted the email at once, while the first request was still in process: with the sandbox's
``apply_after_seconds`` fault (the 604 answered at once, the call applied ``LATE`` seconds later with the lookups it
made on arrival), two leads for one email. Now the revoking sink waits for the replay's answer, publishes the
outcome and commits the offset itself: one lead, two Sync Leads requests (the first and the replay), one outcome.

Real broker, real sandbox over HTTP, real time: the replay delay is ``DELAY`` seconds, the ordinary drain 1 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from kmsync_marketo.client import MarketoClient
from kmsync_marketo.settings import MarketoSettings
from kmsync_sink.service import MarketoSink
from kmsync_sink.settings import SinkSettings
from kmsync_sink.writer import MarketoWriter
from kmsync_testing.waiting import wait_for
from marketo_sandbox.config import BehaviourConfig, InstanceConfig
from marketo_sandbox.testing import running_sandbox

from .test_sink_integration import A, Harness, committed_to_the_end, harness, sandbox_instances, tenants_for

pytestmark = pytest.mark.timeout(120)

SYNC = "POST /rest/v1/leads.json"
#: The client replays the 604'd call this long after its send ...
DELAY = 15.0
#: ... and the sandbox applies the first request this long after answering it: after the next owner's replay
#: (a rebalance and a catch-up take a few seconds), before the held call's own replay.
LATE = 12.0
EMAIL = "held@example.com"
#: The sandbox answers a slow Sync Leads request this long after it arrives (longer than the ordinary drain, 1 s).
SLOW = 5.0


def _sink_stats(sink: MarketoSink) -> dict[str, int]:
    worker = sink.workers.get(A)
    if worker is None:
        return {}
    assert isinstance(worker.writer, MarketoClient)
    return worker.writer.transport.stats.retry_reasons


def _lead_writes_in_process(sink: MarketoSink) -> int:
    worker = sink.workers.get(A)
    if worker is None:
        return 0
    assert isinstance(worker.writer, MarketoClient)
    return worker.writer.transport.stats.lead_writes_in_process


async def _held(h: Harness, ops: Any) -> tuple[MarketoSink, str]:
    """A sink whose lead call for EMAIL is held by the replay delay after a 604 (Marketo still runs it)."""
    first = h.start_sink(sink_drain_timeout_seconds=1.0)
    op = ops.lead(EMAIL, munchkin=A, op_id="held-lead", firstName="Held")
    await h.produce([op])
    await wait_for(lambda: _sink_stats(first).get("in_process") == 1, 30, "the lead call held after its 604")
    return first, op.op_id


def _published(sink: MarketoSink) -> float:
    """Outcomes the sink published (``kmsync_sink_outcomes``)."""
    return sum(s.value for m in sink.metrics.outcomes.collect() for s in m.samples if s.name.endswith("_total"))


async def _assert_one_lead_decided_once(h: Harness, op_id: str) -> None:
    await h.sandbox.sandbox.settle_late_calls()
    assert len(h.sandbox.instance(A).leads_by_email(EMAIL)) == 1, "one lead: nobody upserted it while it ran"
    syncs = [r for r in h.sandbox.requests(A) if r["endpoint"] == SYNC]
    assert len(syncs) == 2, "the first request and its replay by the sink that held it; no replay by another"
    outcomes = [o for o in await h.outcomes() if o.op_id == op_id]
    assert [o.status for o in outcomes] == ["updated"], "decided once, by the replay after the late write"


async def test_a_revocation_waits_for_the_held_lead_call_and_commits_it(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS", str(DELAY))  # the clients' and the sinks'
    faults = {"rules": [{"endpoint": SYNC, "error": "604", "apply_after_seconds": LATE, "max_count": 1}]}
    async with running_sandbox(instances=sandbox_instances(A), faults=faults) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            first, op_id = await _held(h, ops)
            second = h.start_sink(sink_drain_timeout_seconds=1.0)  # joins: the first's partitions are revoked
            await wait_for(lambda: bool(second.state.assigned), 60, "the rebalance completed")
            await h.wait_for_outcomes({op_id})
            await _assert_one_lead_decided_once(h, op_id)
            assert await committed_to_the_end(h), "the revoking sink committed the held call's record"
            assert _published(first) == 1, "the outcome is the revoking sink's"


async def test_a_graceful_stop_waits_for_the_held_lead_call_and_commits_it(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS", str(DELAY))
    faults = {"rules": [{"endpoint": SYNC, "error": "604", "apply_after_seconds": LATE, "max_count": 1}]}
    async with running_sandbox(instances=sandbox_instances(A), faults=faults) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            first, op_id = await _held(h, ops)
            caplog.set_level("WARNING", logger="kmsync_sink.worker")
            await h.stop_sink(first)
            extended = [r.getMessage() for r in caplog.records if "the drain is extended" in r.getMessage()]
            assert len(extended) == 1 and f"extended by up to {DELAY:.1f}s" in extended[0], extended
            assert await committed_to_the_end(h), "the stopping sink committed the held call's record"
            assert _published(first) == 1
            await _assert_one_lead_decided_once(h, op_id)


async def test_a_graceful_stop_waits_for_a_lead_call_whose_request_is_not_answered_yet(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Sync Leads request on the wire at the drain deadline may be running at Marketo as much as a held one: the
    drain waits for its answer too (the client's ``CallStats.lead_writes_in_process`` counts it) instead of leaving
    its emails to the next owner after the ordinary 1 s."""
    monkeypatch.setenv("KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS", str(DELAY))
    faults = {"rules": [{"endpoint": SYNC, "latency_seconds": SLOW, "max_count": 1}]}
    async with running_sandbox(instances=sandbox_instances(A), faults=faults) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            first = h.start_sink(sink_drain_timeout_seconds=1.0)
            op = ops.lead(EMAIL, munchkin=A, op_id="slow-lead", firstName="Slow")
            await h.produce([op])
            await wait_for(lambda: _lead_writes_in_process(first) == 1, 30, "the Sync Leads request on the wire")
            caplog.set_level("WARNING", logger="kmsync_sink.worker")
            await h.stop_sink(first)
            extended = [r.getMessage() for r in caplog.records if "the drain is extended" in r.getMessage()]
            assert len(extended) == 1, extended
            assert await committed_to_the_end(h), "the stopping sink committed the slow call's record"
            assert _published(first) == 1
            assert [o.status for o in await h.outcomes() if o.op_id == op.op_id] == ["created"]


def _counting_sink(h: Harness, sent: list[str], **overrides: Any) -> MarketoSink:
    """A sink whose Marketo clients note every Sync Leads request they put on the wire in ``sent`` (an httpx request
    hook: it runs as the request is sent, never for a request that is not)."""

    async def note(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/rest/v1/leads.json"):  # SYNC
            sent.append(request.url.path)

    def writer(settings: MarketoSettings) -> MarketoWriter:
        client = h.writer(settings)
        assert isinstance(client, MarketoClient)
        client.transport.http.event_hooks = {"request": [note], "response": []}
        return client

    sink = MarketoSink(h.settings(**overrides), h.tenants, writer_factory=writer)
    h.sinks.append(sink)
    h.sink_tasks.append(asyncio.create_task(sink.run(asyncio.Event())))
    return sink


async def test_an_extended_drain_sends_no_new_lead_request_and_ends_once_none_is_in_process(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The window of an extended drain may still start a Sync Leads request: here the 1021 company fallback's second
    request, once the first is answered (9 s after its send, 8 s into the extension). Sent, it would still be on the
    wire at the extended deadline (1 s + 15 s) and be abandoned while Marketo may run it, and the next owner would
    upsert the email again. The client sends it no more: it waits unsent, and with nothing left in process the window
    is abandoned at once, its record neither decided nor committed (the next owner replays it)."""
    monkeypatch.setenv("KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS", str(DELAY))
    refusing = InstanceConfig(munchkin_id=A, preset="kaltura", behaviour=BehaviourConfig(company_update_refused=True))
    faults = {"rules": [{"endpoint": SYNC, "latency_seconds": 9, "max_count": 2}]}
    async with running_sandbox(instances=[refusing], faults=faults) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            sent: list[str] = []
            first = _counting_sink(h, sent, sink_drain_timeout_seconds=1.0)
            op = ops.lead(EMAIL, munchkin=A, op_id="company-lead", company="Acme")
            await h.produce([op])
            await wait_for(lambda: _lead_writes_in_process(first) == 1, 30, "the first Sync Leads request on the wire")
            caplog.set_level("WARNING")
            await h.stop_sink(first)
            messages = [r.getMessage() for r in caplog.records]
            assert any("the drain is extended" in m for m in messages), messages
            assert len(sent) == 1, "the company fallback's second request never went on the wire"
            assert any("not sent, lead writes are stopped" in m for m in messages), "the fallback's request waited"
            assert any("waits for a Sync Leads request that was not sent" in m for m in messages), messages
            assert _published(first) == 0, "no outcome, failed or not: the record is the next owner's"
            assert not await committed_to_the_end(h), "not committed: the next owner replays it"


def test_the_rebalance_timeout_covers_a_drain_that_waits_out_the_replay_delay() -> None:
    s = SinkSettings(sink_drain_timeout_seconds=20.0, marketo_ambiguous_replay_delay_seconds=90.0)
    assert (s.longest_drain_seconds, s.rebalance_timeout_seconds, s.request_timeout_seconds) == (110.0, 120.0, 125.0)
    off = SinkSettings(sink_drain_timeout_seconds=20.0, marketo_ambiguous_replay_delay_seconds=0.0)
    assert (off.rebalance_timeout_seconds, off.request_timeout_seconds) == (30.0, 40.0)


def test_the_sink_reads_the_replay_delay_its_marketo_clients_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS", "42")
    assert SinkSettings().marketo_ambiguous_replay_delay_seconds == 42.0


def test_a_drain_longer_than_the_consumers_max_poll_interval_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        SinkSettings(sink_drain_timeout_seconds=20.0, marketo_ambiguous_replay_delay_seconds=280.0)
    message = str(err.value)
    assert "sink_drain_timeout_seconds (20) + marketo_ambiguous_replay_delay_seconds (280) + 10 s = 310 s" in message
    assert "must be ≤ 300 s" in message and "KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS" in message
    SinkSettings(sink_drain_timeout_seconds=20.0, marketo_ambiguous_replay_delay_seconds=270.0)  # 300 s: accepted
