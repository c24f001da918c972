"""Measure how long the sink's activity ledger takes to catch up with marketo.results.v1.

    .venv/bin/python -m kmsync_bench.ledger_catch_up [--outcomes 1000000] [--partitions 6] [--activity-share 0.5]

At every partition assignment the sink reads every replica's outcomes written since its last catch-up
(``kmsync_sink.ledger_reader.LedgerReader``), so that an activity the previous owner of a partition
wrote is never sent again, and routing of the assignment waits for it (services/kmsync_sink/README.md,
"Assignment before its catch-up"). How long that takes decides how long a takeover holds the partitions
it gets. This starts a private broker, writes ``--outcomes`` outcome records of the deployed shape to a
results topic (``--activity-share`` of them custom activities, the rest custom object upserts, which
the reader passes over on their bytes), then times one catch-up of a fresh ``LedgerReader`` over them
(wall and the process's CPU). A measurement, not a test: docs/benchmarks.md ("The activity ledger's
catch-up") records its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kmsync_contracts import encode
from kmsync_contracts.outcomes import RecordOutcome
from kmsync_sink.ledger_reader import LedgerReader
from kmsync_sink.memory import ActivityWrites
from kmsync_testing.kafka_broker import start_broker

MUNCHKIN = "123-ABC-456"
#: Stands for the op id in the templates; replaced by a distinct one per record.
_OP_ID = b"X" * 40


@dataclass(frozen=True)
class CatchUp:
    outcomes: int
    activities: int
    wall_seconds: float
    cpu_seconds: float

    def text(self) -> str:
        rate = self.outcomes / self.wall_seconds if self.wall_seconds else float("inf")
        return (f"catch-up of {self.outcomes:,} outcomes ({self.activities:,} written activities): "
                f"{self.wall_seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU, {rate:,.0f} outcomes/s")


def templates() -> dict[bool, bytes]:
    """An outcome's bytes for an activity (True) and a custom object (False), every correlation key set."""
    now = datetime.now(UTC)
    out: dict[bool, bytes] = {}
    for activity in (True, False):
        out[activity] = encode(RecordOutcome(
            op_id=_OP_ID.decode(), munchkin_id=MUNCHKIN, kind="custom_activity" if activity else "custom_object_upsert",
            status="created", marketo_id="m" * 36, source_time=now, decided_at=now, partner_id=1, virtual_event_id=2,
            session_id="1_abcdefgh", person_key="email#" + "a" * 32, lead_id=12345, request_id="e42b#14272d07d78"))
    return out


def write_outcomes(bootstrap: str, topic: str, outcomes: int, partitions: int, activity_share: float) -> int:
    """Write the outcomes to ``topic`` (created here); returns how many are activities."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result()
    shapes = templates()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
    per_hundred = round(activity_share * 100)
    activities = 0
    for i in range(outcomes):
        activity = i % 100 < per_hundred
        activities += activity
        value = shapes[activity].replace(_OP_ID, f"{i:040d}".encode())
        while True:
            try:
                producer.produce(topic, value, key=MUNCHKIN.encode(), partition=i % partitions)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("outcomes not acknowledged within 60 s")
    return activities


async def time_catch_up(bootstrap: str, topic: str) -> tuple[int, float, float]:
    """One catch-up of a fresh reader over ``topic``: (activities learnt, wall s, CPU s)."""
    ledger = ActivityWrites()
    reader = LedgerReader(bootstrap, topic, ledger, lookback_hours=48)
    await reader.start()
    try:
        cpu, wall = time.process_time(), time.monotonic()
        added = await reader.catch_up()
        return added, time.monotonic() - wall, time.process_time() - cpu
    finally:
        await reader.stop()


def measure(bootstrap: str, topic: str, outcomes: int, partitions: int, activity_share: float) -> CatchUp:
    """Write the outcomes to a new ``topic`` on the broker at ``bootstrap`` and time one catch-up over them."""
    if outcomes <= 0 or partitions <= 0 or not 0 <= activity_share <= 1:
        raise ValueError("outcomes and partitions must be positive, the activity share within 0..1")
    activities = write_outcomes(bootstrap, topic, outcomes, partitions, activity_share)
    added, wall, cpu = asyncio.run(time_catch_up(bootstrap, topic))
    if added != activities:
        raise AssertionError(f"the catch-up learnt {added} activities, not {activities}")
    return CatchUp(outcomes, added, wall, cpu)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m kmsync_bench.ledger_catch_up", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--outcomes", type=int, default=1_000_000, help="outcome records to write and read back")
    p.add_argument("--partitions", type=int, default=6, help="partitions of the results topic")
    p.add_argument("--activity-share", type=float, default=0.5, help="share of the outcomes that are activities")
    args = p.parse_args(argv)
    if args.outcomes <= 0 or args.partitions <= 0 or not 0 <= args.activity_share <= 1:
        p.error("--outcomes and --partitions must be positive, --activity-share within 0..1")
    broker = start_broker(partitions=args.partitions)
    try:
        print(measure(broker.bootstrap, "bench.results", args.outcomes, args.partitions, args.activity_share).text())
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
