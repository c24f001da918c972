"""Reproduce the transactions a broker crash leaves hanging, and say which partitions they hold and why.

``python -m kmsync_bench.hanging_txn --crashes N [--seed S] [--work-dir /tmp/kmsync-hang]``: a broker of its own
(kmsync_testing.kafka_broker, fresh ports and data under ``--work-dir``), transform (the quix engine, exactly-once,
as a child process, restarted whenever it exits) and a transactional load on transform's inputs (a child process:
a confluent-kafka producer with a fixed transactional id, as ingest's pull pages are, committing a few people's
status, engagement and poll records per transaction). Then N times: run for a random few seconds, SIGKILL the
broker, start it again on the same data, and watch the LSO and log end of every partition of every topic
(kmsync_kafka.hanging.HangingWatch): a partition whose LSO stays behind its log end, unmoved, for longer than
the producers' transaction.timeout.ms + the broker's abort scan + ``--margin`` holds a hanging transaction
(docs/reference/streaming.md §3.1). For each, the Java Admin API (HangingTxnTool.java next to this file:
describeProducers, listTransactions, describeTransactions) says the producer id and epoch and the coordinator's
state of the transactional id holding it; the tool then aborts it (KIP-664), so each crash starts clean.
``--instance-id NAME`` runs transform with ``KMSYNC_TRANSFORM_INSTANCE_ID`` (its restart ends what it left open).
Every finding is a JSON line in ``<work-dir>/results.jsonl``; the summary is printed at the end. Results of
the runs so far: docs/reference/streaming.md §3.1 and docs/reliability.md.

The load is small (about 80 input records a second) and there is one broker: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from kmsync_bench.transform_cpu import person, tenants
from kmsync_cli.processes import ProcessGroup
from kmsync_common.logs import setup_logging
from kmsync_contracts.topics import ALL_TOPICS
from kmsync_kafka import ensure_topics, topic_name
from kmsync_kafka.hanging import HangingWatch, Held, OffsetReader
from kmsync_testing.kafka_broker import KafkaBroker, libs_dir, restart_broker, start_broker

PREFIX = "hang."
JAVA_TOOL = Path(__file__).with_name("HangingTxnTool.java")
#: The broker's scan for timed-out transactions (default 10 s), shortened so the experiment waits less.
ABORT_SCAN_MS = 2_000
#: The load: people per transaction (four input records each) and transactions per second.
PEOPLE_PER_TRANSACTION = 5
TRANSACTIONS_PER_SECOND = 4.0
LOAD_TRANSACTIONAL_ID = "hang-load"


@dataclass(frozen=True)
class Options:
    crashes: int
    seed: int
    work_dir: Path
    timeout_ms: int
    margin: float
    min_run: float
    max_run: float
    #: transform's KMSYNC_TRANSFORM_INSTANCE_ID ("": quixstreams' random transactional id per process).
    instance_id: str = ""

    @property
    def threshold(self) -> float:
        return (self.timeout_ms + ABORT_SCAN_MS) / 1000 + self.margin


# ----- the children
def run_transform(bootstrap: str, timeout_ms: int, instance_id: str) -> None:
    from kmsync_transform.engine_quix import QuixTransform
    from kmsync_transform.settings import TransformSettings

    setup_logging("transform")
    settings = TransformSettings(kafka_bootstrap=bootstrap, topic_prefix=PREFIX,
                                 transform_transaction_timeout_ms=timeout_ms, transform_instance_id=instance_id)
    QuixTransform(settings, tenants()).run()


def run_load(bootstrap: str, timeout_ms: int, seed: int) -> None:
    """Commit transactions of input records until an error ends the process (the parent starts it again)."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": LOAD_TRANSACTIONAL_ID,
                         "transaction.timeout.ms": timeout_ms, "message.timeout.ms": timeout_ms,
                         "partitioner": "murmur2_random", "linger.ms": 5})
    producer.init_transactions(30)
    i = random.Random(seed).randrange(1_000_000)
    while True:
        producer.begin_transaction()
        for _ in range(PEOPLE_PER_TRANSACTION):
            for spec, key, value in person(i):
                producer.produce(topic_name(spec, PREFIX), value, key)
            i += 1
        producer.commit_transaction(30)
        time.sleep(1 / TRANSACTIONS_PER_SECOND)  # the load's pace, not synchronisation


# ----- the experiment
def start_children(options: Options, broker: KafkaBroker) -> ProcessGroup:
    procs = ProcessGroup(options.work_dir / "logs")
    me = [sys.executable, "-m", "kmsync_bench.hanging_txn", "--bootstrap", broker.bootstrap,
          "--timeout-ms", str(options.timeout_ms), "--seed", str(options.seed),
          "--instance-id", options.instance_id, "--child"]
    procs.start("transform", [*me, "transform"])
    procs.start("load", [*me, "load"])
    return procs


def revive(procs: ProcessGroup) -> None:
    """Start again every child that exited (a broker crash ends the load; transform sometimes)."""
    for child in procs.dead():
        procs.restart(child)


def run_for(procs: ProcessGroup, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        revive(procs)
        time.sleep(0.5)  # keeping children alive while the load runs


async def watch(bootstrap: str, procs: ProcessGroup, threshold: float) -> tuple[list[Held], dict[str, int]]:
    """Every partition whose LSO stays behind its log end, unmoved, for ``threshold`` seconds from now; and
    the log end of each topic (summed over its partitions), to show the load flowed."""
    judge = HangingWatch(threshold)
    reader = OffsetReader(bootstrap)
    await reader.start()
    try:
        topics = sorted(await reader.topics())
        started = time.monotonic()
        while True:
            revive(procs)
            now = time.monotonic()
            offsets = await reader.read(topics)
            verdicts = judge.observe(now, offsets)
            if now - started >= threshold + 1:
                ends: Counter[str] = Counter()
                for tp, seen in offsets.items():
                    ends[tp.topic.removeprefix(PREFIX)] += seen.end
                return verdicts.hanging, dict(ends)
            await asyncio.sleep(1.0)  # the observation interval
    finally:
        await reader.stop()


def java_tool(action: str, bootstrap: str, held: list[Held], min_age: float) -> list[dict[str, Any]]:
    """HangingTxnTool's answer: only the transactions whose producer wrote nothing to the partition for
    ``min_age`` seconds (a live producer's next transaction on a held partition is left alone)."""
    argv = ["java", "-cp", f"{libs_dir()}/*", str(JAVA_TOOL), action, bootstrap, f"--min-age-ms={int(min_age * 1000)}",
            *(f"{h.tp.topic}:{h.tp.partition}" for h in held)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        return [{"error": f"{action} failed ({done.returncode}): {done.stderr[-600:]}"}]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def one_crash(n: int, options: Options, broker: KafkaBroker, procs: ProcessGroup, rng: random.Random) -> dict[str, Any]:
    ran = rng.uniform(options.min_run, options.max_run)
    run_for(procs, ran)
    killed_at = time.time()
    restart_broker(broker, crash=True)
    held, ends = asyncio.run(watch(broker.bootstrap, procs, options.threshold))
    found = java_tool("inspect", broker.bootstrap, held, options.threshold) if held else []
    aborted = java_tool("abort", broker.bootstrap, held, options.threshold) if held else []
    return {"crash": n, "ran_s": round(ran, 1), "killed_at": killed_at,
            "held": [{"topic": h.tp.topic, "partition": h.tp.partition, "lso": h.stable, "end": h.end,
                      "held_s": round(h.held_for, 1)} for h in held],
            "producers": found, "aborted": aborted, "log_ends": ends}


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    topics = Counter(h["topic"].removeprefix(PREFIX) for r in rounds for h in r["held"])
    states = Counter(f'{p.get("transactionalId", "?")}: {p.get("coordinatorState", "unknown id")}'
                     for r in rounds for p in r["producers"])
    return {"crashes": len(rounds), "crashes_leaving_a_hanging_transaction": sum(1 for r in rounds if r["held"]),
            # Held past the threshold, yet no transaction that old left when the Java tool looked (ended meanwhile,
            # e.g. by a restarted transform with an instance id): not hanging for good.
            "of_which_ended_before_inspection": sum(1 for r in rounds if r["held"] and not r["producers"]),
            "hanging_partitions_by_topic": dict(topics), "coordinator_states": dict(states)}


def experiment(options: Options) -> dict[str, Any]:
    if options.work_dir.exists():
        shutil.rmtree(options.work_dir)
    broker = start_broker(options.work_dir / "kafka")
    procs: ProcessGroup | None = None
    try:
        with (broker.work_dir / "server.properties").open("a") as props:
            props.write(f"transaction.abort.timed.out.transaction.cleanup.interval.ms={ABORT_SCAN_MS}\n")
        restart_broker(broker, crash=False)
        asyncio.run(ensure_topics(broker.bootstrap, ALL_TOPICS, PREFIX))
        procs = start_children(options, broker)
        rng, rounds = random.Random(options.seed), []
        with (options.work_dir / "results.jsonl").open("w") as out:
            for n in range(1, options.crashes + 1):
                rounds.append(one_crash(n, options, broker, procs, rng))
                out.write(json.dumps(rounds[-1]) + "\n")
                out.flush()
                print(f"crash {n}: held {rounds[-1]['held']} producers {rounds[-1]['producers']}", flush=True)
        return summary(rounds)
    finally:
        if procs is not None:
            procs.stop_all()
        broker.stop()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmsync_bench.hanging_txn", description=__doc__.split("\n")[0])
    parser.add_argument("--crashes", type=int, default=10, help="broker SIGKILLs (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/kmsync-hang"))
    parser.add_argument("--timeout-ms", type=int, default=5_000, help="the producers' transaction.timeout.ms")
    parser.add_argument("--margin", type=float, default=10.0, help="seconds beyond timeout + abort scan")
    parser.add_argument("--run", type=float, nargs=2, default=(3.0, 12.0), metavar=("MIN", "MAX"),
                        help="seconds of load before each crash, uniformly drawn (default 3 12)")
    parser.add_argument("--instance-id", default="",
                        help="transform's KMSYNC_TRANSFORM_INSTANCE_ID (default empty: a random transactional id per "
                             "process; set, a restarted transform ends what its previous run left open)")
    parser.add_argument("--summarize", type=Path, metavar="RESULTS_JSONL",
                        help="only print the summary of an earlier (or interrupted) run's results.jsonl")
    parser.add_argument("--child", choices=("transform", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "transform":
        run_transform(args.bootstrap, args.timeout_ms, args.instance_id)
        return 0
    if args.child == "load":
        run_load(args.bootstrap, args.timeout_ms, args.seed)
        return 0
    if args.summarize is not None:
        rounds = [json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]
        print(json.dumps(summary(rounds), indent=2))
        return 0
    # SIGTERM ends the run as Ctrl-C does: the children and the broker are stopped, results.jsonl is kept.
    signal.signal(signal.SIGTERM, _interrupted)
    min_run, max_run = args.run
    options = Options(args.crashes, args.seed, args.work_dir, args.timeout_ms, args.margin, min_run, max_run,
                      args.instance_id)
    print(json.dumps(experiment(options), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
