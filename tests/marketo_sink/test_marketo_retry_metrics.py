"""The Marketo client's retries are on the sink's /metrics while they happen: a sink end to end (real Kafka,
the Marketo sandbox over HTTP on 127.0.0.1) whose calls meet one fault of each retry reason.

A lane held by the client's retries (the replay delay of an ambiguous lead write above all) used to show only
in WARNING logs: the window holding it has not ended, so nothing per window tells it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiohttp import web

from kmsync_common.metrics_text import sample_sum
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.settings import MarketoSettings, RetrySettings
from kmsync_marketo.transport import CallStats
from kmsync_sink.cli import http_app
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.service import MarketoSink
from kmsync_sink.writer import MarketoWriter
from kmsync_testing.waiting import wait_for
from marketo_sandbox.testing import SandboxHandle, running_sandbox

from .test_sink_integration import A, B, Harness, harness, lifted_instance, lifted_tenants, scenario

pytestmark = pytest.mark.timeout(120)

#: KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS of the test's client: a 604 on a lead write holds it this long.
REPLAY_DELAY = 2.0

FAULTS: dict[str, Any] = {"rules": [
    # The first lead write: 604 (Marketo may still run it) -> replayed REPLAY_DELAY after its send (in_process),
    # 604 again -> out of attempts, its failure returned REPLAY_DELAY after that send (in_process_hold).
    {"endpoint": "POST /rest/v1/leads.json", "error": "604", "max_count": 2},
    {"endpoint": "POST /rest/v1/customobjects/*", "error": "611", "max_count": 1},  # backoff
    {"endpoint": "POST /rest/v1/activities/external.json", "error": "606", "max_count": 1},  # throttle
]}


class _Writers:
    """The harness's client settings with two attempts per call, the test's replay delay, and every token
    of the instance expired just before the first member status call is sent (a re-authentication)."""

    def __init__(self, h: Harness, sb: SandboxHandle) -> None:
        self.h, self.sb = h, sb
        self.expire = 1
        self.http: list[httpx.AsyncClient] = []

    async def _before_send(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/members/status.json") and self.expire:
            self.expire -= 1
            self.sb.expire_tokens(A)

    def __call__(self, s: MarketoSettings) -> MarketoWriter:
        http = httpx.AsyncClient(timeout=10.0, event_hooks={"request": [self._before_send]})
        self.http.append(http)
        s = s.model_copy(update={
            "token_refresh_margin_seconds": 0.3,
            "retry": RetrySettings(max_attempts=2, backoff_base_seconds=0.01, backoff_max_seconds=0.05,
                                   ambiguous_replay_delay_seconds=REPLAY_DELAY),
            "limits": s.limits.model_copy(update={"throttle_pause_base_seconds": 0.2,
                                                  "throttle_pause_max_seconds": 1.0}),
        })
        return MarketoClient(s, limiters=self.h.limiters, token_registry=self.h.tokens, http=http)

    async def aclose(self) -> None:
        for http in self.http:
            await http.aclose()


async def test_the_clients_retries_show_on_metrics_by_reason_while_a_lane_is_held(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_sandbox(instances=lifted_instance(), faults=FAULTS) as sb:
        async with harness(kafka_broker, topic_prefix, sb, lifted_tenants(sb, monkeypatch)) as h:
            writers = _Writers(h, sb)
            sink = MarketoSink(h.settings(), h.tenants, writer_factory=writers)
            runner = web.AppRunner(http_app(sink), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}") as scrape:

                    async def metric(name: str, **labels: str) -> float:
                        text = (await scrape.get("/metrics")).text
                        return sample_sum(text, name, {"munchkin_id": A, **labels})

                    batch = scenario(ops, A, 3)
                    await h.produce(batch)
                    h.sinks.append(sink)
                    h.sink_tasks.append(asyncio.create_task(sink.run(asyncio.Event())))

                    # While the lead write waits out its replay delay, its window (and every write of those
                    # leads) is held; the scrape tells why.
                    await wait_for(lambda: metric("kmsync_sink_marketo_retries_total", reason="in_process"), 30,
                                   "the in_process retry on /metrics")
                    leads = {op.op_id for op in batch if op.kind == "lead_upsert"}
                    assert not leads & {o.op_id for o in await h.outcomes()}, "scraped while the leads are held"

                    final = await h.wait_for_outcomes({op.op_id for op in batch})
                    assert {o.status for o in final.values()} <= {"created", "updated"}, final
                    assert sb.call_count(code="604", munchkin_id=A) == 2
                    assert sb.call_count(code="611", munchkin_id=A) == 1
                    assert sb.call_count(code="606", munchkin_id=A) == 1
                    dead_tokens = sb.call_count(code="602", munchkin_id=A) + sb.call_count(code="601", munchkin_id=A)
                    assert writers.expire == 0 and dead_tokens >= 1

                    assert await metric("kmsync_sink_marketo_retries_total", reason="in_process") == 1
                    assert await metric("kmsync_sink_marketo_in_process_holds_total") == 1
                    # The replay and the returned failure each waited about REPLAY_DELAY beyond the backoff.
                    assert await metric("kmsync_sink_marketo_replay_delay_seconds_total") > REPLAY_DELAY
                    assert await metric("kmsync_sink_marketo_retries_total", reason="throttle") == 1
                    # Each dead token is re-authenticated once; a second in a row within one attempt would
                    # be backed off instead (none expected: one expiry).
                    reauths = await metric("kmsync_sink_marketo_reauths_total")
                    assert reauths == dead_tokens
                    assert await metric("kmsync_sink_marketo_retries_total", reason="backoff") == 1
                    assert await metric("kmsync_sink_marketo_retries_total") == 3
            finally:
                await runner.cleanup()
                for s in list(h.sinks):
                    await h.stop_sink(s)
                h.sinks.clear()
                await writers.aclose()


class _Client:
    """What the sink's metrics read of a writer: ``transport.stats``."""

    def __init__(self) -> None:
        self.transport = self
        self.stats = CallStats()


def test_a_scrape_adds_what_the_client_counted_since_the_last_and_a_new_client_counts_from_zero() -> None:
    metrics = SinkMetrics()

    def retries(reason: str) -> float | None:
        return metrics.registry.get_sample_value("kmsync_sink_marketo_retries_total",
                                                 {"munchkin_id": A, "reason": reason})

    first = _Client()
    metrics.watch_client(A, first)
    metrics.watch_client(A, first)  # the instance's other lane: the same client
    assert retries("backoff") == retries("in_process") == retries("throttle") == 0  # series from the start
    first.stats.retry_reasons.update(backoff=2, in_process=1, throttle=1)
    assert (retries("backoff"), retries("in_process"), retries("throttle")) == (2, 1, 1)
    assert (retries("backoff"), retries("in_process"), retries("throttle")) == (2, 1, 1)  # not again
    # The first client counts on after that scrape, then a new client replaces it (the instance came back after a
    # rebalance): what the first counted in between is kept (review of d9e39ff), and the new one's counts add on.
    first.stats.retry_reasons["in_process"] = 2
    second = _Client()
    second.stats.retry_reasons["backoff"] = 1
    metrics.watch_client(A, second)
    assert (retries("backoff"), retries("in_process"), retries("throttle")) == (3, 2, 1)
    metrics.watch_client(B, object())  # a writer without call statistics exports nothing
    assert metrics.registry.get_sample_value("kmsync_sink_marketo_reauths_total", {"munchkin_id": B}) is None
