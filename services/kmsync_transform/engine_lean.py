"""Transform on a lean confluent-kafka loop (``KMSYNC_TRANSFORM_ENGINE=lean``, issue #22): the quix engine's
guarantees, its topics and its state format, at about half its CPU per record.

One consumer in the quix engine's group (``<prefix><app id>``, read_committed, no auto commit) reads the three
inputs and the polls' repartition topic; one transactional producer writes everything a checkpoint makes:

    kaltura.attendee-status.v1    ─ KeyedSteps.record (state: the partition's store)   ┐
    kaltura.session-engagement.v1 ─ KeyedSteps.record (state: the partition's store)   ├→ marketo.ops.v1, ...
    kaltura.poll-responses.v1     ─ route_poll → repartition__<group>--<polls>--session │
    repartition__…--session       ─ KeyedSteps.poll (state: the partition's store)     ┘

The steps are keyed.py's, the ones the quix engine calls. Per checkpoint (every
KMSYNC_TRANSFORM_COMMIT_INTERVAL_MS) one Kafka transaction holds the outputs, the repartitioned polls, each
store's changelog records and the consumed offsets (exactly-once v2: ``send_offsets_to_transaction`` with the
consumer's group metadata, so a zombie's commit is fenced by the group's generation). A store's writes reach
its local RocksDB only after the transaction committed; an abortable failure aborts it, drops the staged writes
and rewinds every partition to the checkpoint's first record; a fatal one (a fenced producer) ends the process,
which is restarted. State is kept per input partition in lean_store.py, in quixstreams' own changelog format
on quixstreams' own changelog topics (``changelog__<group>--<topic>--default``), so either engine recovers the
other's state: switching engines needs no migration. A partition's store is recovered from its changelog when
it is assigned; a revocation commits the checkpoint in hand first; a lost partition aborts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from rocksdict import Rdict

from kmsync_common.clock import Clock, SystemClock
from kmsync_config.tenants import TenantsConfig
from kmsync_contracts.topics import (
    MARKETO_OPS,
    MARKETO_OPS_BACKFILL,
    POLL_RESPONSES,
    TRANSFORM_DECISIONS,
    TRANSFORM_DLQ,
    is_left_open_marker,
)
from kmsync_kafka.clients import ensure_topics
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.engine_options import PRODUCER_LINGER_MS, ROCKSDB_BLOCK_CACHE_BYTES
from kmsync_transform.hanging_check import HangingCheckThread
from kmsync_transform.internal_topics import LeanTopics, create_internal_topics, polls_partitions
from kmsync_transform.keyed import Envelope, KeyedSteps, Output
from kmsync_transform.lean_store import QUIX_SWEEP_LIMIT, LeanState, LeanStore, recover_stores
from kmsync_transform.left_open import end_previous_incarnation, transactional_id
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.routing import INPUTS
from kmsync_transform.settings import TransformSettings
from kmsync_transform.store_upkeep import StoreUpkeep, configure_malloc, lean_access

log = logging.getLogger("kmsync.transform")

#: Records per consume() call.
BATCH = 500
#: How long a transactional call (init, offsets, commit, abort) may take before it is an error.
TXN_TIMEOUT_S = 30.0
#: How long the stores of newly assigned partitions may take to recover from their changelogs.
RECOVERY_TIMEOUT_S = 120.0
#: librdkafka's producer queue, in records (its default; tests make it small).
PRODUCER_QUEUE_MESSAGES = 100_000
#: Expired entries one store deletes per checkpoint at most (each a changelog tombstone in the transaction):
#: quixstreams' default budget (lean_store.QUIX_SWEEP_LIMIT).
SWEEP_LIMIT = QUIX_SWEEP_LIMIT


#: Delivery errors a retry would meet again: the process stops with the reason rather than rewind for ever.
REFUSED_FOR_GOOD = frozenset({KafkaError.MSG_SIZE_TOO_LARGE,
                              KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
                              KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED})


#: Consumer errors librdkafka reports and recovers from by itself: a subscribed topic not in the metadata yet (it
#: rebalances when the topic shows), the end of a partition.
PASSING_CONSUMER_ERRORS = frozenset({KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART})


class Abortable(Exception):
    """The checkpoint in hand cannot commit, but the producer can go on: abort, rewind, process again."""


class RecordRefused(Exception):
    """A record the broker refuses as it is: the checkpoint is aborted and the process ends with the reason."""


class LeanTransform:
    """Build with the settings; ``run()`` blocks on this thread until ``stop()`` (thread-safe, and what
    SIGTERM/SIGINT call in cli.py), then commits the checkpoint in hand and closes the clients."""

    def __init__(self, settings: TransformSettings, tenants: TenantsConfig, *,
                 metrics: TransformMetrics | None = None, clock: Clock | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or TransformMetrics()
        self.clock: Clock = clock or SystemClock()
        self.group_id = f"{settings.topic_prefix}{settings.transform_app_id}"
        #: The topics: set by run(), which first learns how many partitions the polls have (a repartition topic or not).
        self.topics: LeanTopics
        self.steps = KeyedSteps(
            tenants, self.metrics, clock=self.clock.now,
            retention=timedelta(seconds=settings.transform_state_retention_seconds),
            options=settings.transformer_options())
        self.state = LeanState()
        self.stores: dict[tuple[str, int], LeanStore] = {}
        #: (topic, partition) → the first offset of the checkpoint in hand, where an abort rewinds to.
        self.started: dict[tuple[str, int], int] = {}
        #: (topic, partition) → the next offset to read, for the records of the checkpoint in hand.
        self.offsets: dict[tuple[str, int], int] = {}
        #: (changelog, partition) → the highest offset the checkpoint's changelog records got (delivery reports).
        self._changelog_ends: dict[tuple[str, int], int] = {}
        #: The checkpoint's first failed delivery: (topic, error).
        self._delivery_error: tuple[str, KafkaError] | None = None
        #: The stores' changelog topics (their delivery reports say how far each store's changelog got).
        self._changelogs: set[str] = set()
        self._txn_since: float | None = None
        self._stopping = threading.Event()
        self._own_state_dir: Path | None = None
        self.ready = False
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        #: Compacts a store after an expiry and gives the memory back (store_upkeep.py), between polls.
        self.upkeep = StoreUpkeep(lean_access(self._store_dbs), ROCKSDB_BLOCK_CACHE_BYTES)

    def _store_dbs(self) -> list[tuple[str, Rdict]]:
        return [(str(store.path), store.db) for store in self.stores.values()]

    def stop(self) -> None:
        """Ask ``run()`` to finish: it commits the checkpoint in hand first."""
        self._stopping.set()

    # ----- setting up
    def _state_root(self) -> Path:
        root = self.settings.transform_state_dir
        if root is None:
            root = self._own_state_dir = Path(tempfile.mkdtemp(prefix="kmsync-transform-state-"))
        # Not the quix engine's layout: the lean stores are their own RocksDB databases; what the two engines
        # share is the changelog topics, from which either recovers.
        return root / "lean" / self.group_id

    def _consumer_config(self) -> dict[str, Any]:
        s = self.settings
        return {"bootstrap.servers": s.kafka_bootstrap, "group.id": self.group_id,
                "auto.offset.reset": "earliest", "enable.auto.commit": False,
                "enable.auto.offset.store": False, "isolation.level": "read_committed",
                # Eager assignment (librdkafka's default, named here): a rebalance revokes every partition, so the
                # checkpoint a revocation aborts has no retained partition to rewind.
                "partition.assignment.strategy": "range",
                "fetch.wait.max.ms": s.transform_batch_wait_ms, "session.timeout.ms": s.transform_session_timeout_ms,
                "heartbeat.interval.ms": max(s.transform_session_timeout_ms // 5, 500)}

    def _producer_config(self) -> dict[str, Any]:
        # The quix engine's: murmur2 puts an instance's operations on the partition every engine and the sink
        # agree on; a short transaction timeout bounds how long a killed replica's transaction holds readers.
        s = self.settings
        tx_id = transactional_id(s) or f"{self.group_id}-{uuid.uuid4()}"
        return {"bootstrap.servers": s.kafka_bootstrap, "transactional.id": tx_id,
                "enable.idempotence": True, "partitioner": "murmur2_random", "linger.ms": PRODUCER_LINGER_MS,
                "queue.buffering.max.messages": PRODUCER_QUEUE_MESSAGES,
                "transaction.timeout.ms": s.transform_transaction_timeout_ms}

    # ----- running
    def run(self) -> None:
        s = self.settings
        asyncio.run(ensure_topics(s.kafka_bootstrap, [*INPUTS, MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DLQ,
                                                      TRANSFORM_DECISIONS], s.topic_prefix))
        self.topics = LeanTopics.of(s, polls_partitions(s))
        create_internal_topics(s, self.topics)
        self._changelogs = {c for t in self.topics.stateful() if (c := self.topics.changelog_of(t))}
        asyncio.run(end_previous_incarnation(s))  # before this id's producer starts (left_open.py)
        configure_malloc()
        root = self._state_root()
        self.producer = Producer(self._producer_config())
        self.producer.init_transactions(TXN_TIMEOUT_S)
        self.consumer = Consumer(self._consumer_config())
        self.consumer.subscribe(self.topics.subscribed(), on_assign=lambda c, tps: self._assigned(root, tps),
                                on_revoke=lambda c, tps: self._revoked(tps), on_lost=lambda c, tps: self._lost(tps))
        hanging = HangingCheckThread(s, self.metrics.registry)
        hanging.start()
        self.ready = True
        log.info("transform (lean engine) starting as group %s, exactly-once, state retention %d s",
                 self.group_id, s.transform_state_retention_seconds)
        try:
            self._loop()
            self.checkpoint()
        except BaseException:
            with contextlib.suppress(KafkaException):  # the error that ended the loop is the one to report
                self._abort()
            raise
        finally:
            self.ready = False
            hanging.stop()
            self._close()

    def _close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        for store in self.stores.values():
            store.close()
        self.stores.clear()
        if self.producer is not None:
            self.producer.flush(5)
        # The clients hold this engine's callbacks (a reference cycle): dropped here, the producer is destroyed
        # now rather than at a later garbage collection (it would go on reconnecting).
        self.consumer = self.producer = None
        if self._own_state_dir is not None:
            shutil.rmtree(self._own_state_dir, ignore_errors=True)

    def _loop(self) -> None:
        assert self.consumer is not None
        consume, interval = self.consumer.consume, self.settings.transform_commit_interval_ms / 1000
        timeout = self.settings.transform_poll_timeout_ms / 1000
        while not self._stopping.is_set():
            messages = consume(num_messages=BATCH, timeout=timeout)
            self.upkeep.tick()
            try:
                if messages:
                    self._batch(messages)
                if self._txn_since is not None and time.monotonic() - self._txn_since >= interval:
                    self.checkpoint()
            except Abortable as exc:
                log.warning("transform: checkpoint aborted (%s); its records are processed again", exc)
                self._rewind()

    # ----- per record
    def _batch(self, messages: list[Message]) -> None:
        assert self.producer is not None
        if self._txn_since is None:
            self.producer.begin_transaction()
            self._txn_since = time.monotonic()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() in PASSING_CONSUMER_ERRORS:
                    log.info("transform: %s (librdkafka goes on)", error)
                    continue
                raise KafkaException(error)
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            self.started.setdefault((topic, partition), offset)
            self._one(message, topic, partition)
            self.offsets[(topic, partition)] = offset + 1
        self._lag()

    def _one(self, message: Message, topic: str, partition: int) -> None:
        key, value = message.key(), message.value()
        if is_left_open_marker(key, value):  # what ingest commits to end a left-open transaction: nothing
            return
        timestamp = message.timestamp()[1]
        if topic == self.topics.repartition:
            session = (key or b"").decode()
            self._poll(Envelope.decode(session, value or b""), (topic, partition), timestamp)
            return
        spec = self.topics.spec_by_topic[topic]
        source = SourceRef(topic=topic, partition=partition, offset=message.offset(),
                           key=key.decode("utf-8", "replace") if key else None)
        if spec is POLL_RESPONSES:
            envelope = self.steps.route_poll(value or b"", source)
            if self.topics.repartition is None:  # one partition: re-keyed in place, as quixstreams does
                self._poll(envelope, (topic, partition), timestamp)
            else:
                self._produce(self.topics.repartition, envelope.key.encode(), envelope.encode(), timestamp)
            return
        self.state.bind(self.stores[(topic, partition)], key, timestamp)  # quixstreams: a null key is "null|"
        self._emit(self.steps.record(spec, value or b"", source, self.state), timestamp)

    def _poll(self, envelope: Envelope, where: tuple[str, int], timestamp: int) -> None:
        """A poll answer on the partition that owns its session, against the session's state."""
        self.state.bind(self.stores[where], envelope.key, timestamp)
        self._emit(self.steps.poll(envelope, self.state), timestamp)

    def _emit(self, outputs: list[Output], timestamp: int) -> None:
        destinations = self.topics.destinations
        for destination, key, value in outputs:
            self._produce(destinations[destination], key, value, timestamp)

    def _produce(self, topic: str, key: bytes, value: bytes | None, timestamp: int = 0, *, partition: int = -1,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one record of the checkpoint's transaction, its delivery reported to ``_delivered``. librdkafka's
        queue holds 100,000 records: a full queue is served (delivery reports) until the record fits, up to
        TXN_TIMEOUT_S; a sweep of an expiry can stage more tombstones than that in one checkpoint."""
        assert self.producer is not None
        deadline = 0.0
        while True:
            try:
                self.producer.produce(topic, value, key, partition=partition, timestamp=timestamp, headers=headers,
                                      on_delivery=self._delivered)
                return
            except BufferError:
                deadline = deadline or time.monotonic() + TXN_TIMEOUT_S
                if time.monotonic() > deadline:
                    raise Abortable(f"librdkafka's queue stayed full for {TXN_TIMEOUT_S:.0f} s") from None
                self.producer.poll(0.1)
            except KafkaException as exc:
                if exc.args[0].code() in REFUSED_FOR_GOOD:  # refused at once (larger than message.max.bytes)
                    raise RecordRefused(f"transform: a record for {topic} was refused ({exc.args[0]}); the "
                                        "checkpoint is aborted and its input stays uncommitted") from exc
                self.producer.poll(0)  # the transaction failed (a delivery did): say why, from the reports
                self._raise_delivery_failure()
                raise Abortable(str(exc)) from exc

    def _lag(self) -> None:
        """Each input partition's lag gauge from librdkafka's cached high watermark, once per batch."""
        assert self.consumer is not None
        specs = self.topics.spec_by_topic
        for (topic, partition), offset in self.offsets.items():
            spec = specs.get(topic)
            if spec is None:
                continue
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                self.metrics.set_lag(spec.name, partition, max(high - offset, 0))

    # ----- checkpoints
    def checkpoint(self) -> None:
        """Changelogs, outputs and offsets committed in one transaction, then the stores written."""
        if self._txn_since is None:
            return
        assert self.producer is not None and self.consumer is not None
        self._produce_changelogs()
        self._check_deliveries()
        producer, positions = self.producer, [TopicPartition(t, p, o) for (t, p), o in self.offsets.items()]
        group = self.consumer.consumer_group_metadata()
        self._transactional(lambda: producer.send_offsets_to_transaction(positions, group, TXN_TIMEOUT_S))
        self._transactional(lambda: producer.commit_transaction(TXN_TIMEOUT_S))
        ends = self._changelog_ends
        self._ended()
        for (_, partition), store in self.stores.items():  # a crash before this: recovered from the changelog
            end = ends.get((store.changelog, partition))
            store.apply(None if end is None else end + 1)

    def _produce_changelogs(self) -> None:
        for (topic, partition), store in self.stores.items():
            store.sweep_due(SWEEP_LIMIT)  # quixstreams' rule: by the partition's record-time high water
            processed = self.offsets.get((topic, partition))
            offsets = {} if processed is None else {topic: processed - 1}
            for key, value, headers in store.changelog_records(offsets):
                self._produce(store.changelog, key, value, partition=partition, headers=headers)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        """Every record's delivery report (served by poll and flush, on this thread): the first failure of the
        checkpoint, and how far each changelog partition got."""
        if err is not None:
            if self._delivery_error is None:
                self._delivery_error = (msg.topic() or "", err)
            return
        topic, offset = msg.topic(), msg.offset()
        if topic in self._changelogs and offset is not None:
            where = (topic, msg.partition())
            if offset > self._changelog_ends.get(where, -1):
                self._changelog_ends[where] = offset

    def _check_deliveries(self) -> None:
        """Before the offsets go into the transaction: every record delivered. librdkafka can commit a transaction
        one of whose records it refused (docs/reference/streaming.md §3.1), which would lose that record with its
        input committed. A refusal that would come again (a record too large) ends the process with the reason;
        any other failure aborts the checkpoint, which is processed again."""
        assert self.producer is not None
        left = self.producer.flush(TXN_TIMEOUT_S)
        if left:
            raise Abortable(f"{left} records not delivered within {TXN_TIMEOUT_S:.0f} s")
        self._raise_delivery_failure()

    def _raise_delivery_failure(self) -> None:
        """RecordRefused or Abortable for the checkpoint's first failed delivery, if any."""
        if self._delivery_error is None:
            return
        topic, err = self._delivery_error
        if err.code() in REFUSED_FOR_GOOD:
            raise RecordRefused(f"transform: a record for {topic} was refused ({err}); the checkpoint is aborted and "
                                "its input stays uncommitted: the record cannot be written as it is")
        raise Abortable(f"a record for {topic} was not delivered: {err}")

    def _transactional(self, call: Callable[[], None]) -> None:
        """A transactional call, again while librdkafka says it may succeed; Abortable when the transaction
        must be aborted; a fatal error (a fenced producer) raises as it is."""
        deadline = time.monotonic() + TXN_TIMEOUT_S
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.txn_requires_abort():
                    raise Abortable(str(error)) from exc
                if not error.retriable() or time.monotonic() > deadline:
                    raise

    def _ended(self) -> None:
        self.offsets, self.started, self._changelog_ends = {}, {}, {}
        self._delivery_error = None
        self._txn_since = None

    def _rewind(self) -> None:
        """Abort the checkpoint in hand, drop its staged state, and read its records again."""
        assert self.consumer is not None
        self._abort()
        for (topic, partition), offset in self.started.items():
            if (topic, partition) in self.stores or topic in self.topics.spec_by_topic:
                try:
                    self.consumer.seek(TopicPartition(topic, partition, offset))
                except KafkaException as exc:  # no longer assigned: its next owner starts from the commit
                    log.info("transform: %s[%d] not rewound (%s)", topic, partition, exc)
        self._ended()

    def _abort(self) -> None:
        """Abort the transaction in hand, if any, and drop the stores' staged writes. A fatal error (a fenced
        producer) raises: the process ends and its restart recovers; any other failure is logged, and the
        next transaction's start says whether the producer can go on."""
        for store in self.stores.values():
            store.discard()
        if self._txn_since is None or self.producer is None:
            return
        self._txn_since = None
        try:
            self.producer.abort_transaction(TXN_TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            log.warning("transform: aborting the checkpoint in hand failed: %s", exc)

    # ----- rebalances (called from consume(), on this thread)
    def _assigned(self, root: Path, partitions: list[TopicPartition]) -> None:
        new = []
        for tp in partitions:
            changelog = self.topics.changelog_of(tp.topic)
            if changelog is None:  # the polls' input when repartitioned: routed, no state
                continue
            store = LeanStore(root / tp.topic / str(tp.partition), changelog, tp.partition)
            self.stores[(tp.topic, tp.partition)] = store
            new.append(store)
        started = time.monotonic()
        recover_stores(self.settings.kafka_bootstrap, new, RECOVERY_TIMEOUT_S)
        log.info("transform: %d partitions assigned, %d stores recovered in %.1f s", len(partitions), len(new),
                 time.monotonic() - started)

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        try:
            self.checkpoint()
        except Abortable as exc:
            log.warning("transform: the checkpoint before a revocation aborted (%s): the partitions' next "
                        "owner processes its records", exc)
            self._abort()
            self._ended()
        self._drop(partitions)

    def _lost(self, partitions: list[TopicPartition]) -> None:
        log.warning("transform: %d partitions lost (this replica missed its session): the checkpoint in hand "
                    "is aborted", len(partitions))
        self._abort()
        self._ended()
        self._drop(partitions)

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            store = self.stores.pop((tp.topic, tp.partition), None)
            if store is not None:
                store.close()

