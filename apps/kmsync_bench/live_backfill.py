"""Live during backfill (issue #18): live latency with and without a backfill on the same instance.

`python -m kmsync_bench.live_backfill [--backfill-rows N] [--live-seconds S] [--live-rate R] [--json FILE]`

The sink in-process against a real Kafka broker and the Marketo sandbox at Marketo's real limits (100
calls per rolling 20 s, the instance's share 1.0, backfill_share 0.3). Operations are produced straight
to the two ops topics (ingest and transform are measured elsewhere, docs/benchmarks.md), stamped
``source_time = now`` when produced, so a live outcome's ``decided_at − source_time`` is the sink's part
of the latency: windows, the limiter and Marketo. A live row is a registration (lead upsert and
program member status of a new lead); a backfill row is a historical engagement custom object of a
lead Marketo does not know yet (the sink learns its id over REST, then imports the object bulk).

Runs: (1) live alone with the fixed 5 s window age (adaptive windows off: the old behaviour), (2) live
alone with adaptive windows, (3) live with the backfill started first, adaptive windows. Reports live
p50/p95/p99 per run, the backfill's calls per rolling 20 s (the sandbox's request log) and duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from kmsync_bench.stats import percentile, rolling_window_usage
from kmsync_config.tenants import parse_tenants
from kmsync_contracts import RecordOutcome, encode
from kmsync_contracts.codecs import decode_model
from kmsync_contracts.marketo_ops import CustomObjectUpsert, LeadUpsert, MarketoOperation, ProgramMemberStatus
from kmsync_contracts.seed import ENGAGEMENT_OBJECT_API_NAME, STATUS_STEPS
from kmsync_contracts.topics import MARKETO_DLQ, MARKETO_OPS, MARKETO_OPS_BACKFILL, MARKETO_RESULTS
from kmsync_kafka.clients import ensure_topics, reliable_producer, topic_name
from kmsync_kafka.reading import topic_partitions
from kmsync_sink.service import MarketoSink
from kmsync_sink.settings import SinkSettings
from kmsync_testing.kafka_broker import start_broker
from marketo_sandbox.config import InstanceConfig
from marketo_sandbox.testing import SandboxHandle, running_sandbox

MUNCHKIN = "555-LBF-555"
BACKFILL_DOMAIN = "@history.example"
SECRET_ENV = "KMSYNC_BENCH_LB_SECRET"


@dataclass
class Run:
    name: str
    live_rows: int
    p50: float
    p95: float
    p99: float
    max: float
    backfill_rows: int = 0
    backfill_done: int = 0
    backfill_seconds: float = 0.0
    backfill_calls_peak_per_20s: int = 0
    backfill_cap_per_20s: int = 0
    total_calls_peak_per_20s: int = 0
    windows_by_reason: dict[str, float] = field(default_factory=dict)


def _pct(values: list[float], q: float) -> float:
    return round(percentile(values, q), 2) if values else 0.0


def _most_in_window(times: list[float], window: float = 20.0) -> int:
    return rolling_window_usage(times, window, min(times), max(times)).peak if times else 0


def _live_ops(i: int, tag: str) -> list[MarketoOperation]:
    now = datetime.now(UTC)
    email = f"l{i}-{tag}@live.example"
    base: dict[str, Any] = {"munchkin_id": MUNCHKIN, "partner_id": 1, "virtual_event_id": 2, "email": email,
                            "source_time": now, "emitted_at": now}
    return [LeadUpsert(op_id=f"live-lead-{tag}-{i}", fields={"firstName": "Live"}, **base),
            ProgramMemberStatus(op_id=f"live-reg-{tag}-{i}", program_id=1001, status_name="Registered",
                                step=STATUS_STEPS["Registered"], **base)]


def _backfill_ops(n: int) -> list[MarketoOperation]:
    now = datetime.now(UTC)
    return [CustomObjectUpsert(
        op_id=f"bf-{i}", munchkin_id=MUNCHKIN, partner_id=1, virtual_event_id=2, email=f"h{i}{BACKFILL_DOMAIN}",
        source_time=now, emitted_at=now, object_name=ENGAGEMENT_OBJECT_API_NAME,
        dedupe_fields=("entry_id", "personId"), record={"entry_id": "1_history", "plays": i % 7})
        for i in range(n)]


class Results:
    """Follows marketo.results.v1 from its start."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                         enable_auto_commit=False)
        self.topic = topic
        self.outcomes: dict[str, RecordOutcome] = {}

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(await topic_partitions(self.consumer, self.topic))
        await self.consumer.seek_to_beginning()

    async def poll(self) -> None:
        for msgs in (await self.consumer.getmany(timeout_ms=100)).values():
            for m in msgs:
                if m.value is not None:
                    o = decode_model(RecordOutcome, m.value)
                    self.outcomes[o.op_id] = o


async def _produce(bootstrap: str, topic: str, ops: list[MarketoOperation]) -> None:
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        futs = [await producer.send(topic, encode(op), key=op.munchkin_id.encode()) for op in ops]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def _tenants(sb: SandboxHandle) -> Any:
    os.environ[SECRET_ENV] = sb.client_secret
    return parse_tenants({"marketo_instances": {"bench": {
        "munchkin_id": MUNCHKIN, "endpoint": sb.instance_url(MUNCHKIN), "client_id": sb.client_id,
        "client_secret": {"env": SECRET_ENV}, "share": 1.0, "backfill_share": 0.3}}, "events": []},
        check_secrets=False)


async def one_run(bootstrap: str, name: str, backfill_rows: int, live_seconds: float, live_rate: int,
                  adaptive: bool) -> Run:
    prefix = f"lb{uuid.uuid4().hex[:8]}."
    await ensure_topics(bootstrap, (MARKETO_OPS, MARKETO_OPS_BACKFILL, MARKETO_RESULTS, MARKETO_DLQ), prefix,
                        partitions=1)
    async with running_sandbox(instances=[InstanceConfig(munchkin_id=MUNCHKIN, preset="kaltura")]) as sb:
        sink = MarketoSink(SinkSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, sink_group_id=f"{prefix}sink",
                                        window_adaptive=adaptive), _tenants(sb))
        results = Results(bootstrap, topic_name(MARKETO_RESULTS, prefix))
        await results.start()
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(stop))
        try:
            return await _drive(sb, sink, results, bootstrap, prefix, name, backfill_rows, live_seconds, live_rate)
        finally:
            stop.set()
            await task
            await results.consumer.stop()


async def _drive(sb: SandboxHandle, sink: MarketoSink, results: Results, bootstrap: str, prefix: str, name: str,
                 backfill_rows: int, live_seconds: float, live_rate: int) -> Run:
    t0 = time.monotonic()
    if backfill_rows:
        await _produce(bootstrap, topic_name(MARKETO_OPS_BACKFILL, prefix), _backfill_ops(backfill_rows))
        await asyncio.sleep(10.0)  # pacing: the live trickle starts 10 s into the backfill, as in issue #18
    live_ids: list[str] = []
    ticks = max(1, round(live_seconds * 2))
    for tick in range(ticks):  # live_rate rows per second, in two bursts a second
        ops = [op for i in range(live_rate // 2) for op in _live_ops(tick * live_rate + i, name)]
        live_ids += [op.op_id for op in ops if isinstance(op, ProgramMemberStatus)]
        await _produce(bootstrap, topic_name(MARKETO_OPS, prefix), ops)
        await results.poll()
        await asyncio.sleep(max(0.0, t0 + (10.0 if backfill_rows else 0.0) + (tick + 1) / 2 - time.monotonic()))
    live_deadline = time.monotonic() + 300
    while not set(live_ids) <= results.outcomes.keys() and time.monotonic() < live_deadline:
        await results.poll()
    live_ids = [i for i in live_ids if i in results.outcomes]
    latencies = [(results.outcomes[i].decided_at - results.outcomes[i].source_time).total_seconds() for i in live_ids]
    deadline = time.monotonic() + 900
    bf_ids = {f"bf-{i}" for i in range(backfill_rows)}
    while backfill_rows and not bf_ids <= results.outcomes.keys() and time.monotonic() < deadline:
        await results.poll()
    return _report(sb, sink, results, name, latencies, backfill_rows, bf_ids, time.monotonic() - t0)


def _report(sb: SandboxHandle, sink: MarketoSink, results: Results, name: str, latencies: list[float],
            backfill_rows: int, bf_ids: set[str], seconds: float) -> Run:
    log = sb.requests(MUNCHKIN)
    backfill_calls = [r["at"] for r in log if "/bulk/" in r["path"] or BACKFILL_DOMAIN in r["body"]]
    worker = sink.workers.get(MUNCHKIN)
    windows: dict[str, float] = {}
    for m in sink.metrics.window_records.collect():
        for s in m.samples:
            if s.name.endswith("_count"):
                windows[s.labels["reason"]] = windows.get(s.labels["reason"], 0.0) + s.value
    return Run(
        name=name, live_rows=len(latencies), p50=_pct(latencies, 50), p95=_pct(latencies, 95),
        p99=_pct(latencies, 99), max=round(max(latencies), 2), backfill_rows=backfill_rows,
        backfill_done=len(bf_ids & results.outcomes.keys()), backfill_seconds=round(seconds, 1),
        backfill_calls_peak_per_20s=_most_in_window(backfill_calls),
        backfill_cap_per_20s=worker.writer.limiter.backfill_window_limit if worker is not None else 0,
        total_calls_peak_per_20s=_most_in_window([r["at"] for r in log if r["path"] != "/identity/oauth/token"]),
        windows_by_reason=windows)


async def main_async(args: argparse.Namespace) -> list[Run]:
    work = Path(tempfile.mkdtemp(prefix="kmsync-lb-"))
    broker = await asyncio.to_thread(start_broker, work)
    try:
        runs = [
            await one_run(broker.bootstrap, "live alone, fixed 5 s age", 0, args.live_seconds, args.live_rate, False),
            await one_run(broker.bootstrap, "live alone, adaptive", 0, args.live_seconds, args.live_rate, True),
            await one_run(broker.bootstrap, "live during backfill, adaptive", args.backfill_rows, args.live_seconds,
                          args.live_rate, True),
        ]
    finally:
        await asyncio.to_thread(broker.stop)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmsync_bench.live_backfill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backfill-rows", type=int, default=20_000)
    parser.add_argument("--live-seconds", type=float, default=40.0)
    parser.add_argument("--live-rate", type=int, default=20, help="live rows per second")
    parser.add_argument("--json", type=Path, help="write the runs here as JSON")
    args = parser.parse_args(argv)
    runs = asyncio.run(main_async(args))
    for r in runs:
        print(json.dumps(asdict(r)))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
