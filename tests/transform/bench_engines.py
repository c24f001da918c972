"""Measure a transform engine against a real broker: CPU per 10,000 rows, replicas, kill -9.

    .venv/bin/python tests/transform/bench_engines.py --bootstrap 127.0.0.1:9092 --engine quix \
        --rows 10000 --replicas 2 --kill-after 0.3

Produces `rows` input records (per person: registered, attended, a final engagement snapshot, a poll
answer) under a fresh topic prefix, starts `replicas` × `kmsync transform` with
KMSYNC_TRANSFORM_ENGINE=<engine>, optionally SIGKILLs one replica once that share of the expected
operations is visible (and restarts it with --restart), waits until the consumer group has committed
every input record, then reads marketo.ops.v1 read_committed and reports: missing / unexpected op
ids, op ids present more than once, wall time and the replicas' CPU seconds (utime+stime from /proc,
minus each process's CPU at the moment it became ready) per 10,000 rows. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kmsync_contracts import AttendanceStatus, AttendeeStatus, PollResponse, SessionEngagement, encode
from kmsync_contracts.topics import ATTENDEE_STATUS, MARKETO_OPS, POLL_RESPONSES, SESSION_ENGAGEMENT, TopicSpec
from kmsync_kafka import ensure_topics, reliable_producer, topic_name
from kmsync_testing.kafka_broker import free_port
from kmsync_testing.waiting import wait_for
from kmsync_transform.app import all_partitions
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.routing import route
from kmsync_transform.transformer import Transformer, TransformState

sys.path.insert(0, str(Path(__file__).parent))
from conftest import EVENT, PARTNER, T0, TENANTS, tenants_config

REPO = Path(__file__).resolve().parents[2]
KMSYNC = REPO / ".venv" / "bin" / "kmsync"
INPUTS = (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES)
TICKS = os.sysconf("SC_CLK_TCK")


def rows(n: int) -> list[tuple[TopicSpec, bytes, bytes]]:
    out: list[tuple[TopicSpec, bytes, bytes]] = []
    for i in range(n // 4):
        user, email = f"u{i}", f"person{i}@x.io"
        common: dict[str, Any] = {"partner_id": PARTNER, "virtual_event_id": EVENT, "user_id": user,
                                  "email": email, "source": "pull", "source_time": T0, "ingested_at": T0}
        records: list[tuple[TopicSpec, Any]] = [
            (ATTENDEE_STATUS, AttendeeStatus(**common, status=AttendanceStatus("registered"), status_time=T0)),
            (ATTENDEE_STATUS, AttendeeStatus(**{**common, "source_time": T0.replace(minute=5)},
                                             status=AttendanceStatus("attended"), status_time=T0.replace(minute=5))),
            (SESSION_ENGAGEMENT, SessionEngagement(**common, entry_id="0_keynote", is_final=True, plays=i % 7 + 1)),
            (POLL_RESPONSES, PollResponse(**common, entry_id="0_keynote", poll_id="p1", poll_type="crowd vote",
                                          question="Q?", answer=f"a{i}")),
        ]
        out += [(spec, r.partition_key().encode(), encode(r)) for spec, r in records]
    return out


def expected_op_ids(items: list[tuple[TopicSpec, bytes, bytes]]) -> list[str]:
    tenants = tenants_config()
    state = TransformState.in_memory()
    ids: list[str] = []
    for spec, _, raw in items:
        result = route(spec, raw, SourceRef(), tenants, T0)
        if result.routed is not None:
            ids += [op.op_id for op in Transformer(tenants, state).apply(result.routed).ops]
    return ids


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def produce(bootstrap: str, prefix: str, items: list[tuple[TopicSpec, bytes, bytes]]) -> None:
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        for spec, key, value in items:
            await producer.send(topic_name(spec, prefix), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def lag(bootstrap: str, prefix: str, group: str) -> int:
    """Input records (and repartitioned polls) the group has not committed. A transactional writer
    leaves a commit marker after its records, so `end - committed` is not the lag: read from the
    committed offset read_committed instead and count what comes back before the high watermark (a
    read_committed position passes an open transaction only once it is committed or aborted)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                              enable_auto_commit=False)
    await admin.start()
    await reader.start()
    try:
        # quixstreams' repartition topic too: a poll is done only when its session's step committed
        internal = [t for t in await reader.topics()
                    if t.startswith(f"repartition__{group}") or t == f"{prefix}transform.routed.v1"]
        tps = await all_partitions(reader, [topic_name(s, prefix) for s in INPUTS] + internal)
        committed = await admin.list_consumer_group_offsets(group)
        reader.assign(tps)
        for tp in tps:
            reader.seek(tp, max(committed[tp].offset, 0) if tp in committed else 0)
        ends = await high_watermarks(bootstrap, tps)
        behind = 0
        pending = {tp for tp in tps if await reader.position(tp) < ends[tp]}
        give_up = time.monotonic() + 2
        while pending:
            for msgs in (await reader.getmany(*pending, timeout_ms=200)).values():
                behind += len(msgs)
            pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
            if pending and time.monotonic() > give_up:
                return behind + 1  # an open transaction: not caught up yet
        return behind
    finally:
        await reader.stop()
        await admin.close()


async def high_watermarks(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted")
    await probe.start()
    try:
        return await probe.end_offsets(tps)
    finally:
        await probe.stop()


async def committed_ops(bootstrap: str, prefix: str) -> list[str]:
    """Every op id in marketo.ops.v1 as a read_committed reader sees it, up to the high watermark: a
    killed replica's open transaction holds read_committed readers back (records committed after it
    included) until the broker aborts it, so reading only to the last stable offset can stop short."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                              enable_auto_commit=False, auto_offset_reset="earliest")
    await reader.start()
    try:
        tps = await all_partitions(reader, [topic_name(MARKETO_OPS, prefix)])
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await high_watermarks(bootstrap, tps)
        ids: list[str] = []
        pending = {tp for tp in tps if ends[tp] > 0}
        give_up = time.monotonic() + 90
        while pending and time.monotonic() < give_up:
            for msgs in (await reader.getmany(*pending, timeout_ms=200)).values():
                ids += [json.loads(m.value)["op_id"] for m in msgs]
            pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
        return ids
    finally:
        await reader.stop()


class Replica:
    def __init__(self, name: str, env: dict[str, str], work: Path) -> None:
        self.name, self.port = name, free_port()
        self.log = work / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([str(KMSYNC), "transform"], stdout=out, stderr=subprocess.STDOUT,
                                         env={**env, "KMSYNC_HTTP_PORT": str(self.port)})
        self.cpu_at_ready = 0.0

    def wait_ready(self, within: float = 60) -> None:
        end = time.monotonic() + within
        while time.monotonic() < end:
            try:
                ready = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code
                if ready == 404:  # an older build (the faust app) without /readyz
                    ready = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code
                if ready == 200:
                    self.cpu_at_ready = cpu_seconds(self.proc.pid)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling with a deadline
        raise RuntimeError(f"{self.name} not ready; see {self.log}")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) - self.cpu_at_ready if self.proc.poll() is None else 0.0


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--engine", default="quix")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--kill-after", type=float, default=None, help="share of expected ops seen before kill -9")
    p.add_argument("--restart", action="store_true", help="restart the killed replica identically")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--env", action="append", default=[], help="K=V for the replicas (e.g. another engine's)")
    return p.parse_args()


async def _kill_first(args: argparse.Namespace, prefix: str, replicas: list[Replica], env: dict[str, str],
                      work: Path, threshold: int) -> tuple[list[str], float]:
    """Once `threshold` operations are committed, kill -9 the first replica (and restart it with
    --restart); returns the killed names and the CPU the killed process had used."""
    async def progressed() -> bool:
        return len(await committed_ops(args.bootstrap, prefix)) >= threshold

    await wait_for(progressed, within=args.timeout, what="progress before the kill")
    victim = replicas[0]
    cpu_of_dead = victim.cpu()
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    if args.restart:
        replicas[0] = Replica(f"{victim.name}-restarted", env, work)
        replicas[0].wait_ready()
    return [victim.name], cpu_of_dead


async def _caught_up(args: argparse.Namespace, prefix: str, work: Path) -> None:
    group = f"{prefix}kmsync-transform"

    async def no_lag() -> bool:
        return await lag(args.bootstrap, prefix, group) <= 0

    await wait_for(no_lag, within=args.timeout, what=f"the replicas to catch up (logs in {work})")


def _stop(replicas: list[Replica]) -> None:
    for r in replicas:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
            r.proc.wait(timeout=60)


async def main() -> int:
    args = _parse_args()
    prefix = f"b{uuid.uuid4().hex[:8]}."
    work = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    (work / "tenants.yaml").write_text(yaml.safe_dump(TENANTS))
    await ensure_topics(args.bootstrap, INPUTS, prefix, partitions=args.partitions)
    items = rows(args.rows)
    want = expected_op_ids(items)
    assert len(want) == len(set(want)), "the data set must not expect an op id twice"
    await produce(args.bootstrap, prefix, items)
    env = dict(os.environ, KMSYNC_KAFKA_BOOTSTRAP=args.bootstrap, KMSYNC_TOPIC_PREFIX=prefix,
               KMSYNC_TENANTS_FILE=str(work / "tenants.yaml"), KMSYNC_HTTP_HOST="127.0.0.1",
               KMSYNC_TRANSFORM_ENGINE=args.engine, KMSYNC_LOG_LEVEL="INFO")
    env.update(kv.split("=", 1) for kv in args.env)
    started = time.monotonic()
    replicas = [Replica(f"r{i}", env, work) for i in range(args.replicas)]
    for r in replicas:
        r.wait_ready()
    killed: list[str] = []
    cpu_of_dead = 0.0
    if args.kill_after is not None:
        killed, cpu_of_dead = await _kill_first(args, prefix, replicas, env, work, int(len(want) * args.kill_after))
    await _caught_up(args, prefix, work)
    wall = time.monotonic() - started
    cpu = cpu_of_dead + sum(r.cpu() for r in replicas)
    ids = await committed_ops(args.bootstrap, prefix)
    _stop(replicas)
    counts = Counter(ids)
    report = {
        "engine": args.engine, "rows": len(items), "replicas": args.replicas, "killed": killed,
        "restarted": args.restart, "expected_ops": len(want), "committed_ops": len(ids),
        "missing": len(set(want) - set(ids)), "unexpected": len(set(ids) - set(want)),
        "op_ids_more_than_once": sum(1 for c in counts.values() if c > 1),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 2),
        "cpu_s_per_10k_rows": round(cpu * 10_000 / len(items), 2), "logs": str(work),
    }
    print(json.dumps(report))
    return 0 if not (report["missing"] or report["unexpected"] or report["op_ids_more_than_once"]) else 1

if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
