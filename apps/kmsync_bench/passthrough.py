"""The floor kmsync's CPU is compared with: a bare aiokafka passthrough on the same broker.

A copy of the records ingest wrote in the capacity section (same number, same keys and values) is
put on a topic of its own; then a separate process (``python -m kmsync_bench.passthrough``, so its
CPU is its own) consumes them in batches of 500, produces each batch to another topic with the
producer settings kmsync uses (acks=all, idempotent), waits for the acknowledgements and commits
the consumer's offsets. It reports its own CPU (utime + stime of every thread) and the broker's
(/proc/<broker pid>/stat), both taken around the loop only, as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import BaseModel, ConfigDict, Field

from kmsync_bench.cpu import read_all_stats, tree_seconds
from kmsync_contracts.topics import SESSION_ENGAGEMENT
from kmsync_kafka.clients import reliable_producer

BATCH = 500
SOURCE_TOPIC = "bench.passthrough-in"
DEST_TOPIC = "bench.passthrough-out"
GROUP = "bench-passthrough"


def partitions() -> int:
    """As many partitions as the topic ingest writes the capacity section's records to."""
    return SESSION_ENGAGEMENT.partitions


class PassthroughRun(BaseModel):
    """What the passthrough process prints (validated when the bench reads it)."""

    model_config = ConfigDict(extra="forbid")
    records: int = Field(ge=1)
    seconds: float = Field(gt=0)
    client_cpu_seconds: float = Field(ge=0)
    broker_cpu_seconds: float = Field(ge=0)


async def create_topics(bootstrap: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, partitions, 1) for t in (SOURCE_TOPIC, DEST_TOPIC) if t not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def fill(bootstrap: str, records: Sequence[tuple[bytes | None, bytes | None]], partitions: int) -> None:
    """The source topic holds exactly ``records`` (key, value), acknowledged."""
    await create_topics(bootstrap, partitions)
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(SOURCE_TOPIC, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _broker_seconds(pid: int) -> float:
    value = tree_seconds(pid, read_all_stats())
    if value is None:
        raise RuntimeError(f"the broker (pid {pid}) is gone")
    return value


async def passthrough(bootstrap: str, count: int, partitions: int, broker_pid: int,
                      within: float = 300.0) -> PassthroughRun:
    """Move ``count`` records from the source topic to the destination, batch by batch."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    producer = reliable_producer(bootstrap)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(SOURCE_TOPIC, p) for p in range(partitions)])
        broker_before, cpu_before, t0 = _broker_seconds(broker_pid), time.process_time(), time.monotonic()
        moved = 0
        async with asyncio.timeout(within):
            while moved < count:
                batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
                futures = [await producer.send(DEST_TOPIC, m.value, key=m.key)
                           for messages in batches.values() for m in messages]
                await asyncio.gather(*futures)
                if futures:
                    await consumer.commit()
                moved += len(futures)
        seconds = time.monotonic() - t0
        return PassthroughRun(records=moved, seconds=seconds, client_cpu_seconds=time.process_time() - cpu_before,
                              broker_cpu_seconds=_broker_seconds(broker_pid) - broker_before)
    finally:
        await producer.stop()
        await consumer.stop()


async def run_process(bootstrap: str, count: int, partitions: int, broker_pid: int) -> PassthroughRun:
    """The passthrough in a process of its own; its JSON line validated."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kmsync_bench.passthrough", "--bootstrap", bootstrap, "--count", str(count),
        "--partitions", str(partitions), "--broker-pid", str(broker_pid),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the passthrough exited with {proc.returncode}: {err.decode()[-1000:]}")
    return PassthroughRun.model_validate_json(out.decode().strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m kmsync_bench.passthrough", description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--broker-pid", type=int, required=True)
    args = p.parse_args(argv)
    if not Path(f"/proc/{args.broker_pid}").exists():
        print(f"no process {args.broker_pid}", file=sys.stderr)
        return 2
    result = asyncio.run(passthrough(args.bootstrap, args.count, args.partitions, args.broker_pid))
    print(json.dumps(result.model_dump()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
