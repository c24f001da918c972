"""A focused micro-benchmark of transform's per-record path: CPU per 10,000 input rows through
``kmsync_transform.keyed.KeyedSteps`` over quixstreams' own RocksDB state (no broker).

``python -m kmsync_bench.transform_cpu [--people 5000] [--repeat 5] [--profile out.pstats]``: each
person is four input records as ingest writes them (a registration status with registrant data
(kmsync_bench.codecs.status), the attended status, a final report 4021 engagement snapshot
(kmsync_bench.codecs.engagement) and a poll answer), encoded with kmsync_contracts as they sit on
the input topics. Each pass runs them through what engine_quix.py runs per record, in the same
order: decode and route, the status/engagement step against the record key's state; a poll routed,
its Envelope encoded and decoded (the repartition topic) and stepped against its session's state;
every output encoded; the metrics. State is a quixstreams ``RocksDBStorePartition`` in a temporary
directory (values serialized by quixstreams, TTL stamps), with a transaction per checkpoint of
``--checkpoint`` records, prepared and flushed like the engine's (no changelog producer). Each pass
starts on fresh state, so every pass is the first sight of every person (the capacity section's
case). ``--engagement-only`` sends each person's engagement snapshot alone (the capacity section's
input). Prints this process's CPU seconds (time.process_time) per 10,000 input rows per pass and
their median; ``--profile`` writes cProfile statistics of the measured passes (CPU time of this
thread: ``time.thread_time``).

What it leaves out: the Kafka clients (librdkafka's consume/produce/transactions, quixstreams'
message loop and serializers) and the broker. ``--app`` measures those too: the same records are
produced to a private broker (kmsync_testing.kafka_broker) under a fresh topic prefix per pass, and
the real ``QuixTransform`` (engine_quix.py: exactly-once, RocksDB state with changelogs, the polls'
repartition topic) runs in this process until every input record is processed and every operation
emitted; the figures are this process's CPU (every thread, librdkafka's included; the broker's not)
and the engine's thread's alone, from the first record processed to the last operation emitted,
and ``--profile`` profiles the engine's thread.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

from quixstreams import State
from quixstreams.state.rocksdb import RocksDBOptions, RocksDBStorePartition
from quixstreams.state.rocksdb.transaction import RocksDBPartitionTransaction

from kmsync_bench.codecs import T0, engagement, status
from kmsync_bench.config import CAPACITY_INSTANCE
from kmsync_bench.cpu import per_10k
from kmsync_bench.workload import ENTRY_ID, PARTNER_ID, PROGRAM_ID
from kmsync_config import TenantsConfig, parse_tenants
from kmsync_contracts import encode
from kmsync_contracts.kaltura_records import AttendanceStatus, PollResponse
from kmsync_contracts.topics import ALL_TOPICS, ATTENDEE_STATUS, POLL_RESPONSES, SESSION_ENGAGEMENT, TopicSpec
from kmsync_kafka import ensure_topics, reliable_producer, topic_name
from kmsync_testing.kafka_broker import start_broker
from kmsync_testing.waiting import wait_for
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.engine_quix import QuixTransform
from kmsync_transform.keyed import Envelope, KeyedSteps
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.settings import TransformSettings

#: kmsync_bench.codecs' records belong to this virtual event.
EVENT_ID = 98765
RETENTION = timedelta(days=7)
#: One input record: its topic, key and value bytes.
Input = tuple[TopicSpec, bytes, bytes]


def tenants() -> TenantsConfig:
    dead = "http://127.0.0.1:9"
    return parse_tenants({
        "marketo_instances": {"capacity": {"munchkin_id": CAPACITY_INSTANCE, "endpoint": dead,
                                           "client_id": "bench",
                                           "client_secret": {"env": "KMSYNC_BENCH_UNUSED"}}},
        "events": [{"name": "bench-transform", "partner_id": PARTNER_ID, "virtual_event_id": EVENT_ID,
                    "marketo_instance": "capacity", "program_id": PROGRAM_ID,
                    "sessions": [{"entry_id": ENTRY_ID, "name": "Keynote"}]}],
    }, "transform_cpu", check_secrets=False)


def poll(i: int) -> PollResponse:
    """A poll answer as ingest writes it from a session's pollsActivity pull (its position numbered)."""
    at = T0 + timedelta(minutes=20, seconds=i % 60)
    return PollResponse(
        partner_id=PARTNER_ID, virtual_event_id=EVENT_ID, user_id=f"attendee{i}@acme-corp.example",
        email=f"attendee{i}@acme-corp.example", source="pull", source_ref=f"pollsActivity {ENTRY_ID}",
        source_time=at, ingested_at=at + timedelta(seconds=2), entry_id=ENTRY_ID, poll_id=f"poll-{i % 3}",
        poll_type="multipleChoice", question=f"Question {i % 3}?", answer=f"Answer {i % 4}", answered_at=at,
        poll_position=i % 3 + 1)


def person(i: int) -> list[Input]:
    """One person's input records: registered (confirmed), attended, a final snapshot, a poll answer."""
    registered = status(i)
    attended = registered.model_copy(update={
        "status": AttendanceStatus.ATTENDED, "previous_status": AttendanceStatus.CONFIRMED,
        "status_time": T0 + timedelta(hours=1), "source_time": T0 + timedelta(hours=1)})
    records = [(ATTENDEE_STATUS, registered), (ATTENDEE_STATUS, attended), (SESSION_ENGAGEMENT, engagement(i)),
               (POLL_RESPONSES, poll(i))]
    return [(spec, r.partition_key().encode(), encode(r)) for spec, r in records]


def inputs(people: int, engagement_only: bool = False) -> list[Input]:
    """Every person's four records; with ``engagement_only`` their engagement snapshots alone (what the
    capacity section of ``make bench`` sends: report 4021 rows)."""
    if engagement_only:
        return [(SESSION_ENGAGEMENT, r.partition_key().encode(), encode(r)) for r in map(engagement, range(people))]
    return [record for i in range(people) for record in person(i)]


def operations(people: int, engagement_only: bool) -> int:
    """What the inputs become: per person a custom object and an activity, and for the whole mix two
    lead upserts, two statuses, two labels and the poll's custom object besides."""
    return (2 if engagement_only else 9) * people


class Pass:
    """One pass over the inputs on fresh state, as engine_quix.py drives KeyedSteps."""

    def __init__(self, steps: KeyedSteps, store: RocksDBStorePartition, checkpoint: int) -> None:
        self.steps, self.store, self.checkpoint = steps, store, checkpoint
        self.outputs = 0
        self.offset = 0

    def run(self, records: list[Input]) -> None:
        for batch in _batches(records, self.checkpoint):
            tx = self.store.begin()
            for spec, key, value in batch:
                self._one(tx, spec, key, value)
            tx.prepare()
            tx.flush()

    def _one(self, tx: RocksDBPartitionTransaction, spec: TopicSpec, key: bytes, value: bytes) -> None:
        self.offset += 1
        ms = int(T0.timestamp() * 1000) + self.offset
        source = SourceRef(topic=spec.name, partition=0, offset=self.offset, key=key.decode())
        if spec is not POLL_RESPONSES:
            state: State = tx.as_state(prefix=key, timestamp=ms)  # as engine_quix's steps get it
            self.outputs += len([encode_output(o) for o in self.steps.record(spec, value, source, state)])
            return
        envelope = self.steps.route_poll(value, source)
        crossed = Envelope.decode(envelope.key, envelope.encode())  # the repartition topic
        session: State = tx.as_state(prefix=crossed.key.encode(), timestamp=ms)
        self.outputs += len([encode_output(o) for o in self.steps.poll(crossed, session)])


def encode_output(output: tuple[str, bytes, bytes]) -> bytes:
    """What engine_quix's serializers hand to the producer: the value bytes as they are."""
    return output[2]


def _batches(records: list[Input], size: int) -> Iterator[list[Input]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def measure(people: int, repeat: int, checkpoint: int, profile: Path | None, engagement_only: bool) -> list[float]:
    config, records = tenants(), inputs(people, engagement_only)
    profiler = cProfile.Profile(time.thread_time) if profile is not None else None
    out: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kmsync-transform-cpu-") as tmp:
        for n in range(repeat + 1):  # the first pass warms up (imports, caches, adapters)
            steps = KeyedSteps(config, TransformMetrics(), clock=lambda: T0 + timedelta(hours=2),
                               retention=RETENTION)
            store = RocksDBStorePartition(str(Path(tmp) / f"pass-{n}"), options=RocksDBOptions())
            one = Pass(steps, store, checkpoint)
            if profiler is not None and n:
                profiler.enable()
            before = time.process_time()
            one.run(records)
            spent = time.process_time() - before
            if profiler is not None:
                profiler.disable()
            store.close()
            if one.outputs != operations(people, engagement_only):
                raise RuntimeError(f"{one.outputs} outputs for {len(records)} input records")
            if n:
                out.append(per_10k(spent, len(records)))
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    return out


def counted(metrics: TransformMetrics) -> tuple[float, float]:
    """(input records read, operations emitted) so far (the record path's counts flushed first, as a scrape does)."""
    metrics.tally.flush()
    def total(counter: object) -> float:
        return sum(s.value for m in counter.collect() for s in m.samples  # type: ignore[attr-defined]
                   if s.name.endswith("_total"))
    return total(metrics.records_in), total(metrics.ops_out)


async def produce(bootstrap: str, prefix: str, records: list[Input]) -> None:
    await ensure_topics(bootstrap, ALL_TOPICS, prefix)
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        for spec, key, value in records:
            await producer.send(topic_name(spec, prefix), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def app_pass(bootstrap: str, prefix: str, state_dir: Path, records: list[Input], ops: int,
             profiler: cProfile.Profile | None, probe: Callable[[], float] | None = None) -> Timed:
    """One run of the quix engine over records already on the topics: CPU s of the process and of
    the engine's thread (this one: quixstreams' loop and the steps; the rest is librdkafka's threads)
    from its first record processed to its last operation emitted (and what ``probe`` grew by then)."""
    settings = TransformSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, transform_state_dir=state_dir,
                                 transform_state_retention_seconds=int(RETENTION.total_seconds()))
    engine = QuixTransform(settings, tenants())

    def stop() -> None:
        assert engine.app is not None
        engine.app.stop()

    return timed_run(engine.run, stop, engine.metrics, ops, profiler, probe)


class Timed(NamedTuple):
    """What an engine spent from its first record processed to its last operation emitted."""

    #: CPU s of this process (every thread).
    process: float
    #: CPU s of the engine's thread.
    thread: float
    #: How much the probe's reading grew (0.0 without a probe), e.g. another process's CPU s.
    probe: float = 0.0


def timed_run(run: Callable[[], None], stop: Callable[[], None], metrics: TransformMetrics, ops: int,
              profiler: cProfile.Profile | None, probe: Callable[[], float] | None = None) -> Timed:
    """``run()`` an engine on this thread until its steps have emitted ``ops`` operations, then ``stop()``
    it: CPU s of the process and of this thread from the engine's first record processed to its last
    operation emitted (both read off ``metrics``, as a scrape would, by a watching thread), and how much
    ``probe()`` grew in between."""
    marks: list[tuple[float, float, float]] = []
    engine_thread = time.pthread_getcpuclockid(threading.get_ident())

    def mark() -> None:
        marks.append((time.process_time(), time.clock_gettime(engine_thread), probe() if probe else 0.0))

    def watch() -> None:
        asyncio.run(wait_for(lambda: counted(metrics)[0] > 0, within=300, what="the engine's first record"))
        mark()
        asyncio.run(wait_for(lambda: counted(metrics)[1] >= ops, within=900, what="every operation"))
        mark()
        stop()

    watcher = threading.Thread(target=watch, name="watch", daemon=True)
    watcher.start()
    if profiler is not None:
        profiler.enable()
    run()
    if profiler is not None:
        profiler.disable()
    watcher.join(timeout=60)
    if len(marks) != 2:
        raise RuntimeError(f"the engine stopped before it processed every record: {counted(metrics)}")
    return Timed(*(after - before for before, after in zip(marks[0], marks[1], strict=True)))


def measure_app(people: int, repeat: int, profile: Path | None, engagement_only: bool) -> list[tuple[float, float]]:
    records = inputs(people, engagement_only)
    ops = operations(people, engagement_only)
    profiler = cProfile.Profile(time.thread_time) if profile is not None else None
    out: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="kmsync-transform-cpu-") as tmp:
        broker = start_broker(Path(tmp) / "kafka")
        try:
            for n in range(repeat + 1):  # the first pass warms up
                asyncio.run(produce(broker.bootstrap, f"pass{n}.", records))
                process, thread, _ = app_pass(broker.bootstrap, f"pass{n}.", Path(tmp) / f"state-{n}", records, ops,
                                           profiler if n else None)
                if n:
                    out.append((per_10k(process, len(records)), per_10k(thread, len(records))))
        finally:
            broker.stop()
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m kmsync_bench.transform_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--people", type=int, default=5_000, help="four input records each")
    p.add_argument("--engagement-only", action="store_true", help="one engagement snapshot per person")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--checkpoint", type=int, default=1_000, help="input records per state transaction")
    p.add_argument("--profile", type=Path)
    p.add_argument("--app", action="store_true", help="the quix engine with a broker (this process's CPU)")
    args = p.parse_args(argv)
    if args.app:
        both = measure_app(args.people, args.repeat, args.profile, args.engagement_only)
        threads = [t for _, t in both]
        print("transform quix engine, its thread's CPU s per 10,000 input rows: "
              + ", ".join(f"{v:.3f}" for v in threads) + f" (median {statistics.median(threads):.3f})")
        values = [p for p, _ in both]
    else:
        values = measure(args.people, args.repeat, args.checkpoint, args.profile, args.engagement_only)
    what = "quix engine, process" if args.app else "per-record path"
    print(f"transform {what}, CPU s per 10,000 input rows: " + ", ".join(f"{v:.3f}" for v in values)
          + f" (median {statistics.median(values):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
