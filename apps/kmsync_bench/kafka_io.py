"""Kafka I/O of the benchmark: produce operations, follow marketo.results.v1, count topic records."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from kmsync_contracts import RecordOutcome, encode
from kmsync_contracts.codecs import decode_model
from kmsync_contracts.marketo_ops import MarketoOperation
from kmsync_contracts.topics import MARKETO_OPS, MARKETO_RESULTS, TopicSpec
from kmsync_kafka.clients import reliable_producer, topic_name


async def produce_ops(bootstrap: str, ops: Sequence[MarketoOperation], prefix: str = "") -> None:
    """Every operation acknowledged by Kafka (acks=all), keyed by munchkin id like transform does."""
    producer = reliable_producer(bootstrap, linger_ms=20, max_batch_size=1_048_576)
    await producer.start()
    try:
        topic = topic_name(MARKETO_OPS, prefix)
        futures = [await producer.send(topic, encode(op), key=op.munchkin_id.encode()) for op in ops]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _partitions(spec: TopicSpec, prefix: str = "") -> list[TopicPartition]:
    """The topic's partitions as the catalogue created them (the bench creates every topic itself)."""
    return [TopicPartition(topic_name(spec, prefix), p) for p in range(spec.partitions)]


@contextlib.asynccontextmanager
async def topic_sizes(bootstrap: str, spec: TopicSpec, prefix: str = "") -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """A function giving the records ever written to the topic (sum of end offsets), over one
    consumer: polling it costs the broker one offsets request, not a connection and a consumer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    parts = _partitions(spec, prefix)

    async def size() -> int:
        return int(sum((await consumer.end_offsets(parts)).values()))

    try:
        yield size
    finally:
        await consumer.stop()


class ResultsFollower:
    """Reads marketo.results.v1 from the beginning in the background: outcomes by munchkin and op id."""

    def __init__(self, bootstrap: str, prefix: str = "", count_only: frozenset[str] = frozenset(),
                 keep_sessions: frozenset[str] = frozenset()) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.by_instance: dict[str, dict[str, RecordOutcome]] = defaultdict(dict)
        #: Instances whose outcomes are only counted (a million outcomes kept whole would cost GiBs) ...
        self.count_only = count_only
        #: ... except those of these sessions (a live trickle beside a backfill): kept whole, not counted.
        self.keep_sessions = keep_sessions
        self._status_by_op: dict[str, dict[str, str]] = defaultdict(dict)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                          enable_auto_commit=False, auto_offset_reset="earliest",
                                          max_partition_fetch_bytes=4 * 1_048_576)
        await self._consumer.start()
        self._consumer.assign(_partitions(MARKETO_RESULTS, self.prefix))
        await self._consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for messages in batch.values():
                for message in messages:
                    if message.value is None:
                        continue
                    outcome = decode_model(RecordOutcome, message.value)
                    if outcome.munchkin_id in self.count_only and outcome.session_id not in self.keep_sessions:
                        self._status_by_op[outcome.munchkin_id][outcome.op_id] = outcome.status
                    else:
                        self.by_instance[outcome.munchkin_id][outcome.op_id] = outcome
            if batch:
                self.changed.set()

    def outcomes(self, munchkin: str) -> dict[str, RecordOutcome]:
        return self.by_instance[munchkin]

    def count(self, munchkin: str) -> int:
        if munchkin in self.count_only:
            return len(self._status_by_op[munchkin])
        return len(self.by_instance[munchkin])

    def status_counts(self, munchkin: str) -> dict[str, int]:
        """Operations by their latest outcome's status."""
        statuses = (self._status_by_op[munchkin].values() if munchkin in self.count_only
                    else (o.status for o in self.by_instance[munchkin].values()))
        return dict(Counter(statuses))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
