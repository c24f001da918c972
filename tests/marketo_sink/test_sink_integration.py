"""The sink end to end: real Kafka (KRaft), the Marketo sandbox over HTTP on 127.0.0.1, faults on.

Each test builds its own topics (unique prefix), consumer group, sandbox and client registries, and
stops everything it started. Waiting is always polling a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import generate_latest

from kmsync_common.email_hash import configure_email_hash_key, hash_email
from kmsync_common.metrics_text import sample_sum
from kmsync_config.tenants import TenantsConfig, parse_tenants
from kmsync_contracts import DeadLetter, RecordOutcome, encode
from kmsync_contracts.codecs import decode_model
from kmsync_contracts.marketo_ops import MarketoOperation
from kmsync_contracts.topics import MARKETO_DLQ, MARKETO_OPS, MARKETO_OPS_BACKFILL, MARKETO_RESULTS, TopicSpec
from kmsync_kafka.clients import ensure_topics, reliable_producer, topic_name
from kmsync_kafka.reading import topic_partitions
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.from_config import settings_from_instance
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import BulkSettings, MarketoSettings, RetrySettings
from kmsync_sink import dlq_cli
from kmsync_sink.service import MarketoSink
from kmsync_sink.settings import SinkSettings
from kmsync_sink.writer import MarketoWriter
from kmsync_testing.waiting import wait_for
from marketo_sandbox.config import InstanceConfig, LimitsConfig
from marketo_sandbox.preset_kaltura import ACTIVITY_TYPE_ID
from marketo_sandbox.testing import SandboxHandle, running_sandbox

from .conftest import ensure_dead, sink_process, sink_process_env

pytestmark = pytest.mark.timeout(120)

A, B, C, D = "111-AAA-111", "222-BBB-222", "333-CCC-333", "444-DDD-444"
WRITE_ENDPOINTS = ("leads.json", "members/status.json", "customobjects/", "activities/external.json")


@dataclass
class TopicReader:
    bootstrap: str
    topic: str
    seen: list[bytes] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                          auto_offset_reset="earliest", enable_auto_commit=False)
        await self._consumer.start()
        self._consumer.assign(await topic_partitions(self._consumer, self.topic))
        await self._consumer.seek_to_beginning()

    async def poll(self) -> None:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=100)
        for msgs in batch.values():
            self.seen += [m.value for m in msgs if m.value is not None]

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


@dataclass
class Harness:
    bootstrap: str
    prefix: str
    sandbox: SandboxHandle
    tenants: TenantsConfig
    group: str
    limiters: LimiterRegistry = field(default_factory=LimiterRegistry)
    tokens: TokenRegistry = field(default_factory=TokenRegistry)
    results: TopicReader | None = None
    dlq: TopicReader | None = None
    sink_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    sinks: list[MarketoSink] = field(default_factory=list)

    def writer(self, s: MarketoSettings) -> MarketoWriter:
        # Fast retries and token refreshes for tests; limits stay the real ones.
        s = s.model_copy(update={
            "token_refresh_margin_seconds": 0.3,
            "http_timeout_seconds": 10.0,
            "retry": RetrySettings(max_attempts=8, backoff_base_seconds=0.05, backoff_max_seconds=0.5),
            "bulk": BulkSettings(poll_initial_seconds=0.1, poll_max_seconds=0.3, poll_timeout_seconds=30),
            "limits": s.limits.model_copy(update={"throttle_pause_base_seconds": 0.2,
                                                  "throttle_pause_max_seconds": 1.0,
                                                  "throttle_min_fraction": 0.5,
                                                  "recover_interval_seconds": 1.0}),
        })
        return MarketoClient(s, limiters=self.limiters, token_registry=self.tokens)

    def settings(self, **overrides: Any) -> SinkSettings:
        base: dict[str, Any] = dict(
            kafka_bootstrap=self.bootstrap, topic_prefix=self.prefix, sink_group_id=self.group,
            window_max_age_seconds=0.5, retry_base_seconds=0.05, retry_max_seconds=0.5,
            sink_drain_timeout_seconds=30.0, sink_commit_interval_seconds=0.2,
        )
        base.update(overrides)
        return SinkSettings(**base)

    def start_sink(self, **overrides: Any) -> MarketoSink:
        sink = MarketoSink(self.settings(**overrides), self.tenants, writer_factory=self.writer)
        task = asyncio.create_task(sink.run(asyncio.Event()))
        self.sinks.append(sink)
        self.sink_tasks.append(task)
        return sink

    async def stop_sink(self, sink: MarketoSink) -> None:
        task = self.sink_tasks[self.sinks.index(sink)]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def produce(self, ops: list[MarketoOperation], spec: TopicSpec = MARKETO_OPS) -> None:
        producer = reliable_producer(self.bootstrap)
        await producer.start()
        try:
            topic = topic_name(spec, self.prefix)
            futs = [await producer.send(topic, encode(op), key=op.munchkin_id.encode()) for op in ops]
            await asyncio.gather(*futs)
        finally:
            await producer.stop()

    async def outcomes(self) -> list[RecordOutcome]:
        assert self.results is not None
        await self.results.poll()
        return [decode_model(RecordOutcome, v) for v in self.results.seen]

    async def dead_letters(self) -> list[DeadLetter]:
        assert self.dlq is not None
        await self.dlq.poll()
        return [decode_model(DeadLetter, v) for v in self.dlq.seen]

    async def wait_for_outcomes(self, op_ids: set[str], within: float = 60.0) -> dict[str, RecordOutcome]:
        final: dict[str, RecordOutcome] = {}

        async def done() -> bool:
            for o in await self.outcomes():
                final[o.op_id] = o
            return op_ids <= set(final)

        await wait_for(done, within, f"outcomes for {len(op_ids)} operations")
        return final


def tenants_for(sb: SandboxHandle, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any] | None = None
                ) -> TenantsConfig:
    monkeypatch.setenv("KMSYNC_TEST_MARKETO_SECRET", sb.client_secret)
    instances: dict[str, Any] = {
        "alpha": {"munchkin_id": A, "endpoint": sb.instance_url(A), "client_id": sb.client_id,
                  "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}, "share": 0.5},
    }
    instances.update(extra or {})
    return parse_tenants({"marketo_instances": instances, "events": []}, check_secrets=False)


#: A lifted rate limit (calls per 20 s) for tests about faults, not the rolling window: at Marketo's
#: 100 (the sink's share 50) such a test spends most of its time waiting for the window to slide.
LIFTED_RATE = 400


def lifted_tenants(sb: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> TenantsConfig:
    """tenants_for with instance A on LIFTED_RATE (its sandbox made with lifted_instance())."""
    return tenants_for(sb, monkeypatch, {"alpha": {
        "munchkin_id": A, "endpoint": sb.instance_url(A), "client_id": sb.client_id, "share": 0.5,
        "rate_limit_calls": LIFTED_RATE, "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}}})


def lifted_instance() -> list[InstanceConfig]:
    return sandbox_instances(A, limits={A: LimitsConfig(rate_limit=LIFTED_RATE)})


def sandbox_instances(*munchkins: str, limits: dict[str, LimitsConfig] | None = None) -> list[InstanceConfig]:
    limits = limits or {}
    return [InstanceConfig(munchkin_id=m, preset="kaltura", **({"limits": limits[m]} if m in limits else {}))
            for m in munchkins]


@contextlib.asynccontextmanager
async def harness(kafka_broker: Any, topic_prefix: str, sb: SandboxHandle, tenants: TenantsConfig
                  ) -> AsyncIterator[Harness]:
    await ensure_topics(kafka_broker.bootstrap, (MARKETO_OPS, MARKETO_RESULTS, MARKETO_DLQ), topic_prefix,
                        partitions=3)
    h = Harness(kafka_broker.bootstrap, topic_prefix, sb, tenants, group=f"{topic_prefix}sink")
    h.results = TopicReader(h.bootstrap, topic_name(MARKETO_RESULTS, topic_prefix))
    h.dlq = TopicReader(h.bootstrap, topic_name(MARKETO_DLQ, topic_prefix))
    try:
        await h.results.start()
        await h.dlq.start()
        yield h
    finally:
        for sink in list(h.sinks):
            await h.stop_sink(sink)
        await h.results.stop()
        await h.dlq.stop()


async def committed_to_the_end(h: Harness) -> bool:
    """The sink's group committed every partition of the operations topic up to its log end."""
    probe = AIOKafkaConsumer(bootstrap_servers=h.bootstrap, group_id=h.group, enable_auto_commit=False)
    await probe.start()
    try:
        parts = await topic_partitions(probe, topic_name(MARKETO_OPS, h.prefix))
        ends = await probe.end_offsets(parts)
        committed = {tp: await probe.committed(tp) for tp in parts}
        return all((committed[tp] or 0) == ends[tp] for tp in parts)
    finally:
        await probe.stop()


def scenario(ops: Any, munchkin: str, n: int, tag: str = "") -> list[MarketoOperation]:
    """Per attendee: a lead upsert, Registered then Attended, an engagement object, an activity."""
    out: list[MarketoOperation] = []
    for i in range(n):
        email = f"user{i}{tag}@{munchkin.lower()}.example"
        out.append(ops.lead(email, munchkin=munchkin, op_id=f"{munchkin}-lead-{i}{tag}", firstName=f"U{i}"))
        out.append(ops.status(email, "Registered", munchkin=munchkin, op_id=f"{munchkin}-reg-{i}{tag}"))
        out.append(ops.obj(email, entry="1_keynote", munchkin=munchkin, op_id=f"{munchkin}-co-{i}{tag}",
                           plays=i % 7).model_copy(update={"dedupe_fields": ("entry_id", "personId")}))
        out.append(ops.activity(email, entry="1_keynote", munchkin=munchkin, op_id=f"{munchkin}-act-{i}{tag}"))
        if i % 3 == 0:
            out.append(ops.status(email, "Attended", munchkin=munchkin, op_id=f"{munchkin}-att-{i}{tag}"))
    return out


def assert_sandbox_holds_exactly(sb: SandboxHandle, munchkin: str, n: int, tags: tuple[str, ...] = ("",)) -> None:
    """The instance holds exactly what ``scenario(ops, munchkin, n, tag)`` for each tag describes."""
    dump = sb.dump(munchkin)
    emails = [ld["email"] for ld in dump["leads"]]
    want = {f"user{i}{tag}@{munchkin.lower()}.example": ("Attended" if i % 3 == 0 else "Registered")
            for tag in tags for i in range(n)}
    assert sorted(emails) == sorted(want), "every lead exactly once (no duplicates, none lost)"
    by_id = {ld["id"]: ld["email"] for ld in dump["leads"]}
    members = {by_id[m["leadId"]]: m["statusName"] for m in dump["programMembers"] if m["programId"] == 1001}
    assert members == want
    cos = dump["customObjects"].get("kalturaUserSessionEngagement", [])
    assert sorted(by_id[int(c["personId"])] for c in cos) == sorted(want), "one engagement object per lead"
    acts = [a for a in dump["activities"] if a["activityTypeId"] == ACTIVITY_TYPE_ID]
    assert sorted(by_id[a["leadId"]] for a in acts) == sorted(want), "one activity per lead, never twice"


async def test_backlog_goes_out_in_full_calls_without_tripping_limits(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 900
    async with running_sandbox(instances=sandbox_instances(A)) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            backlog = scenario(ops, A, n)
            await h.produce(backlog)
            sink = h.start_sink(window_max_age_seconds=2.0)
            final = await h.wait_for_outcomes({op.op_id for op in backlog})
            assert all(o.status in ("created", "updated") for o in final.values()), {
                o.reason_code for o in final.values()}
            assert_sandbox_holds_exactly(sb, A, n)
            summary = sb.calls(A)["by_endpoint"]
            write_calls = sum(count for ep, codes in summary.items() for count in codes.values()
                              if ep.startswith("POST") and any(w in ep for w in WRITE_ENDPOINTS))
            records = sum(s.value for m in sink.metrics.records_per_call.collect() for s in m.samples
                          if s.name.endswith("_sum"))
            assert records >= len(backlog) - n // 3  # Registered+Attended go in separate calls
            assert records / write_calls >= 290, (records, write_calls, summary)
            assert sb.call_count(code="606", munchkin_id=A) == 0
            assert sb.call_count(code="615", munchkin_id=A) == 0
            # The numbers an operator watches are exported.
            m = sink.metrics
            assert m.budget_used.labels(A, "daily")._value.get() >= write_calls
            assert sb.call_count("GET /rest/v1/stats/usage.json", munchkin_id=A) == 1, "usage read on start"
            assert m.calls.labels(A, "leads", "ok", "live")._value.get() >= 3
            latency = [s for s in m.latency.collect()[0].samples if s.name.endswith("_count")]
            assert sum(s.value for s in latency) == len(backlog)
            assert sum(s.value for s in m.outcomes.collect()[0].samples if s.name.endswith("_total")) == len(backlog)


async def test_outcomes_carry_the_correlation_keys_trace_finds_a_person_by(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #19: every outcome names the event, the session, the person (keyed hash, never the
    email), the lead id Marketo gave the person and the requestId of the call that carried it."""
    configure_email_hash_key(b"trace-test-key")
    try:
        async with running_sandbox(instances=sandbox_instances(A)) as sb:
            async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
                await ensure_topics(h.bootstrap, (MARKETO_OPS_BACKFILL,), h.prefix, partitions=3)
                backlog = scenario(ops, A, 4)
                history = scenario(ops, A, 2, tag="-history")  # through the backfill lane's worker
                await h.produce(backlog)
                await h.produce(history, spec=MARKETO_OPS_BACKFILL)
                h.start_sink()
                final = await h.wait_for_outcomes({op.op_id for op in backlog + history})
                lead_ids = {ld["email"]: ld["id"] for ld in sb.dump(A)["leads"]}
                for op in backlog + history:
                    o = final[op.op_id]
                    assert (o.partner_id, o.virtual_event_id) == (op.partner_id, op.virtual_event_id)
                    assert o.person_key == hash_email(op.email) and op.email not in o.model_dump_json()
                    assert o.lead_id == lead_ids[op.email], (op.kind, o)
                    assert o.request_id and "#" in o.request_id, (op.kind, o)
                    assert o.session_id == ("1_keynote" if op.kind in ("custom_object_upsert", "custom_activity")
                                            else None)
    finally:
        configure_email_hash_key(None)


async def test_faults_and_a_restart_mid_window_lose_nothing_and_duplicate_nothing(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 240
    # Rejections before any work (606, 615, expired tokens) hit every endpoint. Failures after which
    # the write may have been applied (604, 5xx, a dropped connection) hit the upserts only: custom
    # activities are insert-only, and those are dead-lettered instead (next test).
    upserts = ["POST /rest/v1/leads.json", "POST /rest/v1/programs/*", "POST /rest/v1/customobjects/*"]
    rules: list[dict[str, Any]] = [
        {"endpoint": "POST *", "error": "606", "rate": 0.3, "max_count": 3},
        {"endpoint": "POST *", "error": "615", "rate": 0.2, "max_count": 3},
        # An ambiguous 604 (applied, then failed) on an upsert is safe to replay (docs/reference/marketo-api.md §10.4).
        {"endpoint": "POST /rest/v1/leads.json", "error": "604", "rate": 0.3, "max_count": 2,
         "apply_then_fail": True},
    ]
    for ep in upserts:
        rules += [
            {"endpoint": ep, "error": "604", "rate": 0.2, "max_count": 2},
            {"endpoint": ep, "error": "http_502", "rate": 0.2, "max_count": 2},
            {"endpoint": ep, "error": "http_500", "rate": 0.1, "max_count": 1},
            {"endpoint": ep, "error": "drop", "rate": 0.2, "max_count": 2},
        ]
    faults = {"token_ttl_seconds": 1.5, "rules": rules}
    async with running_sandbox(instances=lifted_instance(), faults=faults) as sb:
        async with harness(kafka_broker, topic_prefix, sb, lifted_tenants(sb, monkeypatch)) as h:
            first = scenario(ops, A, n // 2)
            second = scenario(ops, A, n // 2, tag="b")
            await h.produce(first)
            sink = h.start_sink(window_max_records=600, window_max_age_seconds=0.3)
            some = {op.op_id for op in first[:100]}
            await h.wait_for_outcomes(some)
            # Stop with a window open: the second half lands while the sink is going down.
            await h.produce(second)
            await h.stop_sink(sink)
            h.start_sink(window_max_records=600, window_max_age_seconds=0.3)
            everything = {op.op_id for op in first + second}
            final = await h.wait_for_outcomes(everything, within=90)
            failed = {k: (v.reason_code, v.reason) for k, v in final.items() if v.status == "failed"}
            assert not failed
            assert_sandbox_holds_exactly(sb, A, n // 2, tags=("", "b"))
            assert sb.call_count(code="606", munchkin_id=A) >= 1, "the fault plan really fired"


async def test_parked_or_broken_instances_never_stall_the_others(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = {B: LimitsConfig(daily_quota=2)}
    async with running_sandbox(instances=sandbox_instances(A, B, limits=limits)) as sb:
        extra = {
            "beta": {"munchkin_id": B, "endpoint": sb.instance_url(B), "client_id": sb.client_id,
                     "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}},
            "gamma": {"munchkin_id": C, "endpoint": sb.instance_url(A), "client_id": sb.client_id,
                      "client_secret": {"env": "KMSYNC_TEST_UNSET_SECRET"}},
            "delta": {"munchkin_id": D, "endpoint": sb.instance_url(A), "client_id": "revoked",
                      "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}},
        }
        monkeypatch.delenv("KMSYNC_TEST_UNSET_SECRET", raising=False)
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch, extra)) as h:
            parked = scenario(ops, B, 400)
            broken = scenario(ops, C, 3)
            revoked = scenario(ops, D, 3)
            flowing = scenario(ops, A, 30)
            unknown = [ops.lead("x@y.example", munchkin="999-ZZZ-999", op_id="unknown-1")]
            await h.produce(parked + broken + revoked + unknown + flowing)
            sink = h.start_sink(retry_max_attempts=2)
            final = await h.wait_for_outcomes({op.op_id for op in flowing + broken + revoked + unknown})
            assert all(final[op.op_id].status != "failed" for op in flowing)
            assert_sandbox_holds_exactly(sb, A, 30)
            assert {final[op.op_id].reason_code for op in broken} == {"kmsync.instance_config"}
            assert {final[op.op_id].reason_code for op in revoked} == {"kmsync.auth_refused"}
            assert final["unknown-1"].reason_code == "kmsync.instance_unknown"
            async def all_dead_lettered() -> bool:
                letters = await h.dead_letters()
                return {dl.payload["op_id"] for dl in letters if isinstance(dl.payload, dict)} >= {
                    op.op_id for op in broken + revoked + unknown}

            await wait_for(all_dead_lettered, 30, "dead letters of the broken instances")
            # B answered 607: parked until midnight US Central, its operations wait undecided.
            await wait_for(lambda: sink.workers[B].writer.limiter.parked_until is not None, 30, "B parked")
            decided_b = {o.op_id for o in await h.outcomes() if o.munchkin_id == B}
            assert len(decided_b) < len(parked)
            assert sb.call_count(code="607", munchkin_id=B) >= 1


def gauge_samples(sink: MarketoSink, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for family in sink.metrics.registry.collect()
            for s in family.samples if s.name == name}


async def test_consumer_lag_counts_what_a_paused_partition_has_not_read(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kmsync_sink_consumer_lag_records: a parked instance's partition pauses once its buffer is full
    (one fetch holds about 1 MB, a few thousand operations); what it has not read is lag. Read and
    undecided operations are buffered or in the one window in flight (≤ its 100), so lag, buffered
    and decided add up to every operation produced, less at most that window."""
    limits = {B: LimitsConfig(daily_quota=2)}
    window = 100
    async with running_sandbox(instances=sandbox_instances(A, B, limits=limits)) as sb:
        tenants = tenants_for(sb, monkeypatch, {"beta": {
            "munchkin_id": B, "endpoint": sb.instance_url(B), "client_id": sb.client_id,
            "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}}})
        async with harness(kafka_broker, topic_prefix, sb, tenants) as h:
            parked = scenario(ops, B, 3000)
            await h.produce(parked)
            sink = h.start_sink(sink_max_buffered_per_partition=200, window_max_records=window,
                                bulk_window_max_records=window, window_min_call_records=0)
            seen: list[tuple[float, float, int]] = []

            async def accounted() -> bool:
                lag = sum(gauge_samples(sink, "kmsync_sink_consumer_lag_records").values())
                buffered = gauge_samples(sink, "kmsync_sink_buffered_operations").get((B,), 0.0)
                decided = len({o.op_id for o in await h.outcomes() if o.munchkin_id == B})
                seen.append((lag, buffered, decided))
                return lag > 0 and len(parked) - window <= lag + buffered + decided <= len(parked)

            await wait_for(lambda: B in sink.workers and sink.workers[B].writer.limiter.parked_until is not None,
                        30, "B parked")
            await wait_for(accounted, 30, "lag + buffered + decided = produced (less one window), lag > 0")
            assert seen[-1][0] < len(parked) - 200, "the fetched part is not lag"


async def test_a_window_whose_partition_is_paused_closes_without_waiting_its_age(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-ahead below twice the window count: 42 operations read at once pause the partition (cap 20); two full
    windows of 15 go out, and the 12 left keep it paused (undecided, not below half the cap). The window can get
    nothing more, so it closes at once ("paused") instead of waiting its age (an hour here; the benchmark's
    steady rate fell from ≈ 4,500 to ≈ 1,100 events/s at 5 s, docs/benchmarks.md)."""
    async with running_sandbox(instances=sandbox_instances(A)) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            leads = [ops.lead(f"p{i}@x.example", munchkin=A, op_id=f"paused-{i}", firstName=f"P{i}") for i in range(42)]
            await h.produce(leads)
            sink = h.start_sink(sink_max_buffered_per_partition=20, window_max_records=15, bulk_window_max_records=15,
                                window_min_call_records=0, window_max_age_seconds=3600.0, window_adaptive=False)
            final = await h.wait_for_outcomes({op.op_id for op in leads})
            assert {o.status for o in final.values()} == {"created"}
            windows = {labels: value for labels, value in gauge_samples(sink, "kmsync_sink_window_records_count").items()}
            assert windows == {(A, "count"): 2.0, (A, "paused"): 1.0}, windows


async def test_dlq_replay_reinjects_fixed_records(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_sandbox(instances=sandbox_instances(A)) as sb:
        tenants = tenants_for(sb, monkeypatch)
        async with harness(kafka_broker, topic_prefix, sb, tenants) as h:
            good = scenario(ops, A, 2)
            lost = [ops.lead("late@x.example", munchkin=C, op_id="late-1", firstName="Late")]
            await h.produce(good + lost)
            # A record that is not an operation at all: dead-lettered raw, never blocks the partition.
            producer = reliable_producer(h.bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(topic_name(MARKETO_OPS, topic_prefix), b'{"kind":"nonsense"}',
                                             key=A.encode())
                # Keyed by anything but a Munchkin id (an email here): never a metric label.
                await producer.send_and_wait(topic_name(MARKETO_OPS, topic_prefix), b'{"kind":"other"}',
                                             key=b"someone@example.com")
            finally:
                await producer.stop()
            sink = h.start_sink()
            final = await h.wait_for_outcomes({op.op_id for op in good + lost})
            assert final["late-1"].reason_code == "kmsync.instance_unknown"

            async def poison_dead_lettered() -> bool:
                return any(dl.reason_code == "kmsync.contract" and dl.payload == '{"kind":"nonsense"}'
                           for dl in await h.dead_letters())

            await wait_for(poison_dead_lettered, 30, "the malformed record dead-lettered")

            def both_counted() -> bool:
                exposed = generate_latest(sink.metrics.registry).decode()
                assert "someone@example.com" not in exposed
                return sample_sum(exposed, "kmsync_sink_dead_letters_total", {"reason_code": "kmsync.contract"}) == 2

            await wait_for(both_counted, 30, "both malformed records counted")
            assert sample_sum(generate_latest(sink.metrics.registry).decode(), "kmsync_sink_dead_letters_total",
                              {"munchkin_id": "unknown"}) == 1
            await h.stop_sink(sink)
            # Everything read had an outcome, so the group committed up to the end of every partition.
            probe = AIOKafkaConsumer(bootstrap_servers=h.bootstrap, group_id=h.group, enable_auto_commit=False)
            await probe.start()
            try:
                parts = await topic_partitions(probe, topic_name(MARKETO_OPS, topic_prefix))
                ends = await probe.end_offsets(parts)
                committed = {tp: await probe.committed(tp) for tp in parts}
                assert all((committed[tp] or 0) == ends[tp] for tp in parts), (committed, ends)
            finally:
                await probe.stop()
            # The fix: instance C added (pointing at the sandbox's A for the test), then replay.
            h.tenants = tenants_for(sb, monkeypatch, {"gamma": {
                "munchkin_id": C, "endpoint": sb.instance_url(A), "client_id": sb.client_id,
                "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}}})
            monkeypatch.setenv("KMSYNC_KAFKA_BOOTSTRAP", h.bootstrap)
            monkeypatch.setenv("KMSYNC_TOPIC_PREFIX", topic_prefix)
            dlq_topic = topic_name(MARKETO_DLQ, topic_prefix)
            wanted = dlq_cli.parse_filters(["reason_code=kmsync.instance_unknown"])
            dry = await dlq_cli.replay(h.bootstrap, dlq_topic, topic_prefix, wanted, dry_run=True)
            assert (dry.matched, dry.replayable, dry.replayed) == (1, 1, 0)
            report = await dlq_cli.replay(h.bootstrap, dlq_topic, topic_prefix, wanted)
            assert (report.matched, report.replayed) == (1, 1)
            h.start_sink()

            async def written() -> bool:
                return any(o.op_id == "late-1" and o.status == "created" for o in await h.outcomes())

            await wait_for(written, 60, "the replayed lead written")
            assert "late@x.example" in {ld["email"] for ld in sb.dump(A)["leads"]}


async def test_ambiguous_activity_failure_is_verified_not_written_twice(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = {"rules": [{"endpoint": "POST /rest/v1/activities/external.json", "error": "604",
                         "apply_then_fail": True, "max_count": 1}]}
    async with running_sandbox(instances=sandbox_instances(A), faults=faults) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            batch = scenario(ops, A, 3)
            await h.produce(batch)
            h.start_sink(sink_activity_verify_delay_seconds=0.2)
            final = await h.wait_for_outcomes({op.op_id for op in batch})
            acts = [op.op_id for op in batch if op.kind == "custom_activity"]
            # Applied then answered 604: found in the leads' activity logs, recorded as written.
            assert {(final[a].status, final[a].reason_code) for a in acts} == {("created", "kmsync.verified_written")}
            written = [a for a in sb.dump(A)["activities"] if a["activityTypeId"] == ACTIVITY_TYPE_ID]
            assert len(written) == 3, "applied once by Marketo, never sent again"
            assert {final[a].marketo_id for a in acts} == {str(a["marketoGUID"]) for a in written}
            assert sb.call_count("POST /rest/v1/activities/external.json", munchkin_id=A) == 1
            assert sb.call_count("GET /rest/v1/activities.json", munchkin_id=A) == 1, "one look-up, one page"


async def test_a_large_window_goes_through_bulk_import(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 120
    fast_imports = {A: LimitsConfig(import_seconds_base=0.1, import_seconds_per_row=0.0, import_queue_seconds=0.0)}
    async with running_sandbox(instances=sandbox_instances(A, limits=fast_imports)) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            batch = scenario(ops, A, n)
            await h.produce(batch)
            sink = h.start_sink(bulk_min_records=100, window_max_age_seconds=1.0)
            final = await h.wait_for_outcomes({op.op_id for op in batch})
            assert all(o.status != "failed" for o in final.values()), {(o.kind, o.reason_code, o.reason, o.attempts) for o in final.values() if o.status == "failed"}
            assert_sandbox_holds_exactly(sb, A, n)
            leads = [final[op.op_id] for op in batch if op.kind == "lead_upsert"]
            assert {o.api for o in leads} == {"bulk"}
            assert sb.call_count("POST /bulk/v1/leads.json", munchkin_id=A) >= 1
            assert sb.call_count("POST /rest/v1/leads.json", munchkin_id=A) <= 1, "ids for objects only"
            # Second wave for the same (now known) leads: custom objects go bulk too, as updates.
            wave2: list[MarketoOperation] = []
            for op in batch:
                if op.kind == "lead_upsert":
                    wave2.append(op.model_copy(update={"op_id": op.op_id + "-2"}))
                elif op.kind == "custom_object_upsert":
                    wave2.append(op.model_copy(update={"op_id": op.op_id + "-2",
                                                       "record": {**op.record, "plays": 99}}))
            await h.produce(wave2)
            final2 = await h.wait_for_outcomes({op.op_id for op in wave2})
            cos = [final2[op.op_id] for op in wave2 if op.kind == "custom_object_upsert"]
            assert {(o.api, o.status) for o in cos} == {("bulk", "updated")}
            assert sb.call_count("POST /bulk/v1/customobjects/{apiName}/import.json", munchkin_id=A) >= 1, (
                sb.calls(A)["by_endpoint"].keys())
            stored = sb.dump(A)["customObjects"]["kalturaUserSessionEngagement"]
            assert len(stored) == n and {int(r["plays"]) for r in stored} == {99}
            assert sink.metrics.bulk_in_flight.labels(A)._value.get() == 0


async def test_a_custom_object_backfill_goes_bulk_by_the_instance_threshold(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A historical engagement backfill: custom object upserts only (no lead upserts with data), for
    leads Marketo already has and new ones. The instance's own bulk_min_records (the sink setting is
    0) sends them as a Bulk custom object import in one window larger than window_max_records,
    after email-only REST upserts learn the lead ids (personId)."""
    leads, entries = 600, 3  # 1,800 objects (~0.8 MB: one fetch), two full email-only lead calls
    fast_imports = {A: LimitsConfig(import_seconds_base=0.1, import_seconds_per_row=0.0, import_queue_seconds=0.0)}
    async with running_sandbox(instances=sandbox_instances(A, limits=fast_imports)) as sb:
        tenants = tenants_for(sb, monkeypatch, {"alpha": {
            "munchkin_id": A, "endpoint": sb.instance_url(A), "client_id": sb.client_id,
            "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}, "share": 0.5, "bulk_min_records": 500}})
        async with harness(kafka_broker, topic_prefix, sb, tenants) as h:
            emails = [f"u{i}@bf.example" for i in range(leads)]
            known = emails[::2]  # already in Marketo (the sink's lead cache knows none of them)
            client = h.writer(settings_from_instance(tenants.marketo_instances["alpha"]))
            try:
                created = await client.sync_leads([{"email": e, "firstName": "Known"} for e in known])
            finally:
                await client.aclose()
            known_ids = dict(created.lead_ids)
            assert len(known_ids) == len(known)
            backfill = [ops.obj(e, entry=f"1_e{n}", munchkin=A, op_id=f"bf-{i}-{n}", plays=n).model_copy(
                            update={"dedupe_fields": ("entry_id", "personId")})
                        for i, e in enumerate(emails) for n in range(entries)]
            await h.produce(backfill)
            sink = h.start_sink(window_max_records=1000, window_max_age_seconds=5.0)
            final = await h.wait_for_outcomes({op.op_id for op in backfill})
            assert {(o.status, o.api) for o in final.values()} == {("updated", "bulk")}, {
                (o.status, o.api, o.reason_code) for o in final.values()}
            calls = sb.calls(A)["by_endpoint"]
            assert sb.call_count("POST /rest/v1/customobjects/{apiName}.json", munchkin_id=A) == 0, calls
            assert sb.call_count("POST /bulk/v1/customobjects/{apiName}/import.json", munchkin_id=A) == 1, calls
            # Stage 1 stayed REST: the pre-load, then two email-only calls of 300 for the ids.
            assert sb.call_count("POST /rest/v1/leads.json", munchkin_id=A) == 1 + leads // 300, calls
            assert sb.call_count("POST /bulk/v1/leads.json", munchkin_id=A) == 0
            # One window took the whole backfill, beyond window_max_records: on a bulk instance a window
            # closes on count only at the bulk size (25,000), so this one closed on age, whole.
            windows: dict[str, float] = {}
            for m in sink.metrics.window_records.collect():
                for s in m.samples:
                    if s.name.endswith("_bucket"):
                        windows[s.labels["le"]] = windows.get(s.labels["le"], 0.0) + s.value
            assert windows["1000.0"] == 0 and windows["3000.0"] == 1, windows
            dump = sb.dump(A)
            ids = {ld["email"]: ld["id"] for ld in dump["leads"]}
            assert sorted(ids) == sorted(emails), "every lead once: known ones kept, new ones created"
            assert all(ids[e] == known_ids[e] for e in known)
            assert {ld["firstName"] for ld in dump["leads"] if ld["email"] in known_ids} == {"Known"}
            stored = dump["customObjects"]["kalturaUserSessionEngagement"]
            assert sorted((int(r["personId"]), r["entry_id"]) for r in stored) == sorted(
                (ids[e], f"1_e{n}") for e in emails for n in range(entries))

            await wait_for(lambda: committed_to_the_end(h), 30, "offsets committed behind the outcomes")


def import_jobs(sb: SandboxHandle, munchkin: str, kind: str = "customobjects") -> list[Any]:
    """The sandbox's bulk import jobs of one kind, in the order they were submitted."""
    return sorted((j for j in sb.instance(munchkin).jobs.values() if j.kind == kind), key=lambda j: j.batch_id)


def most_outstanding(jobs: list[Any]) -> int:
    """The most jobs submitted and not yet finished at once (at Marketo: queued or importing)."""
    return max((sum(1 for i in jobs if i.created <= j.created < (i.finished or float("inf"))) for j in jobs),
               default=0)


def assert_newer_values_submitted_after_older(jobs: list[Any]) -> None:
    """A job carrying a record's newer value (plays 2) was submitted only after every job carrying
    its older value (plays 1) had finished."""
    submitted: dict[tuple[str, str, str], list[Any]] = {}
    for j in jobs:
        for row in j.rows:
            rec = dict(zip(j.header, row, strict=True))
            submitted.setdefault((rec["email"], rec["entry_id"], rec["plays"]), []).append(j)
    newer = [(key, j) for key, js in submitted.items() if key[2] == "2" for j in js]
    assert newer, "the updates went bulk too"
    for (email, entry, _), j in newer:
        for older in submitted.get((email, entry, "1"), []):
            assert older.finished is not None and older.finished <= j.created, (email, entry)


async def test_bulk_custom_object_jobs_are_pipelined_and_later_upserts_wait_for_their_record(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill of several bulk windows against imports that take seconds (minutes at Marketo): the
    window loop does not wait for each job, so several are outstanding at once; updates of records
    that an outstanding job carries wait for that job (the sandbox, like Marketo, runs two jobs at
    once, and a smaller later job would finish first and be overwritten by the older rows)."""
    leads, entries, updated_leads = 60, 20, range(40, 60)
    # Jobs take seconds; the rate limit is lifted (sandbox and client alike) so that the test's
    # fast status polls (every 0.1-0.3 s per job, not Marketo's 5-30 s) do not queue in the limiter.
    slow_imports = {A: LimitsConfig(import_seconds_base=1.0, import_seconds_per_row=0.002, import_queue_seconds=0.0,
                                    rate_limit=1000)}
    async with running_sandbox(instances=sandbox_instances(A, limits=slow_imports)) as sb:
        tenants = tenants_for(sb, monkeypatch, {"alpha": {
            "munchkin_id": A, "endpoint": sb.instance_url(A), "client_id": sb.client_id,
            "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}, "share": 0.5, "bulk_min_records": 300,
            "rate_limit_calls": 1000}})
        async with harness(kafka_broker, topic_prefix, sb, tenants) as h:
            emails = [f"p{i}@pipe.example" for i in range(leads)]

            def engagement(i: int, n: int, plays: int, op_id: str) -> MarketoOperation:
                return ops.obj(emails[i], entry=f"1_e{n}", munchkin=A, op_id=op_id, plays=plays).model_copy(
                    update={"dedupe_fields": ("entry_id", "personId")})

            # 1,200 upserts (three bulk windows of 400), then 300 updates of records in the last of them.
            backfill = [engagement(i, n, 1, f"bf-{i}-{n}") for i in range(leads) for n in range(entries)]
            updates = [engagement(i, n, 2, f"up-{i}-{n}") for i in updated_leads for n in range(15)]
            everything = backfill + updates
            await h.produce(everything)
            sink = h.start_sink(window_max_records=300, bulk_window_max_records=400, window_min_call_records=0,
                                window_max_age_seconds=2.0)
            await h.wait_for_outcomes({op.op_id for op in everything}, within=90)
            outcomes = await h.outcomes()
            assert sorted(o.op_id for o in outcomes) == sorted(op.op_id for op in everything), "one outcome each"
            assert {o.status for o in outcomes} == {"updated"}, {(o.status, o.reason_code) for o in outcomes}
            jobs = import_jobs(sb, A)
            assert len(jobs) >= 3 and all(j.status == "Complete" for j in jobs), [(j.batch_id, j.status) for j in jobs]
            # More than one at once (one window after another would give 1), within the pipeline's cap.
            assert 2 <= most_outstanding(jobs) <= sink.settings.bulk_pipeline_max_jobs, [
                (j.batch_id, j.created, j.finished) for j in jobs]
            assert_newer_values_submitted_after_older(jobs)
            dump = sb.dump(A)
            ids = {ld["email"]: ld["id"] for ld in dump["leads"]}
            assert sorted(ids) == sorted(emails)
            stored = dump["customObjects"]["kalturaUserSessionEngagement"]
            want = {(ids[emails[i]], f"1_e{n}"): (2 if i in updated_leads and n < 15 else 1)
                    for i in range(leads) for n in range(entries)}
            assert len(stored) == len(want)
            assert {(int(r["personId"]), r["entry_id"]): int(r["plays"]) for r in stored} == want, "newest value wins"
            await wait_for(lambda: committed_to_the_end(h), 30, "offsets committed to the log end")
            assert sink.metrics.bulk_in_flight.labels(A)._value.get() == 0


async def test_rebalance_hands_instances_over_without_loss_or_duplicates(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    E = "555-EEE-555"  # hashes to another partition than A (murmur2, 3 partitions)
    async with running_sandbox(instances=sandbox_instances(A, E)) as sb:
        extra = {"echo": {"munchkin_id": E, "endpoint": sb.instance_url(E), "client_id": sb.client_id,
                          "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}}}
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch, extra)) as h:
            waves = [scenario(ops, m, 40, tag=f"w{w}") for w in range(3) for m in (A, E)]
            first = h.start_sink()
            await h.produce(waves[0] + waves[1])
            await h.wait_for_outcomes({op.op_id for op in waves[0] + waves[1]})
            second = h.start_sink()  # joins the group: partitions move between the two
            await h.produce(waves[2] + waves[3])
            await wait_for(lambda: bool(first.state.assigned) and bool(second.state.assigned), 30,
                        "both sinks own partitions")
            await h.wait_for_outcomes({op.op_id for op in waves[2] + waves[3]})
            await h.stop_sink(first)  # leaves: the survivor takes everything over
            await h.produce(waves[4] + waves[5])
            final = await h.wait_for_outcomes({op.op_id for w in waves for op in w})
            assert all(o.status != "failed" for o in final.values())
            for m in (A, E):
                assert_sandbox_holds_exactly(sb, m, 40, tags=("w0", "w1", "w2"))


async def test_cli_rejects_bad_configuration_with_exit_code_2(tmp_path: Any, capsys: Any) -> None:
    from kmsync_sink import cli

    bad = tmp_path / "tenants.yaml"
    bad.write_text("marketo_instances:\n  x: {munchkin_id: nope}\nevents: []\n")
    assert cli.main(["--tenants", str(bad)]) == 2
    assert "munchkin" in capsys.readouterr().err
    assert dlq_cli.main(["replay", "--topic", "marketo.dlq.v1", "--filter", "colour=red"]) == 2
    assert "unknown field 'colour'" in capsys.readouterr().err


async def test_health_and_metrics_endpoints(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    from aiohttp import web

    from kmsync_sink.cli import http_app

    async with running_sandbox(instances=sandbox_instances(A)) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            sink = MarketoSink(h.settings(), h.tenants, writer_factory=h.writer)
            runner = web.AppRunner(http_app(sink), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                    assert (await http.get("/healthz")).status_code == 200
                    assert (await http.get("/readyz")).status_code == 503, "not subscribed yet"
                    h.sinks.append(sink)
                    h.sink_tasks.append(asyncio.create_task(sink.run(asyncio.Event())))
                    batch = scenario(ops, A, 2)
                    await h.produce(batch)
                    await h.wait_for_outcomes({op.op_id for op in batch})
                    assert (await http.get("/readyz")).status_code == 200
                    text = (await http.get("/metrics")).text
                    for series in ("kmsync_sink_marketo_calls_total", "kmsync_sink_records_per_call_bucket",
                                   "kmsync_sink_budget_used", "kmsync_sink_end_to_end_latency_seconds_count",
                                   "kmsync_sink_window_records_count", "kmsync_sink_limiter_waits_total"):
                        assert series in text, series
                    assert f'munchkin_id="{A}"' in text and 'instance="' not in text
            finally:
                await runner.cleanup()


async def test_sigkill_with_a_window_open_replays_without_duplicates(
    kafka_broker: Any, topic_prefix: str, ops: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """`kmsync sink` as a process. A real crash: SIGKILL after its first window was written
    (outcomes published, nothing committed) while a second window is still open. The restarted
    process replays everything: upserts converge, and the activity ledger (rebuilt from
    marketo.results.v1) keeps the already-written custom activities from being sent again. Then
    SIGTERM stops it cleanly (exit 0)."""
    async with running_sandbox(instances=sandbox_instances(A)) as sb:
        async with harness(kafka_broker, topic_prefix, sb, tenants_for(sb, monkeypatch)) as h:
            # A window that stays open: closed by count at 50 over REST, never early (adaptive windows off).
            env = sink_process_env(sb, A, h.bootstrap, topic_prefix, h.group, tmp_path, window_max_records="50",
                                   window_max_age_seconds="300", sink_commit_interval_seconds="3600",
                                   bulk_min_records="0", window_adaptive="false")
            batch = scenario(ops, A, 20)  # 87 operations: one full window of 50, one open window
            await h.produce(batch)
            proc = await sink_process(env)
            try:
                first_window = {op.op_id for op in batch[:50]}
                await h.wait_for_outcomes(first_window)
                proc.send_signal(signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 30)
            finally:
                await ensure_dead(proc)
            written_before = {op.op_id for op in batch[:50] if op.kind == "custom_activity"}
            assert written_before, "the first window wrote activities before the crash"
            assert not {o.op_id for o in await h.outcomes()} & {op.op_id for op in batch[50:]}, "window 2 open"
            h.results.seen.clear()  # from here on: the restarted sink's outcomes only
            env.update({"KMSYNC_WINDOW_MAX_RECORDS": "3000", "KMSYNC_WINDOW_MAX_AGE_SECONDS": "0.3",
                        "KMSYNC_SINK_COMMIT_INTERVAL_SECONDS": "1"})
            proc = await sink_process(env)
            try:
                final = await h.wait_for_outcomes({op.op_id for op in batch})
                # SIGTERM: drain, commit, leave the group, exit 0.
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 60) == 0
            finally:
                await ensure_dead(proc)
            assert all(o.status != "failed" for o in final.values())
            assert {(final[i].status, final[i].reason_code) for i in written_before} == {
                ("skipped", "kmsync.already_written")}
            assert_sandbox_holds_exactly(sb, A, 20)
