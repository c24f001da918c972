"""Transform on quixstreams: exactly-once, state partitioned with its input, N replicas per group.

One quixstreams Application (consumer group `<prefix><app id>`, librdkafka underneath) with three
streaming dataframes, one per input topic:

    kaltura.attendee-status.v1    ─ route + status step (state: statuses)       ┐
    kaltura.session-engagement.v1 ─ route + engagement step (state: ledger)     ├→ marketo.ops.v1 (key munchkin id)
    kaltura.poll-responses.v1     ─ route → group_by(session) → poll step       ┘  transform.dlq.v1
                                              (repartition topic; state: slots, answers)   transform.decisions.v1

The steps are keyed.py's (the pure modules underneath, unchanged). State lives in RocksDB per input
partition, each store backed by a compacted changelog topic. Processing guarantee `exactly-once`:
per checkpoint (every KMSYNC_TRANSFORM_COMMIT_INTERVAL_MS) one Kafka transaction holds the produced
operations, dead letters and decisions, the repartitioned polls, the state changelog records and the consumed
offsets; a replica killed mid-checkpoint leaves an aborted transaction that read_committed readers
never see, and whoever owns the partitions next resumes from the last committed checkpoint with the
state as of that checkpoint (quixstreams recovers stores from their changelogs up to the committed
offsets). Replicas share the partitions through the consumer group; a rebalance commits the
checkpoint in hand before partitions move. State is written with a TTL (the retention) against the
records' Kafka timestamps, and expired entries are deleted with changelog tombstones.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from quixstreams import Application, State, message_context
from quixstreams.models import Topic
from quixstreams.models.serializers import SerializationContext, Serializer
from quixstreams.models.topics.exceptions import TopicNotFoundError
from quixstreams.state.rocksdb import RocksDBOptions

from kmsync_common.clock import Clock, SystemClock
from kmsync_config.tenants import TenantsConfig
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    MARKETO_OPS,
    MARKETO_OPS_BACKFILL,
    POLL_RESPONSES,
    SESSION_ENGAGEMENT,
    TRANSFORM_DECISIONS,
    TRANSFORM_DLQ,
    TopicSpec,
    is_left_open_marker,
)
from kmsync_kafka.clients import ensure_topics, topic_name
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.engine_options import (
    PRODUCER_LINGER_MS,
    ROCKSDB_BLOCK_CACHE_BYTES,
    ROCKSDB_MAX_WRITE_BUFFERS,
    ROCKSDB_WRITE_BUFFER_BYTES,
)
from kmsync_transform.hanging_check import HangingCheckThread
from kmsync_transform.internal_topics import SESSION_GROUP, destination_topics, input_specs, tune_changelogs
from kmsync_transform.keyed import Envelope, KeyedSteps, Output
from kmsync_transform.left_open import end_previous_incarnation, transactional_id
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.routing import INPUTS
from kmsync_transform.settings import TransformSettings
from kmsync_transform.store_upkeep import StoreUpkeep, configure_malloc, quix_internals

log = logging.getLogger("kmsync.transform")

#: How often (per partition) the lag gauge reads librdkafka's cached high watermark mid-backlog.
LAG_EVERY_SECONDS = 0.5


class _OutputValue(Serializer):
    """An Output's value bytes as they are (the steps encode them with kmsync_contracts)."""

    def __call__(self, value: Output, ctx: SerializationContext) -> bytes:
        return value[2]


class _EnvelopeValue(Serializer):
    def __call__(self, value: Envelope, ctx: SerializationContext) -> bytes:
        return value.encode()


def _source(key: bytes | None) -> SourceRef:
    ctx = message_context()
    return SourceRef(topic=ctx.topic, partition=ctx.partition, offset=ctx.offset,
                     key=key.decode("utf-8", "replace") if key else None)


def _not_a_marker(value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> bool:
    """False for the record ingest commits to end what a crash left open (kmsync_contracts.topics
    LEFT_OPEN_MARKER_KEY): it carries nothing, so it is neither routed nor dead-lettered."""
    return not is_left_open_marker(key, value)


class QuixTransform:
    """Build with the settings; `run()` blocks until SIGTERM/SIGINT (quixstreams handles both:
    the checkpoint in hand is committed, then the clients close)."""

    def __init__(
        self,
        settings: TransformSettings,
        tenants: TenantsConfig,
        *,
        metrics: TransformMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or TransformMetrics()
        self.clock: Clock = clock or SystemClock()
        prefix = settings.topic_prefix
        self.group_id = f"{prefix}{settings.transform_app_id}"
        self.spec_by_topic = input_specs(prefix)
        self.steps = KeyedSteps(
            tenants, self.metrics, clock=self.clock.now,
            retention=timedelta(seconds=settings.transform_state_retention_seconds),
            options=settings.transformer_options())
        self.ready = False
        self._own_state_dir: Path | None = None
        #: (topic, partition) → (when to read the high watermark again, the last one read)
        self._lag_reads: dict[tuple[str, int], tuple[float, int]] = {}
        self.app: Application | None = None
        self.upkeep: StoreUpkeep | None = None

    # ----- the application
    def _state_dir(self) -> Path:
        if self.settings.transform_state_dir is not None:
            return self.settings.transform_state_dir
        self._own_state_dir = Path(tempfile.mkdtemp(prefix="kmsync-transform-state-"))
        return self._own_state_dir

    def _producer_config(self) -> dict[str, Any]:
        # marketo.ops.v1 is keyed by munchkin id: murmur2 puts a key on the partition aiokafka and
        # the Java clients choose, so the worker and this engine agree on an instance's partition.
        # A replica killed mid-transaction leaves it open, and read_committed readers (the sink, the
        # next owner of its partitions' repartitioned polls) wait at it until the broker aborts it
        # after transaction.timeout.ms: short, so a takeover is quick.
        config: dict[str, Any] = {"partitioner": "murmur2_random", "linger.ms": PRODUCER_LINGER_MS,
                                  "transaction.timeout.ms": self.settings.transform_transaction_timeout_ms}
        tx_id = transactional_id(self.settings)
        if tx_id is not None:  # quixstreams uses a configured id as it is, else a random one (left_open.py)
            config["transactional.id"] = tx_id
        return config

    def _build(self) -> Application:
        s = self.settings
        app = Application(
            broker_address=s.kafka_bootstrap,
            consumer_group=self.group_id,
            auto_offset_reset="earliest",
            processing_guarantee="exactly-once",
            commit_interval=s.transform_commit_interval_ms / 1000,
            consumer_poll_timeout=s.transform_poll_timeout_ms / 1000,
            state_dir=self._state_dir(),
            rocksdb_options=RocksDBOptions(write_buffer_size=ROCKSDB_WRITE_BUFFER_BYTES,
                                           max_write_buffer_number=ROCKSDB_MAX_WRITE_BUFFERS,
                                           block_cache_size=ROCKSDB_BLOCK_CACHE_BYTES),
            producer_extra_config=self._producer_config(),
            # A killed replica's partitions move after session.timeout.ms. fetch.wait.max.ms: quixstreams
            # sets up each assigned partition with calls that wait behind the fetcher's long poll
            # (librdkafka's 500 ms: 9 s to assign 18 store partitions; 100 ms: under 1 s).
            consumer_extra_config={"isolation.level": "read_committed",
                                   "fetch.wait.max.ms": s.transform_batch_wait_ms,
                                   "session.timeout.ms": s.transform_session_timeout_ms,
                                   "heartbeat.interval.ms": max(s.transform_session_timeout_ms // 5, 500)},
            on_message_processed=self._processed,
            loglevel=None,  # kmsync_common.setup_logging configures the logging
        )
        prefix = s.topic_prefix
        outputs = {name: app.topic(topic, key_serializer="bytes", value_serializer=_OutputValue())
                   for name, topic in destination_topics(prefix).items()}

        def destination(value: Output, key: Any, timestamp: int, headers: Any) -> Topic:
            return outputs[value[0]]

        def output_key(value: Output) -> bytes:
            return value[1]

        def input_topic(spec: TopicSpec) -> Topic:
            return app.topic(topic_name(spec, prefix), key_deserializer="bytes", value_deserializer="bytes")

        for spec in (ATTENDEE_STATUS, SESSION_ENGAGEMENT):
            sdf = app.dataframe(input_topic(spec)).filter(_not_a_marker, metadata=True)
            sdf = sdf.apply(partial(self._record, spec), stateful=True, metadata=True, expand=True)
            sdf.to_topic(destination, key=output_key)

        polls = app.dataframe(input_topic(POLL_RESPONSES)).filter(_not_a_marker, metadata=True)
        polls = polls.apply(self._route_poll, metadata=True)
        polls = polls.group_by(_envelope_key, name=SESSION_GROUP, key_serializer="str", key_deserializer="str",
                               value_serializer=_EnvelopeValue(), value_deserializer="bytes")
        polls = polls.apply(self._poll, stateful=True, metadata=True, expand=True)
        polls.to_topic(destination, key=output_key)
        return app

    # ----- the steps, as quixstreams calls them
    def _record(self, spec: TopicSpec, value: bytes, key: bytes | None, timestamp: int, headers: Any,
                state: State) -> list[Output]:
        return self.steps.record(spec, value or b"", _source(key), state)

    def _route_poll(self, value: bytes, key: bytes | None, timestamp: int, headers: Any) -> Envelope:
        return self.steps.route_poll(value or b"", _source(key))

    def _poll(self, value: bytes | Envelope, key: str, timestamp: int, headers: Any, state: State) -> list[Output]:
        # An input topic of one partition is not repartitioned: quixstreams then re-keys in place and
        # hands the Envelope over as it is (quixstreams.dataframe.StreamingDataFrame.group_by).
        envelope = value if isinstance(value, Envelope) else Envelope.decode(key, value)
        return self.steps.poll(envelope, state)

    def _processed(self, topic: str, partition: int, offset: int) -> None:
        """After each input record: the partition's lag gauge, from the high watermark librdkafka
        cached with its last fetch (quixstreams has no public accessor). Reading it costs about as
        much as a record's step, so it is read at most every LAG_EVERY_SECONDS per partition, and
        always once the record reaches the last high watermark read (so a caught-up partition shows 0)."""
        spec = self.spec_by_topic.get(topic)
        if spec is None or self.app is None:
            return
        now = self.clock.monotonic()
        due, high = self._lag_reads.get((topic, partition), (0.0, -1))
        if now < due and offset + 1 < high:
            return
        try:
            _, high = self.app._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        except KafkaException:
            return
        self._lag_reads[(topic, partition)] = (now + LAG_EVERY_SECONDS, high)
        if high >= 0:
            self.metrics.set_lag(spec.name, partition, max(high - offset - 1, 0))

    # ----- running
    def run(self) -> None:
        # The catalogue's topics first (partitions, retention): quixstreams would create missing ones
        # with its own defaults when the application declares them.
        asyncio.run(ensure_topics(self.settings.kafka_bootstrap,
                                  [*INPUTS, MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DLQ, TRANSFORM_DECISIONS],
                                  self.settings.topic_prefix))
        # A stable instance id: end what this replica's previous incarnation left open, before quixstreams'
        # producer starts under the same transactional id (left_open.py; docs/reference/streaming.md §3.1).
        asyncio.run(end_previous_incarnation(self.settings))
        configure_malloc()
        self.app = build_retrying(self._build)
        tune_changelogs(self.settings)
        internals = quix_internals(self.app)
        self.upkeep = StoreUpkeep(internals, ROCKSDB_BLOCK_CACHE_BYTES)
        internals.register_periodic_task(self.upkeep.tick)
        self.ready = True
        log.info("transform (quix engine) starting as group %s, exactly-once, state retention %d s",
                 self.group_id, self.settings.transform_state_retention_seconds)
        hanging = HangingCheckThread(self.settings, self.metrics.registry)  # its own thread: hanging_check.py
        hanging.start()
        try:
            self.app.run()
        finally:
            hanging.stop()
            self.ready = False
            if self._own_state_dir is not None:
                shutil.rmtree(self._own_state_dir, ignore_errors=True)


#: How often the application is built before a topic the broker does not show yet is an error.
BUILD_ATTEMPTS = 5


def build_retrying(build: Callable[[], Application], attempts: int = BUILD_ATTEMPTS,
                   sleep: Callable[[float], None] = time.sleep) -> Application:
    """``build()``, again after a pause while a topic it declares is not visible yet. quixstreams creates
    its changelog and repartition topics while the application is built and reads each back at once;
    a broker whose metadata has not caught up (a topic created a moment before, a broker just
    restarted) answers "not found". Seen in a chaos run: TopicNotFoundError on the repartition topic
    quixstreams had created a second earlier, and transform exited."""
    for attempt in range(1, attempts + 1):
        try:
            return build()
        except TopicNotFoundError as exc:
            if attempt == attempts:
                raise
            log.warning("transform: %s while declaring its topics (attempt %d of %d): the broker's metadata "
                        "lags behind; building again in %d s", exc, attempt, attempts, attempt)
            sleep(attempt)
    raise AssertionError("unreachable")


def _envelope_key(envelope: Envelope) -> str:
    return envelope.key
