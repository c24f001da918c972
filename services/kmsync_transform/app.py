"""The transform worker on aiokafka: batches in, operations out, state and offsets after the acks.

One worker owns every partition of the three kaltura.* topics of its topic prefix (manual
assignment, no group rebalancing): transform's state is keyed by Marketo's keys (member, lead,
session), not by the input key, so it must see all input. Its four tables live in memory and are
durable in one compacted topic, <prefix>transform.state.v1, read to its end before the first batch.

Each batch: route and transform every record in order against staged views of the tables; send the
operations (marketo.ops.v1, keyed by munchkin id), dead letters (transform.dlq.v1) and decisions
(transform.decisions.v1) and wait for their acknowledgements; then send the state changes and wait
for theirs; then apply the changes in memory and commit the batch's input offsets. At-least-once: a
crash anywhere before the commit replays the batch; see README.md "Processing guarantee".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from kmsync_common import hash_email
from kmsync_common.clock import SystemClock
from kmsync_config.tenants import TenantsConfig
from kmsync_contracts.codecs import encode
from kmsync_contracts.outcomes import TransformDecision
from kmsync_contracts.topics import (
    MARKETO_OPS,
    MARKETO_OPS_BACKFILL,
    TRANSFORM_DECISIONS,
    TRANSFORM_DLQ,
    TRANSFORM_STATE,
    TopicSpec,
    is_left_open_marker,
)
from kmsync_kafka.clients import DEFAULT_ISOLATION, ensure_topics, manual_commit_consumer, reliable_producer, topic_name
from kmsync_kafka.lag import consumer_lags
from kmsync_kafka.reading import read_to_end, refresh_metadata
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.routing import INPUTS, route
from kmsync_transform.settings import TransformSettings
from kmsync_transform.state import StagedTables, Tables
from kmsync_transform.transformer import Transformer

log = logging.getLogger("kmsync.transform")

#: Transform's own state topic, in the catalogue: key `<table>:<state key>`, value JSON, compacted.
STATE = TRANSFORM_STATE

#: How long reading the state topic at start may take before the worker gives up (a bound, not a wait).
STATE_LOAD_WITHIN = 600.0


async def ensure_transform_topics(settings: TransformSettings) -> None:
    """Create the catalogue topics transform reads and writes and its state topic; wait for metadata."""
    await ensure_topics(settings.kafka_bootstrap,
                        [*INPUTS, MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DLQ, TRANSFORM_DECISIONS],
                        settings.topic_prefix)
    await ensure_topics(settings.kafka_bootstrap, [STATE], settings.topic_prefix,
                        partitions=settings.transform_partitions)
    await wait_for_metadata(settings,
                            [*INPUTS, MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DLQ, TRANSFORM_DECISIONS, STATE])


async def wait_for_metadata(settings: TransformSettings, specs: list[TopicSpec], within: float = 30.0) -> None:
    """Until the broker's metadata lists every topic with at least one partition."""
    names = {topic_name(s, settings.topic_prefix) for s in specs}
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await probe.start()
    try:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            await refresh_metadata(probe)
            missing = {n for n in names if not probe.partitions_for_topic(n)}
            if not missing:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topics missing from the broker metadata: {sorted(missing)}")
            await asyncio.sleep(0.1)  # metadata propagation has no notification to wait on
    finally:
        await probe.stop()


async def all_partitions(consumer: AIOKafkaConsumer, names: list[str]) -> list[TopicPartition]:
    """Every partition of `names` (a started consumer only knows the topics it has asked about)."""
    await refresh_metadata(consumer)
    tps = []
    for name in names:
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            raise RuntimeError(f"topic {name} has no partitions in the broker metadata")
        tps += [TopicPartition(name, p) for p in sorted(partitions)]
    return tps


class TransformWorker:
    """Start with `start()` (topics, state, clients), then `run(stop)` until `stop` is set, `close()`."""

    def __init__(
        self,
        settings: TransformSettings,
        tenants: TenantsConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        metrics: TransformMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.tenants = tenants
        self._system = SystemClock()
        #: The time stamped on a batch's outputs (an injected one in tests).
        self.clock = clock or self._system.now
        self.metrics = metrics or TransformMetrics()
        prefix = settings.topic_prefix
        self.spec_by_topic = {topic_name(s, prefix): s for s in INPUTS}
        self.ops_topic = topic_name(MARKETO_OPS, prefix)
        #: Operations of backfill-lane records (issue #18).
        self.backfill_ops_topic = topic_name(MARKETO_OPS_BACKFILL, prefix)
        self.dlq_topic = topic_name(TRANSFORM_DLQ, prefix)
        self.decisions_topic = topic_name(TRANSFORM_DECISIONS, prefix)
        self.state_topic = topic_name(STATE, prefix)
        self.group_id = f"{prefix}{settings.transform_app_id}"
        self.tables = Tables()
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.ready = False

    # ----- start and stop
    async def start(self) -> None:
        await ensure_transform_topics(self.settings)
        self.producer = reliable_producer(self.settings.kafka_bootstrap)
        await self.producer.start()
        await self.load_state()
        # Manual assignment: this worker owns every input partition; the group only keeps offsets.
        self.consumer = manual_commit_consumer(self.settings.kafka_bootstrap, self.group_id,
                                               isolation_level=DEFAULT_ISOLATION)
        await self.consumer.start()
        self.consumer.assign(await all_partitions(self.consumer, list(self.spec_by_topic)))
        self.ready = True
        log.info("transform ready: %d state entries, reading %d input partitions as group %s",
                 len(self.tables), len(self.consumer.assignment()), self.group_id)

    async def load_state(self) -> None:
        """Read the state topic from its start to its end (as it is now) into the tables."""
        started = self._system.monotonic()
        records = await read_to_end(self.settings.kafka_bootstrap, self.state_topic, within=STATE_LOAD_WITHIN)
        for m in records:
            self.tables.load(m.key, m.value)
        log.info("state loaded: %d records read, %d entries, %.1f s", len(records), len(self.tables),
                 self._system.monotonic() - started)

    async def close(self) -> None:
        self.ready = False
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    # ----- the loop
    async def run(self, stop: asyncio.Event) -> None:
        """Batches until `stop` is set; a batch in hand is always finished and committed first."""
        while not stop.is_set():
            await self.poll_once()

    async def poll_once(self) -> int:
        """One poll: process and commit what it returns (if anything), then report the lag.
        Returns how many input records it processed."""
        assert self.consumer is not None
        batches = await self.consumer.getmany(timeout_ms=self.settings.transform_batch_wait_ms,
                                              max_records=self.settings.transform_batch_max_records)
        if batches:
            await self.process(batches)
        await self.report_lag()
        return sum(len(msgs) for msgs in batches.values())

    async def report_lag(self) -> None:
        """The lag gauge of every input partition, from what the consumer learnt in its last fetch
        response (no broker round trip). Partitions not fetched yet have no end offset and no gauge."""
        assert self.consumer is not None
        for tp, records in (await consumer_lags(self.consumer, DEFAULT_ISOLATION)).items():
            self.metrics.set_lag(self.spec_by_topic[tp.topic].name, tp.partition, records)

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        assert self.consumer is not None and self.producer is not None
        staged = self.tables.stage()
        outputs = self.transform_batch(staged, [m for msgs in batches.values() for m in msgs])
        # 1. operations and dead letters, acknowledged before the state moves on
        await self.send_all(outputs)
        # 2. the state the batch leaves behind, acknowledged before the offsets are committed
        await self.send_all([(self.state_topic, key, value) for key, value in staged.records()])
        staged.commit()
        # 3. the batch's input offsets
        await self.consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in batches.items()})

    def transform_batch(
        self, staged: StagedTables, records: Iterable[ConsumerRecord[Any, Any]]
    ) -> list[tuple[str, bytes, bytes | None]]:
        """Pure: a batch's records, in order, against `staged` → (topic, key, value) to send.

        One time for the whole batch (its operations' emitted_at, dead letters' failed_at, ledger
        entries): the batch is produced in one go, and reading the clock per record costs CPU."""
        now = self.clock()
        transformer = Transformer(
            self.tenants, staged.transform_state(),
            **self.settings.transformer_options(),
            clock=lambda: now,
        )
        outputs: list[tuple[str, bytes, bytes | None]] = []
        for m in records:
            if not is_left_open_marker(m.key, m.value):  # ingest's, carrying nothing (kmsync_contracts.topics)
                outputs += self.transform_one(transformer, m, now)
        return outputs

    def transform_one(
        self, transformer: Transformer, m: ConsumerRecord[Any, Any], now: datetime
    ) -> list[tuple[str, bytes, bytes | None]]:
        key = m.key.decode("utf-8", "replace") if m.key else None
        source = SourceRef(topic=m.topic, partition=m.partition, offset=m.offset, key=key)
        spec = self.spec_by_topic[m.topic]
        routed = route(spec, m.value or b"", source, self.tenants, now)
        self.metrics.routed(spec.name, routed)
        if routed.dead_letter is not None:
            log.info("dead-lettered %s %s:%s: %s", spec.name, m.partition, m.offset, routed.dead_letter.reason_code)
            return [(self.dlq_topic, (key or "").encode(), encode(routed.dead_letter)),
                    *self.decision_records([routed.decision] if routed.decision else [])]
        assert routed.routed is not None
        result = transformer.apply(routed.routed)
        self.metrics.stepped(result)
        if (result.regressions or result.ledger_hits) and log.isEnabledFor(logging.DEBUG):
            log.debug("dropped for %s: %d regressions, %d ledger hits", hash_email(routed.routed.email),
                      result.regressions, result.ledger_hits)
        ops_topic = self.backfill_ops_topic if routed.routed.record.lane == "backfill" else self.ops_topic
        out: list[tuple[str, bytes, bytes | None]] = [
            (ops_topic, op.munchkin_id.encode(), encode(op)) for op in result.ops]
        out += [(self.dlq_topic, (key or "").encode(), encode(dl)) for dl in result.dead_letters]
        return out + self.decision_records(result.decisions)

    def decision_records(self, decisions: list[TransformDecision]) -> list[tuple[str, bytes, bytes | None]]:
        return [(self.decisions_topic, d.partition_key().encode(), encode(d)) for d in decisions]

    async def send_all(self, records: list[tuple[str, bytes, bytes | None]]) -> None:
        """Send in order (per partition, the idempotent producer keeps it) and wait for every ack."""
        assert self.producer is not None
        acks = [await self.producer.send(topic, value, key=key) for topic, key, value in records]
        if acks:
            await asyncio.gather(*acks)
