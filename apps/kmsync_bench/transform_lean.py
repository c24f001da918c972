"""A measurement prototype, NOT a production engine: transform's per-record steps on a lean
confluent-kafka loop, to measure what the quix engine's per-record layers cost (issue #22).

``python -m kmsync_bench.transform_lean [--people 5000] [--repeat 3] [--lean-only] [--profile out.pstats]``
produces ``kmsync_bench.transform_cpu``'s ``--engagement-only`` input (one report 4021 engagement
snapshot per person, the capacity section's case) to a private broker under a fresh topic prefix per
pass, and runs the lean loop and the real ``QuixTransform`` alternately over it (a warm-up pass each
first), reporting each one's CPU s per 10,000 input rows for the process and for the engine's thread,
from the first record processed to the last operation emitted (``transform_cpu.timed_run``: the
start and stop points of ``transform_cpu --app``), and the broker's CPU between the same two points
(its process's utime+stime from /proc).

What the lean loop does, per record and per checkpoint, with the quix engine's guarantees on the
happy path:

- one confluent-kafka ``Consumer`` in the group ``<prefix><transform_app_id>`` (read_committed, no
  auto commit, the quix engine's fetch wait and session timeout) reading the status and engagement
  topics in batches (``consume(500)``); one transactional ``Producer`` (idempotent, murmur2_random,
  the quix engine's linger and transaction timeout); exactly-once v2: the consumed offsets go into the
  transaction with ``send_offsets_to_transaction`` and the consumer's group metadata;
- per record the real ``kmsync_transform.keyed.KeyedSteps.record`` (the step the quix engine calls)
  against ``LeanState``, a ``KeyedState`` over one RocksDB store (rocksdict, quixstreams' RocksDB
  options of engine_quix.py) per input partition, keyed ``<message key>|<state key>``, values as orjson
  bytes (no quixstreams serialization, no TTL stamp); the outputs produced to the real output topics
  with the steps' keys and bytes and the input record's timestamp, without a delivery callback (a
  failed delivery fails the transaction: checked at its commit);
- a checkpoint every ``transform_commit_interval_ms`` (the settings' value, as the quix engine): every
  state key written since the last one produced once (its last value, a tombstone for a delete) to the
  store's compacted changelog topic ``changelog__<group>--<input topic>--default`` with quixstreams'
  column family and processed-offsets headers, in the same transaction; flush, offsets, commit; then
  the RocksDB write batch (with the processed offset) applied;
- the lag gauge read once per partition per batch (the quix engine's ``_processed`` hook reads it per
  record, at most every 0.5 s per partition).

Left out, all of which a production engine would add: recovery of a store from its changelog at
assignment (a partition starts from its local RocksDB, here always empty); rebalancing subtleties
(a revoke commits the checkpoint in hand and closes the partitions' stores, nothing more: no fencing
of a zombie, no pause/seek on errors, no partition-lost path); the polls' repartition topic (the poll
topic is not read: polls need a re-key by session); TTL stamps and expiry of state (every write's TTL
is ignored); store upkeep (compaction after expiry); retries of a failed transaction (an error aborts
and raises).
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
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from quixstreams.state.rocksdb import RocksDBOptions
from rocksdict import Rdict, WriteBatch

from kmsync_bench.cpu import parse_stat, per_10k
from kmsync_bench.transform_cpu import (
    RETENTION,
    Input,
    Timed,
    app_pass,
    inputs,
    operations,
    produce,
    tenants,
    timed_run,
)
from kmsync_common.clock import Clock, SystemClock
from kmsync_config.tenants import TenantsConfig
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    MARKETO_OPS,
    MARKETO_OPS_BACKFILL,
    SESSION_ENGAGEMENT,
    TRANSFORM_DECISIONS,
    TRANSFORM_DLQ,
)
from kmsync_kafka.clients import ensure_topics, topic_name
from kmsync_testing.kafka_broker import KafkaBroker, start_broker
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.engine_quix import (
    CHANGELOG_MIN_CLEANABLE_DIRTY_RATIO,
    PRODUCER_LINGER_MS,
    ROCKSDB_BLOCK_CACHE_BYTES,
    ROCKSDB_WRITE_BUFFER_BYTES,
)
from kmsync_transform.keyed import KeyedSteps
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.routing import INPUTS
from kmsync_transform.settings import TransformSettings

#: The inputs the lean loop reads: those processed on their own partition (polls need the repartition).
STATEFUL_INPUTS = (ATTENDEE_STATUS, SESSION_ENGAGEMENT)
#: Records per consume() call.
BATCH = 500
#: How long a transactional call (init, offsets, commit) may take before it is an error.
TXN_TIMEOUT_S = 30.0
#: quixstreams' changelog headers (quixstreams.state.metadata), carried on every changelog record.
CF_HEADER, OFFSETS_HEADER = "__column_family__", "__processed_tp_offsets__"
#: Where a store keeps the input offset its state reflects (written with the checkpoint's batch).
OFFSET_KEY = b"__lean_processed_offset__"


class PartitionStore:
    """One input partition's state: RocksDB plus the writes of the checkpoint in hand (serialized; None
    for a delete), produced to the changelog at the checkpoint and written to RocksDB after its commit."""

    def __init__(self, path: Path, changelog: str, partition: int) -> None:
        options = RocksDBOptions(write_buffer_size=ROCKSDB_WRITE_BUFFER_BYTES, max_write_buffer_number=2,
                                 block_cache_size=ROCKSDB_BLOCK_CACHE_BYTES)
        path.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options.to_options())
        self.changelog, self.partition = changelog, partition
        self.updates: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.updates:
            return self.updates[key]
        value: bytes | None = self.db.get(key)
        return value

    def produce_changelog(self, producer: Producer, headers: list[tuple[str, bytes]]) -> None:
        """Each key written since the last checkpoint, once, with its last value (the quix engine's prepare)."""
        produce = producer.produce
        for key, value in self.updates.items():
            try:
                produce(self.changelog, value, key, partition=self.partition, headers=headers)
            except BufferError:  # librdkafka's queue is full: serve it, then once more
                producer.poll(1.0)
                produce(self.changelog, value, key, partition=self.partition, headers=headers)

    def apply(self, offset: int) -> None:
        """The checkpoint's writes into RocksDB (after the transaction committed)."""
        batch = WriteBatch(raw_mode=True)
        for key, value in self.updates.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(OFFSET_KEY, str(offset).encode())
        self.db.write(batch)
        self.updates.clear()

    def close(self) -> None:
        self.db.close()


class LeanState:
    """``kmsync_transform.keyed.KeyedState`` for the current record: its message key's entries of the
    partition's store (one instance, bound per record). Values are JSON (orjson); the TTL is ignored."""

    def __init__(self) -> None:
        self.store: PartitionStore | None = None
        self.prefix = b""

    def bind(self, store: PartitionStore, key: bytes) -> None:
        self.store, self.prefix = store, key + b"|"

    def _store(self) -> PartitionStore:
        assert self.store is not None, "no record's state is bound"
        return self.store

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._store().get(self.prefix + key.encode())
        return default if raw is None else orjson.loads(raw)

    def set(self, key: str, value: Any, ttl: timedelta | None = None) -> None:
        self._store().updates[self.prefix + key.encode()] = orjson.dumps(value)

    def delete(self, key: str) -> None:
        self._store().updates[self.prefix + key.encode()] = None

    def exists(self, key: str) -> bool:
        return self._store().get(self.prefix + key.encode()) is not None


def changelog_name(group_id: str, topic: str) -> str:
    """The store's changelog topic, named as quixstreams names its own (store "default")."""
    return f"changelog__{group_id}--{topic}--default"


class LeanTransform:
    """Build with the settings; ``run()`` blocks on this thread until ``stop()``, then commits the
    checkpoint in hand and closes the clients."""

    def __init__(self, settings: TransformSettings, tenants: TenantsConfig, *,
                 metrics: TransformMetrics | None = None, clock: Clock | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or TransformMetrics()
        self.clock: Clock = clock or SystemClock()
        prefix = settings.topic_prefix
        self.group_id = f"{prefix}{settings.transform_app_id}"
        self.spec_by_topic = {topic_name(s, prefix): s for s in STATEFUL_INPUTS}
        self.destinations = {"ops": topic_name(MARKETO_OPS, prefix), "dlq": topic_name(TRANSFORM_DLQ, prefix),
                             "ops_backfill": topic_name(MARKETO_OPS_BACKFILL, prefix),
                             "decisions": topic_name(TRANSFORM_DECISIONS, prefix)}
        self.steps = KeyedSteps(
            tenants, self.metrics, clock=self.clock.now,
            retention=timedelta(seconds=settings.transform_state_retention_seconds),
            rate_scale=settings.rate_scale, engagement_dedupe_fields=settings.engagement_dedupe_fields,
            polls_dedupe_fields=settings.polls_dedupe_fields)
        self.state = LeanState()
        self.stores: dict[tuple[str, int], PartitionStore] = {}
        #: (topic, partition) → the next offset to read, for the records of the checkpoint in hand.
        self.offsets: dict[tuple[str, int], int] = {}
        self._txn_since: float | None = None
        self._stopping = threading.Event()
        self._state_root = settings.transform_state_dir or Path(tempfile.mkdtemp(prefix="kmsync-lean-state-"))
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None

    def stop(self) -> None:
        """Ask ``run()`` to finish (thread-safe): it commits the checkpoint in hand first."""
        self._stopping.set()

    # ----- setting up
    def _consumer_config(self) -> dict[str, Any]:
        s = self.settings
        return {"bootstrap.servers": s.kafka_bootstrap, "group.id": self.group_id,
                "auto.offset.reset": "earliest", "enable.auto.commit": False,
                "enable.auto.offset.store": False, "isolation.level": "read_committed",
                "fetch.wait.max.ms": s.transform_batch_wait_ms, "session.timeout.ms": s.transform_session_timeout_ms,
                "heartbeat.interval.ms": max(s.transform_session_timeout_ms // 5, 500)}

    def _producer_config(self) -> dict[str, Any]:
        s = self.settings
        return {"bootstrap.servers": s.kafka_bootstrap, "transactional.id": f"{self.group_id}-lean",
                "enable.idempotence": True, "partitioner": "murmur2_random", "linger.ms": PRODUCER_LINGER_MS,
                "transaction.timeout.ms": s.transform_transaction_timeout_ms}

    def _create_changelogs(self) -> None:
        """One compacted changelog per store (input topic), with the quix engine's compaction settings."""
        s = self.settings
        admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
        partitions = {t: len(m.partitions) for t, m in admin.list_topics(timeout=30).topics.items()}
        config = {"cleanup.policy": "compact", "segment.ms": str(s.transform_changelog_segment_ms),
                  "delete.retention.ms": str(s.transform_changelog_delete_retention_ms),
                  "min.cleanable.dirty.ratio": CHANGELOG_MIN_CLEANABLE_DIRTY_RATIO}
        names = {changelog_name(self.group_id, t): t for t in self.spec_by_topic}
        new = [NewTopic(name, num_partitions=partitions[t], replication_factor=1, config=config)
               for name, t in names.items() if name not in partitions]
        for future in admin.create_topics(new).values() if new else ():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:  # no recovery from the changelog: the local store is all (left out)
            path = self._state_root / tp.topic / str(tp.partition)
            self.stores[(tp.topic, tp.partition)] = PartitionStore(
                path, changelog_name(self.group_id, tp.topic), tp.partition)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.checkpoint()
        for tp in partitions:
            store = self.stores.pop((tp.topic, tp.partition), None)
            if store is not None:
                store.close()

    # ----- running
    def run(self) -> None:
        s = self.settings
        asyncio.run(ensure_topics(s.kafka_bootstrap, [*INPUTS, MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DLQ,
                                                      TRANSFORM_DECISIONS], s.topic_prefix))
        self._create_changelogs()
        self.producer = Producer(self._producer_config())
        self.producer.init_transactions(TXN_TIMEOUT_S)
        self.consumer = Consumer(self._consumer_config())
        self.consumer.subscribe(list(self.spec_by_topic), on_assign=self._assigned, on_revoke=self._revoked)
        try:
            self._loop()
            self.checkpoint()
        except BaseException:
            if self._txn_since is not None:
                self.producer.abort_transaction(TXN_TIMEOUT_S)
                self._txn_since = None
            raise
        finally:
            self.consumer.close()
            for store in self.stores.values():
                store.close()
            self.stores.clear()
            # The clients hold this engine's callbacks (a reference cycle): dropped here, the producer is
            # destroyed now rather than at a later garbage collection (it would go on reconnecting).
            self.consumer = self.producer = None

    def _loop(self) -> None:
        assert self.consumer is not None
        consume, interval = self.consumer.consume, self.settings.transform_commit_interval_ms / 1000
        timeout = self.settings.transform_poll_timeout_ms / 1000
        while not self._stopping.is_set():
            messages = consume(num_messages=BATCH, timeout=timeout)
            if messages:
                self._batch(messages)
            if self._txn_since is not None and time.monotonic() - self._txn_since >= interval:
                self.checkpoint()

    def _batch(self, messages: list[Message]) -> None:
        assert self.producer is not None
        if self._txn_since is None:
            self.producer.begin_transaction()
            self._txn_since = time.monotonic()
        produce, offsets, stores, state = self.producer.produce, self.offsets, self.stores, self.state
        record, specs, destinations = self.steps.record, self.spec_by_topic, self.destinations
        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
            topic, partition, offset, key = message.topic(), message.partition(), message.offset(), message.key()
            state.bind(stores[(topic, partition)], key or b"")
            source = SourceRef(topic=topic, partition=partition, offset=offset,
                               key=key.decode("utf-8", "replace") if key else None)
            timestamp = message.timestamp()[1]
            for destination, out_key, value in record(specs[topic], message.value() or b"", source, state):
                try:
                    produce(destinations[destination], value, out_key, timestamp=timestamp)
                except BufferError:  # librdkafka's queue is full: serve it, then once more
                    self.producer.poll(1.0)
                    produce(destinations[destination], value, out_key, timestamp=timestamp)
            offsets[(topic, partition)] = offset + 1
        self._lag()

    def _lag(self) -> None:
        """Each partition's lag gauge from librdkafka's cached high watermark, once per batch."""
        assert self.consumer is not None
        for (topic, partition), offset in self.offsets.items():
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                self.metrics.set_lag(self.spec_by_topic[topic].name, partition, max(high - offset, 0))

    def checkpoint(self) -> None:
        """Changelogs, offsets and outputs committed in one transaction, then the stores written."""
        if self._txn_since is None:
            return
        assert self.producer is not None and self.consumer is not None
        for (topic, partition), offset in self.offsets.items():
            store = self.stores.get((topic, partition))
            if store is not None and store.updates:
                headers = [(CF_HEADER, b"default"), (OFFSETS_HEADER, orjson.dumps({topic: offset - 1}))]
                store.produce_changelog(self.producer, headers)
        self.producer.flush()  # serves the delivery reports; a failed delivery fails the commit below
        positions = [TopicPartition(t, p, o) for (t, p), o in self.offsets.items()]
        self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(), TXN_TIMEOUT_S)
        self.producer.commit_transaction(TXN_TIMEOUT_S)
        for (topic, partition), offset in self.offsets.items():
            store = self.stores.get((topic, partition))
            if store is not None:
                store.apply(offset)
        self.offsets.clear()
        self._txn_since = None


def lean_pass(bootstrap: str, prefix: str, state_dir: Path, ops: int, profiler: cProfile.Profile | None,
              probe: Callable[[], float] | None = None) -> Timed:
    """One run of the lean loop over records already on the topics: CPU s of the process and of its
    thread from its first record processed to its last operation emitted (as ``transform_cpu.app_pass``)."""
    settings = TransformSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, transform_state_dir=state_dir,
                                 transform_state_retention_seconds=int(RETENTION.total_seconds()))
    engine = LeanTransform(settings, tenants())
    return timed_run(engine.run, engine.stop, engine.metrics, ops, profiler, probe)


#: The engines measured, in the order each pass runs them.
ENGINES = ("lean", "quix")
#: Per pass: (process, engine thread, broker) CPU s per 10,000 input rows.
Figures = tuple[float, float, float]


def one_pass(engine: str, broker: KafkaBroker, prefix: str, state: Path, records: list[Input],
             profiler: cProfile.Profile | None) -> Timed:
    """The engine's process, thread and the broker's CPU s from its first record to its last operation."""
    ops = operations(len(records), engagement_only=True)
    stat = Path(f"/proc/{broker.process.pid}/stat")

    def broker_seconds() -> float:
        return parse_stat(stat.read_text()).own_seconds

    if engine == "lean":
        return lean_pass(broker.bootstrap, prefix, state, ops, profiler, broker_seconds)
    return app_pass(broker.bootstrap, prefix, state, records, ops, profiler, broker_seconds)


def measure(people: int, repeat: int, engines: Iterable[str], profile: Path | None) -> dict[str, list[Figures]]:
    """Alternating passes over the same input (a warm-up pass of each first, not reported), each on topics of
    its own: per engine and pass (process, engine thread, broker) CPU s per 10,000 input rows.
    ``profile``: cProfile of the lean loop's thread."""
    records = inputs(people, engagement_only=True)
    profiler = cProfile.Profile(time.thread_time) if profile is not None else None
    out: dict[str, list[Figures]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory(prefix="kmsync-transform-lean-") as tmp:
        broker = start_broker(Path(tmp) / "kafka")
        try:
            for n in range(repeat + 1):
                for engine in out:
                    prefix = f"{engine}{n}."
                    asyncio.run(produce(broker.bootstrap, prefix, records))
                    spent = one_pass(engine, broker, prefix, Path(tmp) / f"state-{engine}-{n}", records,
                                     profiler if n and engine == "lean" else None)
                    if n:
                        figures = per_10k(spent[0], people), per_10k(spent[1], people), per_10k(spent[2], people)
                        out[engine].append(figures)
                        print(f"pass {n} {engine}: process {figures[0]:.3f}, engine thread {figures[1]:.3f}, "
                              f"broker {figures[2]:.3f} CPU s per 10,000 input rows", flush=True)
        finally:
            broker.stop()
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m kmsync_bench.transform_lean", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--people", type=int, default=5_000, help="one engagement snapshot each")
    p.add_argument("--repeat", type=int, default=3, help="measured passes per engine")
    p.add_argument("--lean-only", action="store_true", help="the lean loop alone (no quix passes)")
    p.add_argument("--profile", type=Path, help="cProfile statistics of the lean loop's thread")
    args = p.parse_args(argv)
    engines = ("lean",) if args.lean_only else ENGINES
    results = measure(args.people, args.repeat, engines, args.profile)
    for engine, values in results.items():
        for what, index in (("process", 0), ("engine thread", 1), ("broker", 2)):
            figures = [v[index] for v in values]
            print(f"transform {engine}, {what}, CPU s per 10,000 input rows: "
                  + ", ".join(f"{v:.3f}" for v in figures) + f" (median {statistics.median(figures):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
