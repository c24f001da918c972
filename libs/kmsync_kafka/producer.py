"""An asyncio producer over confluent-kafka (librdkafka): the sink's and ingest's hot produce path (issue #22).

``python -m kmsync_bench.clients`` measured 0.06-0.07 client CPU s per 10,000 records with librdkafka
against 0.31 with aiokafka (docs/decisions.md, "Kafka client library"). librdkafka's API blocks, so
:class:`KafkaProducer` runs ``poll()`` on a thread of its own: librdkafka calls each record's delivery
callback there, the callbacks count the acknowledgements of one send, and the send's asyncio future is
resolved with a single ``loop.call_soon_threadsafe`` once all of them are in (not one wake-up per record).

The settings are those of ``kmsync_kafka.clients.reliable_producer`` (acks=all, idempotence, linger 5 ms,
1,000,000-byte batches, 1 MiB requests, 15 s to acknowledge) and, critically, the same partition for a
key: ``partitioner=murmur2_random`` is the Java client's and aiokafka's ``(murmur2(key) & 0x7fffffff) %
partitions`` (docs/reference/streaming.md §3.1); librdkafka's default (``consistent_random``,
CRC32) would put keys elsewhere and break co-partitioned topics and the sink's per-instance routing.

Every failure surfaces as :class:`ProduceError` with librdkafka's error name; the configuration (which
may one day hold credentials) is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

log = logging.getLogger(__name__)

#: librdkafka's own log lines (connection problems and the like), at their levels.
LIBRDKAFKA_LOG = logging.getLogger("kmsync_kafka.librdkafka")

#: How long one ``poll()`` of the delivery thread blocks when there is nothing to deliver.
POLL_SECONDS = 0.1

#: Between two metadata requests for a topic the broker does not know yet.
METADATA_RETRY_SECONDS = 0.1


class ProduceError(Exception):
    """Kafka did not acknowledge (or the producer could not take) a record. ``fatal``: the producer can
    produce nothing more (librdkafka's fatal idempotence errors) and must be replaced."""

    def __init__(self, message: str, *, code: str = "", retriable: bool = True, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable
        self.fatal = fatal

    @classmethod
    def of(cls, err: KafkaError, what: str) -> ProduceError:
        return cls(f"{what}: {err.name()} ({err.str()})", code=err.name(),
                   retriable=bool(err.retriable()), fatal=bool(err.fatal()))


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce; ``partition`` None: the key's partition (murmur2, as Java and aiokafka)."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    headers: Sequence[tuple[str, bytes]] | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    topic: str
    partition: int
    offset: int


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings equal to ``reliable_producer``'s; ``overrides`` use librdkafka's names."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 1_000_000,  # aiokafka max_batch_size
        "message.max.bytes": 1_048_576,  # aiokafka max_request_size (its default)
        "request.timeout.ms": 15_000,
        # aiokafka fails a record not acknowledged within request_timeout_ms; librdkafka's equivalent.
        "message.timeout.ms": 15_000,
        "partitioner": "murmur2_random",  # docs/reference/streaming.md §3.1: the Java/aiokafka key mapping
        "queue.buffering.max.messages": 1_000_000,
    }
    config.update(overrides)
    return config


class _Deliveries:
    """The acknowledgements of one send: counted on the delivery thread, one future resolved at the end."""

    __slots__ = ("_lock", "count", "error", "failed", "future", "last", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[Delivered | None] = loop.create_future()
        self.count = self.remaining = count
        self.failed = 0
        self.error: KafkaError | None = None
        self.last: Message | None = None
        self._lock = threading.Lock()

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:  # the delivery thread
        with self._lock:
            if err is not None:
                self.failed += 1
                self.error = self.error or err
            self.last = msg  # read only once all are in (a Delivered per record would cost the thread)
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            _call_in_loop(self.loop, self._resolve)

    def not_sent(self, count: int, err: KafkaError) -> None:
        """``count`` records librdkafka refused at once (never queued): they count as failed now."""
        with self._lock:
            self.failed += count
            self.error = self.error or err
            self.remaining -= count
            done = self.remaining == 0
        if done:
            self._resolve()

    def _resolve(self) -> None:
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(ProduceError.of(
                self.error, f"Kafka did not acknowledge {self.failed} of {self.count} record(s)"))
        elif self.last is None:
            self.future.set_result(None)
        else:
            m = self.last
            self.future.set_result(Delivered(m.topic() or "", m.partition() or 0, m.offset() or 0))

    def abandon(self, reason: str) -> None:
        if not self.future.done():
            self.future.set_exception(ProduceError(reason, code="_STOPPED"))


def _call_in_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """From the delivery thread; a loop already closed (a producer never stopped) has nobody to tell."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


class KafkaProducer:
    """``start``, ``send``/``send_batch``, ``flush``, ``stop``; one delivery thread per producer."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = dict(config)
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._pending: set[_Deliveries] = set()
        self._fatal: ProduceError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, within_seconds: float = 10.0) -> None:
        """Create the producer and check a broker answers (ProduceError if none does ``within_seconds``)."""
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self._config, logger=LIBRDKAFKA_LOG, error_cb=self._on_error)
        self._closing.clear()
        self._thread = threading.Thread(target=self._poll_loop, name="kmsync-kafka-producer", daemon=True)
        self._thread.start()
        try:
            answered = await self.probe(within_seconds)
        except BaseException:  # cancelled: the delivery thread and librdkafka's client are not left running
            await self.stop(0)
            raise
        if not answered:
            await self.stop(0)
            raise ProduceError(f"no Kafka broker answered within {within_seconds:g}s", code="_TRANSPORT")

    def _poll_loop(self) -> None:
        producer = self._producer
        assert producer is not None
        while not self._closing.is_set():
            try:
                producer.poll(POLL_SECONDS)
            except KafkaException as exc:  # a transactional producer's fatal error (fenced) comes out of poll()
                self._on_error(exc.args[0])
                self._closing.wait(POLL_SECONDS)  # it keeps coming: never a busy loop

    def _on_error(self, err: KafkaError) -> None:  # the delivery thread: librdkafka's client-wide errors
        if err.fatal():
            if self._fatal is not None:
                return
            self._fatal = ProduceError.of(err, "the Kafka producer failed for good")
            LIBRDKAFKA_LOG.error("fatal Kafka producer error: %s", err.name())
            if self._loop is not None:
                _call_in_loop(self._loop, lambda: self._abandon_all(str(self._fatal)))
        else:
            LIBRDKAFKA_LOG.warning("Kafka producer: %s (%s)", err.name(), err.str())

    def _abandon_all(self, reason: str) -> None:
        for deliveries in list(self._pending):
            deliveries.abandon(reason)
        self._pending.clear()

    async def probe(self, within_seconds: float = 2.0) -> bool:
        """Does a broker answer a metadata request ``within_seconds``? (readiness)."""
        producer = self._producer
        if producer is None:
            return False
        try:
            metadata = await asyncio.to_thread(producer.list_topics, None, within_seconds)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    async def partition_count(self, topic: str, within_seconds: float = 10.0) -> int:
        """How many partitions ``topic`` has, from the broker's metadata; asked again while the broker does not
        know it yet (a topic just created), as aiokafka's ``partitions_for`` does; ProduceError after that."""
        producer = self._running()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_seconds
        while True:
            try:
                metadata = await asyncio.to_thread(producer.list_topics, topic, max(0.1, deadline - loop.time()))
            except KafkaException as exc:
                raise ProduceError.of(exc.args[0], f"no metadata for {topic}") from exc
            found = metadata.topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                return len(found.partitions)
            if loop.time() >= deadline:
                what = found.error.name() if found is not None and found.error is not None else "no partitions"
                raise ProduceError(f"no partitions for {topic} within {within_seconds:g}s: {what}", code=what)
            await asyncio.sleep(METADATA_RETRY_SECONDS)

    def _running(self) -> Producer:
        if self._fatal is not None:
            raise self._fatal
        if self._producer is None or self._closing.is_set():
            raise ProduceError("the Kafka producer is not running", code="_STOPPED")
        return self._producer

    async def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, *, partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Delivered | None]:
        """Queue one record; the future resolves with where it was stored, or raises ProduceError."""
        return await self.send_many([Record(topic, value, key, partition, headers)])

    async def send_batch(self, records: Sequence[Record]) -> None:
        """Every record acknowledged (in order per partition), or ProduceError."""
        if records:
            await await_delivery(await self.send_many(records))

    async def send_many(self, records: Sequence[Record]) -> asyncio.Future[Delivered | None]:
        """Queue ``records`` (at least one); one future for all their acknowledgements (ProduceError if any fails)."""
        producer = self._running()
        if not records:
            done: asyncio.Future[Delivered | None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        deliveries = _Deliveries(asyncio.get_running_loop(), len(records))
        self._pending.add(deliveries)
        deliveries.future.add_done_callback(lambda _: self._pending.discard(deliveries))
        callback = deliveries.on_delivery
        for i, r in enumerate(records):
            while True:
                try:
                    if r.partition is None:
                        producer.produce(r.topic, r.value, r.key, on_delivery=callback, headers=r.headers)
                    else:
                        producer.produce(r.topic, r.value, r.key, r.partition, on_delivery=callback,
                                         headers=r.headers)
                    break
                except BufferError:  # librdkafka's queue is full: let the delivery thread drain it
                    await asyncio.sleep(0.005)
                except KafkaException as exc:  # refused at once (too large, unknown partition): not queued
                    deliveries.not_sent(len(records) - i, exc.args[0])
                    return deliveries.future
        return deliveries.future

    # ------------------------------------------------------------------ transactions (``transactional.id`` set)
    async def init_transactions(self, within_seconds: float = 15.0) -> None:
        """Register the transactional id: fences its previous holder and aborts that one's open transaction
        (docs/reference/streaming.md §3.1). ProduceError otherwise."""
        await self._transactional(self._running().init_transactions, within_seconds)

    def begin_transaction(self) -> None:
        try:
            self._running().begin_transaction()
        except KafkaException as exc:
            raise ProduceError.of(exc.args[0], "cannot begin a Kafka transaction") from exc

    async def commit_transaction(self, within_seconds: float = 15.0) -> None:
        """Deliver what the transaction holds and commit it; ProduceError if it is not committed."""
        await self._transactional(self._running().commit_transaction, within_seconds)

    async def abort_transaction(self, within_seconds: float = 15.0) -> None:
        await self._transactional(self._running().abort_transaction, within_seconds)

    async def _transactional(self, call: Callable[[float], None], within_seconds: float) -> None:
        try:
            await asyncio.to_thread(call, within_seconds)
        except KafkaException as exc:
            raise ProduceError.of(exc.args[0], "Kafka transaction") from exc

    async def flush(self, within_seconds: float = 15.0) -> int:
        """Wait until every queued record is delivered or failed; how many are still queued after that."""
        producer = self._running()
        return int(await asyncio.to_thread(producer.flush, within_seconds))

    async def stop(self, within_seconds: float = 15.0) -> None:
        """Deliver what is queued (up to ``within_seconds``), then stop; sends still waiting fail with ProduceError."""
        producer, thread = self._producer, self._thread
        if producer is None:
            return
        self._closing.set()
        if thread is not None:
            await asyncio.to_thread(thread.join)
        left = await asyncio.to_thread(producer.flush, within_seconds)
        if left:
            log.warning("Kafka producer stopped with %d record(s) not acknowledged", left)
            producer.purge()
            producer.poll(0)
        self._abandon_all("the Kafka producer stopped before Kafka acknowledged")
        self._producer = self._thread = None


async def await_delivery(future: asyncio.Future[Delivered | None]) -> Delivered | None:
    """The delivery of a send; a cancelled wait leaves the records queued (their errors are retrieved)."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_retrieve)
        raise


def _retrieve(future: asyncio.Future[Delivered | None]) -> None:
    if not future.cancelled():
        future.exception()
