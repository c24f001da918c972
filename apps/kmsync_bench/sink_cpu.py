"""A focused micro-benchmark of the sink's hot path: CPU per 10,000 operations through ``MarketoSink``
(issue #22), modelled on ingest_cpu.py.

``python -m kmsync_bench.sink_cpu [--ops 20000] [--repeat 5] [--profile out.pstats]``: starts its own
broker (kmsync_testing.kafka_broker) and the Marketo sandbox as a process of its own (every limit lifted,
as section 4 of ``make bench`` lifts them: sandbox rate, concurrency and quota; the sink's limiter; REST
only, ``bulk_min_records: 0``), then runs one ``MarketoSink`` in this process. Each load is
``--ops`` operations of ``kmsync_bench.workload.backlog`` (per attendee: lead upsert, Registered,
engagement custom object, custom activity, every third Attended; new emails each load), produced to
``marketo.ops.v1`` by a child process, so this process's CPU is the sink's alone: consuming and
decoding, windows, planning, the Marketo calls (HTTP client and limiter), activity intents, outcomes to
``marketo.results.v1`` and commits. One warm-up load first (connections, token, schema), then
``--repeat`` measured loads; each prints this process's CPU seconds (time.process_time: every thread)
from the load's first record produced to its last outcome counted, per 10,000 operations. With
``--profile`` cProfile records the measured loads (the sink's event loop thread, timed by
process CPU time, not the wall clock) and its top entries are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kmsync_bench.config import CAPACITY_INSTANCE
from kmsync_bench.cpu import per_10k, services_collections
from kmsync_bench.sandbox import CLIENT_ID, CLIENT_SECRET, instances_file, start_sandbox
from kmsync_bench.stack import LIFTED, sandbox_limits
from kmsync_bench.workload import backlog
from kmsync_cli.processes import ProcessGroup
from kmsync_config import TenantsConfig, parse_tenants
from kmsync_contracts import encode
from kmsync_contracts.topics import ACTIVITY_INTENTS, MARKETO_DLQ, MARKETO_OPS, MARKETO_OPS_BACKFILL, MARKETO_RESULTS
from kmsync_kafka.clients import ensure_topics, reliable_producer, topic_name
from kmsync_sink.service import MarketoSink
from kmsync_sink.settings import SinkSettings
from kmsync_testing.kafka_broker import start_broker

SECRET_ENV = "KMSYNC_BENCH_SINK_CPU_SECRET"
#: Longest a load may take before the bench gives up (the sandbox or the sink is stuck).
LOAD_TIMEOUT_SECONDS = 600.0


def tenants(endpoint: str) -> TenantsConfig:
    os.environ[SECRET_ENV] = CLIENT_SECRET
    return parse_tenants({"marketo_instances": {"capacity": {
        "munchkin_id": CAPACITY_INSTANCE, "endpoint": endpoint, "client_id": CLIENT_ID,
        "client_secret": {"env": SECRET_ENV}, "share": 1.0, "daily_quota": LIFTED, "rate_limit_calls": LIFTED,
        "bulk_min_records": 0}}, "events": []}, "sink_cpu", check_secrets=False)


async def _produce(bootstrap: str, topic: str, ops: int, tag: str) -> None:
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        futs = [await producer.send(topic, encode(op), key=op.munchkin_id.encode())
                for op in backlog(ops, CAPACITY_INSTANCE, tag, datetime.now(UTC))]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def produce_child(bootstrap: str, topic: str, ops: int, tag: str) -> None:
    """Runs in a child process: building and producing the operations is not the sink's CPU."""
    asyncio.run(_produce(bootstrap, topic, ops, tag))


def outcomes_counted(sink: MarketoSink) -> int:
    return int(sum(s.value for m in sink.metrics.outcomes.collect() for s in m.samples if s.name.endswith("_total")))


async def one_load(sink: MarketoSink, bootstrap: str, topic: str, ops: int) -> float:
    """CPU seconds of this process from the load's start to its last outcome counted."""
    target = outcomes_counted(sink) + ops
    before = time.process_time()
    child = multiprocessing.get_context("spawn").Process(
        target=produce_child, args=(bootstrap, topic, ops, f"s{uuid.uuid4().hex[:6]}-"))
    child.start()
    deadline = time.monotonic() + LOAD_TIMEOUT_SECONDS
    while outcomes_counted(sink) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{outcomes_counted(sink) - target + ops} of {ops} outcomes in "
                               f"{LOAD_TIMEOUT_SECONDS:.0f} s")
        await asyncio.sleep(0.05)  # polling the sink's outcome counter with a deadline
    spent = time.process_time() - before
    await asyncio.to_thread(child.join)
    if child.exitcode != 0:
        raise RuntimeError(f"the producer process exited with {child.exitcode}")
    return spent


async def load(bootstrap: str, endpoint: str, ops: int, repeat: int, profiler: cProfile.Profile | None) -> list[float]:
    prefix = f"sc{uuid.uuid4().hex[:8]}."
    await ensure_topics(bootstrap, (MARKETO_OPS, MARKETO_OPS_BACKFILL, MARKETO_RESULTS, MARKETO_DLQ,
                                    ACTIVITY_INTENTS), prefix, partitions=1)
    sink = MarketoSink(SinkSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, sink_group_id=f"{prefix}sink"),
                       tenants(endpoint))
    topic = topic_name(MARKETO_OPS, prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    out: list[float] = []
    try:
        await one_load(sink, bootstrap, topic, min(ops, 2_000))  # warm-up: connections, token, schema
        for _ in range(repeat):
            if profiler is not None:
                profiler.enable()
            spent = await one_load(sink, bootstrap, topic, ops)
            if profiler is not None:
                profiler.disable()
            out.append(per_10k(spent, ops))
    finally:
        stop.set()
        await task
    return out


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kmsync_bench.sink_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", type=Path, help="write cProfile statistics of the measured loads here")
    p.add_argument("--top", type=int, default=30, help="profile entries printed (by own time)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _args(argv)
    # CPU time, not the wall clock: on a loaded machine wall time would count the time others had the CPU.
    profiler = cProfile.Profile(time.process_time) if args.profile is not None else None
    with tempfile.TemporaryDirectory(prefix="kmsync-sink-cpu-") as tmp:
        work = Path(tmp)
        broker = start_broker(work / "kafka")
        group = ProcessGroup(work / "logs")
        try:
            limits = {CAPACITY_INSTANCE: sandbox_limits()[CAPACITY_INSTANCE]}
            sandbox = start_sandbox(group, Path(sys.executable), instances_file(work / "instances.yaml", limits))
            with services_collections():
                values = asyncio.run(load(broker.bootstrap, sandbox.instance_url(CAPACITY_INSTANCE), args.ops,
                                          args.repeat, profiler))
        finally:
            group.stop_all()
            broker.stop()
    print(f"sink CPU s per 10,000 operations ({args.ops} per load, load average {os.getloadavg()[0]:.2f}): "
          + ", ".join(f"{v:.3f}" for v in values) + f" (median {sorted(values)[len(values) // 2]:.3f})")
    if profiler is not None and args.profile is not None:
        profiler.dump_stats(str(args.profile))
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
