"""aiokafka against confluent-kafka (librdkafka) on kmsync's Kafka hot paths (issue #22).

``python -m kmsync_bench.clients [--records 20000] [--repeat 3]`` starts its own broker
(kmsync_testing.kafka_broker), puts ``--records`` realistic engagement records (the contract JSON
ingest writes, keyed by email as ingest keys them) on a source topic, then moves them to another
topic with each client library in each of the two ways kmsync's services use Kafka:

- ``idempotent``: consume a batch (500, as kmsync_bench.passthrough), produce it with acks=all and
  idempotence, wait for the acknowledgements, commit the consumer's offsets (the sink's pattern);
- ``transactional``: consume a batch, produce it and the consumer's offsets in one transaction,
  commit the transaction (read_committed; the pattern of ingest's pulls and transform's
  exactly-once).

Each run is a process of its own (``--variant``), with a fresh consumer group, so its CPU
(``time.process_time``: every thread, librdkafka's included) is its own; the broker's CPU is read
from /proc around the loop. The variants run in rotation ``--repeat`` times; the table gives the
median per variant. Results and the choice are in docs/decisions.md ("Kafka client library").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from pydantic import BaseModel, ConfigDict

from kmsync_bench.codecs import engagement, wire_bytes
from kmsync_bench.passthrough import BATCH, DEST_TOPIC, SOURCE_TOPIC, PassthroughRun, _broker_seconds, fill, partitions
from kmsync_kafka.clients import reliable_producer
from kmsync_testing.kafka_broker import start_broker

Library = Literal["aiokafka", "confluent"]
Mode = Literal["idempotent", "transactional"]
VARIANTS: list[tuple[Library, Mode]] = [("aiokafka", "idempotent"), ("confluent", "idempotent"),
                                        ("aiokafka", "transactional"), ("confluent", "transactional")]
WITHIN_SECONDS = 300.0


class VariantRun(BaseModel):
    """One run of one variant, as its process prints it."""

    model_config = ConfigDict(extra="forbid")
    library: Library
    mode: Mode
    run: PassthroughRun


def _start(broker_pid: int) -> tuple[float, float, float]:
    """(broker CPU s, client CPU s, monotonic) at the start of a loop."""
    return _broker_seconds(broker_pid), time.process_time(), time.monotonic()


def _result(start: tuple[float, float, float], moved: int, broker_pid: int) -> PassthroughRun:
    broker0, cpu0, t0 = start
    return PassthroughRun(records=moved, seconds=time.monotonic() - t0, client_cpu_seconds=time.process_time() - cpu0,
                          broker_cpu_seconds=_broker_seconds(broker_pid) - broker0)


# ----------------------------------------------------------------------------- aiokafka
async def aiokafka_run(bootstrap: str, mode: Mode, group: str, count: int, n_partitions: int,
                       broker_pid: int) -> PassthroughRun:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    producer: AIOKafkaProducer = reliable_producer(
        bootstrap, **({"transactional_id": f"{group}-tx"} if mode == "transactional" else {}))
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(SOURCE_TOPIC, p) for p in range(n_partitions)])
        start = _start(broker_pid)
        moved = 0
        async with asyncio.timeout(WITHIN_SECONDS):
            while moved < count:
                batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
                messages = [m for ms in batches.values() for m in ms]
                if not messages:
                    continue
                if mode == "transactional":
                    async with producer.transaction():
                        for m in messages:
                            await producer.send(DEST_TOPIC, m.value, key=m.key)
                        offsets = {tp: ms[-1].offset + 1 for tp, ms in batches.items() if ms}
                        await producer.send_offsets_to_transaction(offsets, group)
                else:
                    futures = [await producer.send(DEST_TOPIC, m.value, key=m.key) for m in messages]
                    await asyncio.gather(*futures)
                    await consumer.commit()
                moved += len(messages)
        return _result(start, moved, broker_pid)
    finally:
        await producer.stop()
        await consumer.stop()


# ----------------------------------------------------------------------------- confluent-kafka
def _ck_producer(bootstrap: str, mode: Mode, group: str) -> Producer:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                              "linger.ms": 5, "batch.size": 1_000_000}
    if mode == "transactional":
        config["transactional.id"] = f"{group}-tx"
    return Producer(config)


def confluent_run(bootstrap: str, mode: Mode, group: str, count: int, n_partitions: int,
                  broker_pid: int) -> PassthroughRun:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    producer = _ck_producer(bootstrap, mode, group)
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    try:
        consumer.assign([CkTopicPartition(SOURCE_TOPIC, p) for p in range(n_partitions)])
        if mode == "transactional":
            producer.init_transactions(30)
        start = _start(broker_pid)
        deadline = time.monotonic() + WITHIN_SECONDS
        moved = 0
        while moved < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{moved} of {count} moved")
            messages = [m for m in consumer.consume(BATCH, 1.0) if m.error() is None]
            if not messages:
                continue
            if mode == "transactional":
                producer.begin_transaction()
            for m in messages:
                producer.produce(DEST_TOPIC, m.value(), m.key(), on_delivery=delivered)
            if mode == "transactional":
                producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                     consumer.consumer_group_metadata(), 30)
                producer.commit_transaction(30)
            else:
                producer.flush(30)
                consumer.commit(asynchronous=False)
            if failures:
                raise RuntimeError(f"delivery failed: {failures[:3]}")
            moved += len(messages)
        return _result(start, moved, broker_pid)
    finally:
        producer.flush(10)
        consumer.close()


# ----------------------------------------------------------------------------- orchestration
async def run_variant(bootstrap: str, library: Library, mode: Mode, group: str, count: int, n_partitions: int,
                      broker_pid: int) -> VariantRun:
    """One variant in a process of its own; its JSON line validated."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kmsync_bench.clients", "--variant", f"{library}:{mode}", "--bootstrap", bootstrap,
        "--group", group, "--count", str(count), "--partitions", str(n_partitions), "--broker-pid", str(broker_pid),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{library}:{mode} exited with {proc.returncode}: {err.decode()[-1500:]}")
    return VariantRun.model_validate_json(out.decode().strip().splitlines()[-1])


async def compare(bootstrap: str, broker_pid: int, records: int, repeat: int) -> list[VariantRun]:
    n = partitions()
    values = [engagement(i) for i in range(records)]
    await fill(bootstrap, [((e.email or e.user_id).lower().encode(), wire_bytes(e)) for e in values], n)
    runs: list[VariantRun] = []
    for r in range(repeat):
        for library, mode in VARIANTS:
            run = await run_variant(bootstrap, library, mode, f"bench-clients-{library}-{mode}-{r}", records, n,
                                    broker_pid)
            print(f"  {library:9} {mode:13} run {r + 1}: {_line(run.run)}", file=sys.stderr)
            runs.append(run)
    return runs


def _line(run: PassthroughRun) -> str:
    per = 10_000 / run.records
    return (f"client {run.client_cpu_seconds * per:.3f}  broker {run.broker_cpu_seconds * per:.3f} CPU s per 10,000; "
            f"{run.records / run.seconds:,.0f} records/s")


def table(runs: list[VariantRun]) -> str:
    lines = ["| library | mode | client CPU s per 10,000 | broker CPU s per 10,000 | records/s |",
             "|---|---|---|---|---|"]
    for library, mode in VARIANTS:
        mine = [v.run for v in runs if (v.library, v.mode) == (library, mode)]
        client = statistics.median(r.client_cpu_seconds * 10_000 / r.records for r in mine)
        broker = statistics.median(r.broker_cpu_seconds * 10_000 / r.records for r in mine)
        rate = statistics.median(r.records / r.seconds for r in mine)
        lines.append(f"| {library} | {mode} | {client:.3f} | {broker:.3f} | {rate:,.0f} |")
    return "\n".join(lines)


def _one_variant(args: argparse.Namespace) -> int:
    library, mode = args.variant.split(":")
    if (library, mode) not in VARIANTS:
        print(f"unknown variant {args.variant!r}; one of {[f'{a}:{b}' for a, b in VARIANTS]}", file=sys.stderr)
        return 2
    if library == "aiokafka":
        run = asyncio.run(aiokafka_run(args.bootstrap, mode, args.group, args.count, args.partitions, args.broker_pid))
    else:
        run = confluent_run(args.bootstrap, mode, args.group, args.count, args.partitions, args.broker_pid)
    print(json.dumps(VariantRun(library=library, mode=mode, run=run).model_dump()))
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m kmsync_bench.clients", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    for internal in ("--bootstrap", "--group", "--count", "--partitions", "--broker-pid"):
        p.add_argument(internal, help=argparse.SUPPRESS, type=int if internal in (
            "--count", "--partitions", "--broker-pid") else str)
    args = p.parse_args(argv)
    if args.variant:
        return _one_variant(args)
    if args.records < 1 or args.repeat < 1:
        p.error("--records and --repeat must be at least 1")
    with tempfile.TemporaryDirectory(prefix="kmsync-clients-") as tmp:
        broker = start_broker(Path(tmp) / "kafka")
        try:
            runs = asyncio.run(compare(broker.bootstrap, broker.process.pid, args.records, args.repeat))
        finally:
            broker.stop()
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
