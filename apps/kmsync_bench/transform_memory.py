"""Measure transform's memory and start-up after an event's state retention has passed (issue #14).

    .venv/bin/python -m kmsync_bench.transform_memory [--people 20000] [--retention-seconds 3600]

Starts a private Kafka broker and `kmsync transform` (quix engine) as its own process, then:
1. idle: the process's RSS once it is ready;
2. event A: `--people` attendees (registered, a final engagement snapshot, attended), with Kafka
   timestamps 2 × cycles + 2 hours old (10 for 4 cycles); RSS and the state directory's size once every
   record is processed;
3. event B: a few records timestamped now, on every input partition, which moves each partition's
   event time past A's retention; quixstreams sweeps A's expired entries (deletes, with tombstones on
   the changelog); RSS and the state directory's size again;
4. a restart with an empty state directory (a new pod): time to ready and recovered, RSS, and how
   many changelog records the recovery had to read.
A measurement, not a test: docs/benchmarks.md records its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import yaml
from pydantic import BaseModel

from kmsync_bench.cpu import parse_stat
from kmsync_bench.upload_rss import rss_kib
from kmsync_common.metrics_text import sample_sum
from kmsync_contracts import AttendanceStatus, AttendeeStatus, SessionEngagement, encode
from kmsync_contracts.groups import TRANSFORM_APP_ID
from kmsync_contracts.topics import ALL_TOPICS, ATTENDEE_STATUS, SESSION_ENGAGEMENT, TopicSpec
from kmsync_kafka import ensure_topics, reliable_producer, topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker, free_port, start_broker
from kmsync_testing.waiting import wait_for
from kmsync_transform.store_upkeep import CHECK_SECONDS

PARTNER, EVENT_A, EVENT_B = 100, 200, 900  # events A, A+1, ... expire one after the other; B ticks
GROUP = TRANSFORM_APP_ID
SECRET_ENV = "KMSYNC_MEASURE_UNUSED_SECRET"
MAX_CYCLES = 50
#: After an event: two checkpoints (the sweep's deletes reach the store), then a round of the stores' upkeep
#: (services/kmsync_transform/store_upkeep.py: compaction after an expiry, memory given back).
SETTLE_SECONDS = CHECK_SECONDS + 5


def tenants() -> dict[str, object]:
    events = [{"name": f"event-{n}", "partner_id": PARTNER, "virtual_event_id": n, "marketo_instance": "main",
               "program_id": 1000 + n, "sessions": [{"entry_id": "0_keynote", "name": "Keynote"}]}
              for n in [*range(EVENT_A, EVENT_A + MAX_CYCLES), EVENT_B]]
    return {"marketo_instances": {"main": {"munchkin_id": "123-ABC-456", "endpoint": "http://127.0.0.1:1",
                                           "client_id": "id", "client_secret": {"env": SECRET_ENV}}},
            "events": events}


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    return rss_kib(pid, field) / 1024


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process (proc(5))."""
    return parse_stat(Path(f"/proc/{pid}/stat").read_text()).own_seconds


def dir_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1_048_576


def person_records(event: int, n: int, when: datetime, first: int = 0) -> list[tuple[TopicSpec, BaseModel]]:
    out: list[tuple[TopicSpec, BaseModel]] = []
    for i in range(first, first + n):
        user, email = f"u{event}-{i}", f"person{i}.e{event}@example.com"
        common = {"partner_id": PARTNER, "virtual_event_id": event, "user_id": user, "email": email,
                  "source": "pull", "source_time": when, "ingested_at": when}
        out += [
            (ATTENDEE_STATUS, AttendeeStatus(**common, status=AttendanceStatus("registered"), status_time=when)),
            (SESSION_ENGAGEMENT, SessionEngagement(**common, entry_id="0_keynote", is_final=True, plays=1)),
            (ATTENDEE_STATUS, AttendeeStatus(**common, status=AttendanceStatus("attended"),
                                             status_time=when + timedelta(minutes=5))),
        ]
    return out


async def produce(bootstrap: str, items: list[tuple[TopicSpec, BaseModel]], when: datetime) -> None:
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        ts = int(when.timestamp() * 1000)
        for spec, record in items:
            await producer.send(topic_name(spec, ""), encode(record),
                                key=record.partition_key().encode(), timestamp_ms=ts)  # type: ignore[attr-defined]
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class Transform:
    process: subprocess.Popen[bytes]
    port: int

    async def records_in(self) -> float:
        try:
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{self.port}/metrics")).text
        except httpx.HTTPError:
            return 0.0
        return sample_sum(text, "kmsync_transform_records_in_total")

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


def start_transform(broker: KafkaBroker, work: Path, state: Path, retention: int, segment_ms: int) -> Transform:
    tenants_file = work / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump(tenants()))
    port = free_port()
    env = dict(os.environ, KMSYNC_KAFKA_BOOTSTRAP=broker.bootstrap, KMSYNC_TENANTS_FILE=str(tenants_file),
               KMSYNC_HTTP_HOST="127.0.0.1", KMSYNC_HTTP_PORT=str(port), KMSYNC_TRANSFORM_ENGINE="quix",
               KMSYNC_TRANSFORM_STATE_DIR=str(state), KMSYNC_TRANSFORM_STATE_RETENTION_SECONDS=str(retention),
               KMSYNC_TRANSFORM_CHANGELOG_SEGMENT_MS=str(segment_ms),
               KMSYNC_TRANSFORM_CHANGELOG_DELETE_RETENTION_MS=str(segment_ms),
               **{SECRET_ENV: "unused"})
    kmsync = Path(sys.executable).with_name("kmsync")
    with (work / "transform.log").open("ab") as log:
        proc = subprocess.Popen([str(kmsync), "transform"], env=env, stdout=log, stderr=subprocess.STDOUT)
    return Transform(proc, port)


async def until(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """kmsync_testing.waiting.wait_for, timed: the seconds the condition took to hold."""
    start = time.monotonic()
    await wait_for(condition, within=within, what=what)
    return time.monotonic() - start


async def changelog_records(bootstrap: str) -> tuple[int, int]:
    """(records, tombstones) on transform's changelog topics."""
    from aiokafka import AIOKafkaConsumer

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        topics = [t for t in await probe.topics() if t.startswith("changelog__") and GROUP in t]
    finally:
        await probe.stop()
    records = tombstones = 0
    for topic in topics:
        for m in await read_to_end(bootstrap, topic, within=120):
            records += 1
            tombstones += m.value is None
    return records, tombstones


async def measure(people: int, cycles: int, retention: int, compact_ms: int, work: Path) -> dict[str, float]:
    broker = start_broker(work / "kafka", partitions=6)
    out: dict[str, float] = {"people": people, "cycles": cycles, "retention_s": retention}
    try:
        await ensure_topics(broker.bootstrap, ALL_TOPICS, "")
        now = datetime.now(UTC)
        # Every event in the past: Kafka 4 refuses timestamps over an hour ahead (log.message.timestamp.after.max.ms).
        old = now - timedelta(hours=2 * cycles + 2)
        state = work / "state"
        t = start_transform(broker, work, state, retention, compact_ms or 600_000)
        try:
            out["start_s"] = await until(t.ready, 120, "transform ready")
            await asyncio.sleep(3)  # let start-up allocations finish before the idle figure
            out["idle_rss_mib"] = rss_mib(t.process.pid)
            idle_cpu = cpu_seconds(t.process.pid)
            total = await play_events(t, broker, people, cycles, old, out, state)
            tick = person_records(EVENT_B, 60, now)
            await produce(broker.bootstrap, tick, now)
            await until(lambda: _at_least(t, total + len(tick)), 300, "the last event's expiry")
            await asyncio.sleep(SETTLE_SECONDS)
            out["after_expiry_rss_mib"] = rss_mib(t.process.pid)
            out["after_expiry_state_mib"] = dir_mib(state)
            out["peak_rss_mib"] = rss_mib(t.process.pid, "VmHWM")
            out["events_cpu_s"] = cpu_seconds(t.process.pid) - idle_cpu  # every event, its sweeps, the upkeep
            out["store_compactions"] = _count(work / "transform.log", "state compacted after an expiry")
        finally:
            t.process.terminate()
            t.process.wait(timeout=60)
        changelog, tombstones = await changelog_records(broker.bootstrap)
        out["changelog_records"], out["changelog_tombstones"] = changelog, tombstones
        if compact_ms:
            out["compacted_changelog_records"] = await compact_changelogs(broker, work, compact_ms)
            changelog, tombstones = await changelog_records(broker.bootstrap)
        shutil.rmtree(state)
        log = work / "transform.log"
        done_before = _recoveries(log)
        t = start_transform(broker, work, state, retention, compact_ms or 600_000)
        try:
            out["restart_ready_s"] = await until(t.ready, 300, "transform ready after restart")
            out["restart_recovered_s"] = out["restart_ready_s"] + await until(
                lambda: _recovered(log, done_before), 600, "recovery complete")
            await asyncio.sleep(2)
            out["restart_rss_mib"] = rss_mib(t.process.pid)
            out["restart_state_mib"] = dir_mib(state)
        finally:
            t.process.terminate()
            t.process.wait(timeout=60)
    finally:
        broker.stop()
    return out


async def play_events(t: Transform, broker: KafkaBroker, people: int, cycles: int, old: datetime,
                      out: dict[str, float], state: Path) -> int:
    """The events one after the other; RSS and the state directory after each. The records produced."""
    total = 0
    for k in range(cycles):
        # Event k's records are 2 (cycles - k) + 2 hours old: each next event moves the partitions'
        # event time 2 hours on, past the previous event's retention (1 hour by default).
        when = old + timedelta(hours=2 * k)
        records = person_records(EVENT_A + k, people, when)
        started = time.monotonic()
        await produce(broker.bootstrap, records, when)
        total += len(records)
        await until(partial(_at_least, t, total), 900, f"event {k + 1} processed")
        out[f"event{k + 1}_seconds"] = time.monotonic() - started
        await asyncio.sleep(SETTLE_SECONDS)
        out[f"after_event{k + 1}_rss_mib"] = rss_mib(t.process.pid)
        out[f"after_event{k + 1}_state_mib"] = dir_mib(state)
    return total


async def _at_least(t: Transform, n: int) -> bool:
    return await t.records_in() >= n


async def compact_changelogs(broker: KafkaBroker, work: Path, segment_ms: int) -> float:
    """After segment_ms, one more write per partition rolls the changelogs' segments; then the log
    cleaner (log.cleaner.backoff.ms 15 s) compacts the rolled ones. The changelog records left."""
    await asyncio.sleep(segment_ms / 1000 + 1)  # segments roll on the first write after segment.ms
    t = start_transform(broker, work, work / "state-compaction", 3600, segment_ms)
    try:
        now = datetime.now(UTC)
        late = person_records(EVENT_B, 120, now, first=10_000)
        await produce(broker.bootstrap, late, now)
        await until(lambda: _at_least(t, len(late)), 600, "the rolling writes processed")
        await asyncio.sleep(3)  # a checkpoint: the writes reach the changelogs
    finally:
        t.process.terminate()
        t.process.wait(timeout=60)
    shutil.rmtree(work / "state-compaction", ignore_errors=True)
    await asyncio.sleep(30)  # two passes of the log cleaner
    return float((await changelog_records(broker.bootstrap))[0])


def _count(log: Path, line: str) -> int:
    return log.read_text(errors="replace").count(line)


def _recoveries(log: Path) -> int:
    return _count(log, "Recovery process complete")


async def _recovered(log: Path, before: int) -> bool:
    return _recoveries(log) > before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmsync_bench.transform_memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=20_000, help="attendees of the expiring event A")
    parser.add_argument("--cycles", type=int, default=3,
                        help="events one after the other, each expiring the one before")
    parser.add_argument("--retention-seconds", type=int, default=3600,
                        help="KMSYNC_TRANSFORM_STATE_RETENTION_SECONDS (event A is 2 x cycles + 2 hours old)")
    parser.add_argument("--compact-ms", type=int, default=10_000,
                        help="KMSYNC_TRANSFORM_CHANGELOG_SEGMENT_MS and _DELETE_RETENTION_MS for the run (production: "
                             "600000; shorter makes the measurement quicker), and before the restart let the "
                             "log cleaner compact the changelogs (0: the defaults, no compaction step)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    args = parser.parse_args(argv)
    if not 1 <= args.cycles <= MAX_CYCLES:
        parser.error(f"--cycles must be 1..{MAX_CYCLES}")
    work = Path(tempfile.mkdtemp(prefix="kmsync-transform-memory-"))
    try:
        result = asyncio.run(measure(args.people, args.cycles, args.retention_seconds, args.compact_ms, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")
    for key, value in result.items():
        print(f"{key:24} {value:,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
