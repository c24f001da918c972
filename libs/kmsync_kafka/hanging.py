"""Hanging transactions: a partition whose last stable offset stays behind its log end for good.

A read_committed reader stops at a partition's last stable offset (LSO): the first offset of its oldest
open transaction. A live transaction holds it at most its producer's ``transaction.timeout.ms`` (the broker
then aborts it, checking every ``transaction.abort.timed.out.transaction.cleanup.interval.ms``, 10 s by
default). A broker crash can leave a transaction open that its coordinator no longer knows (a "hanging"
transaction, docs/reference/streaming.md §3.1): no timeout and no fence ends it, and every read_committed
reader of the partition stalls there for good. So an LSO that has not moved, behind the log end, for longer
than the longest transaction timeout of the partition's producers plus that scan (plus a margin) can only be
a hanging transaction.

``HangingWatch`` is that decision, pure (observations in, verdicts out; tests need no broker). ``OffsetReader``
reads the two offsets of every partition of some topics (a read_committed and a read_uncommitted consumer
without a group: the end offsets each one sees). ``stable_and_end`` is the one-shot read. ``HangingCheck`` runs
both periodically on a task of its own and says what it finds (the sink watches marketo.ops.v1 with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from kmsync_kafka.reading import topic_partitions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offsets:
    """A partition's last stable offset (read_committed end) and log end (read_uncommitted end)."""

    stable: int
    end: int

    @property
    def open(self) -> bool:
        """An open transaction holds the partition: read_committed readers stop before the log end."""
        return self.stable < self.end


@dataclass(frozen=True)
class Held:
    """A partition whose LSO has stayed at ``stable`` behind ``end`` since ``since`` (monotonic seconds)."""

    tp: TopicPartition
    stable: int
    end: int
    since: float
    #: How long it has been held, as of the observation that made this verdict.
    held_for: float


@dataclass(frozen=True)
class Verdicts:
    """One observation's outcome: what became hanging now, everything hanging, and what stopped being held."""

    #: Held for longer than the threshold since this observation (the ones to report once).
    new: list[Held] = field(default_factory=list)
    #: Every partition held for longer than the threshold (including ``new``).
    hanging: list[Held] = field(default_factory=list)
    #: Every partition held at all (the threshold not necessarily reached), for a held-time gauge.
    held: list[Held] = field(default_factory=list)
    #: Partitions that had been hanging and whose LSO moved again (ended, by an abort or otherwise).
    ended: list[TopicPartition] = field(default_factory=list)


class HangingWatch:
    """Decides which partitions a hanging transaction holds, from repeated offset observations.

    A partition is held from the first observation of its LSO behind its log end, as long as the LSO stays the
    same value; an LSO that moves (another transaction ended) or reaches the log end starts it afresh. Held for
    longer than ``after_seconds``: hanging. A partition missing from an observation (its offsets could not be
    read) keeps its state. The true start can be up to one observation interval earlier than ``since``. After a read
    that failed altogether (``unread``: the broker down, say), every hold not yet reported starts afresh at the next
    observation: the outage is no evidence of a hang, and a live transaction it outlasted is ended by its
    transaction timeout once the broker is back."""

    def __init__(self, after_seconds: float) -> None:
        self.after = after_seconds
        self._since: dict[TopicPartition, tuple[int, float]] = {}
        self._reported: set[TopicPartition] = set()

    def observe(self, now: float, offsets: Mapping[TopicPartition, Offsets]) -> Verdicts:
        verdicts = Verdicts()
        for tp, seen in offsets.items():
            start = self._since.get(tp)
            if not seen.open:
                self._forget(tp, verdicts)
                continue
            if start is None or start[0] != seen.stable:
                self._forget(tp, verdicts)
                start = self._since[tp] = (seen.stable, now)
            held = Held(tp, seen.stable, seen.end, start[1], now - start[1])
            verdicts.held.append(held)
            if held.held_for >= self.after:
                verdicts.hanging.append(held)
                if tp not in self._reported:
                    self._reported.add(tp)
                    verdicts.new.append(held)
        return verdicts

    def unread(self) -> None:
        """No offsets could be read: every hold not reported yet is started afresh by the next observation (its held
        time would include the outage). A reported one keeps its start: it stays hanging until its LSO moves."""
        self._since = {tp: start for tp, start in self._since.items() if tp in self._reported}

    def _forget(self, tp: TopicPartition, verdicts: Verdicts) -> None:
        self._since.pop(tp, None)
        if tp in self._reported:
            self._reported.discard(tp)
            verdicts.ended.append(tp)


class OffsetReader:
    """Reads the LSO and log end of every partition of some topics, with two long-lived consumers (no group,
    nothing assigned: only their ListOffsets requests). ``start`` before ``read``; ``stop`` at the end. A ``start``
    that raises (or is cancelled) has stopped both again: an aiokafka consumer never stopped is an ERROR
    "Unclosed AIOKafkaConsumer" whenever the garbage collector finalises it."""

    def __init__(self, bootstrap: str, *, request_timeout_ms: int = 10_000) -> None:
        self._readers = [AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                          isolation_level=isolation, request_timeout_ms=request_timeout_ms)
                         for isolation in ("read_committed", "read_uncommitted")]

    async def start(self) -> None:
        try:
            for reader in self._readers:
                await reader.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop both consumers: each one even when stopping the other raises or is cancelled."""
        async with contextlib.AsyncExitStack() as readers:
            for reader in self._readers:
                readers.push_async_callback(reader.stop)

    async def topics(self) -> set[str]:
        """Every topic of the cluster (internal ones included)."""
        return await self._readers[0].topics()

    async def read(self, topics: Sequence[str]) -> dict[TopicPartition, Offsets]:
        """Both offsets of every partition of ``topics`` (a topic that does not exist has none). Raises
        TimeoutError or aiokafka's KafkaError."""
        return await self.offsets(await self.partitions(topics))

    async def partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        """Every partition of ``topics`` (a topic that does not exist has none)."""
        return [tp for topic in topics for tp in await topic_partitions(self._readers[0], topic)]

    async def offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, Offsets]:
        """Both offsets of each of ``tps``. Raises TimeoutError or aiokafka's KafkaError (one partition without a
        leader fails the whole read)."""
        if not tps:
            return {}
        stable_reader, end_reader = self._readers
        stable, end = await stable_reader.end_offsets(list(tps)), await end_reader.end_offsets(list(tps))
        return {tp: Offsets(stable[tp], end[tp]) for tp in tps}


class PartitionOffsets(Protocol):
    """What ``read_readable`` needs of an ``OffsetReader``."""

    async def partitions(self, topics: Sequence[str]) -> list[TopicPartition]: ...

    async def offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, Offsets]: ...


async def read_readable(reader: PartitionOffsets, topics: Sequence[str], within: float
                        ) -> tuple[dict[TopicPartition, Offsets], list[TopicPartition]]:
    """Both offsets of every partition of ``topics`` that can be read, and apart the ones that cannot (no leader,
    say): when the read of all fails within ``within``, each partition is read on its own (all at once, each within
    ``within``). Raises TimeoutError or KafkaError only when the partitions cannot be listed."""
    async with asyncio.timeout(within):
        tps = await reader.partitions(topics)
    try:
        async with asyncio.timeout(within):
            return await reader.offsets(tps), []
    except (KafkaError, TimeoutError):
        pass
    each = await asyncio.gather(*(asyncio.wait_for(reader.offsets([tp]), within) for tp in tps),
                                return_exceptions=True)
    readable = {tp: got[tp] for tp, got in zip(tps, each, strict=True) if isinstance(got, dict)}
    for got in each:
        if isinstance(got, BaseException) and not isinstance(got, KafkaError | TimeoutError):
            raise got
    return readable, [tp for tp in tps if tp not in readable]


async def stable_and_end(bootstrap: str, topics: Sequence[str], *, within: float = 30.0
                         ) -> dict[TopicPartition, Offsets]:
    """One read of both offsets of every partition of ``topics``. Raises TimeoutError or aiokafka's KafkaError."""
    reader = OffsetReader(bootstrap)
    try:
        async with asyncio.timeout(within):
            await reader.start()
            return await reader.read(topics)
    finally:
        await reader.stop()


async def held_open(bootstrap: str, topics: Sequence[str], *, within: float = 30.0) -> list[TopicPartition]:
    """The partitions of ``topics`` an open transaction holds now: their LSO is behind their log end. Raises
    TimeoutError, or aiokafka's KafkaError (one partition without a leader fails it: ``read_readable`` leaves such
    a partition out)."""
    return [tp for tp, seen in (await stable_and_end(bootstrap, topics, within=within)).items() if seen.open]


#: Told every observation's verdicts (a service's gauges).
Report = Callable[[Verdicts], None]
#: Which topics to check, given every topic of the cluster (read again at each check: topics a service creates later,
#: as quixstreams' changelogs, are watched once they exist).
TopicChoice = Callable[[set[str]], list[str]]


def _fixed(topics: list[str]) -> TopicChoice:
    def choose(cluster: set[str]) -> list[str]:
        return topics

    return choose


class LabelledGauge(Protocol):
    """What ``HeldGauges`` needs of a prometheus_client Gauge with the labels topic and partition."""

    def labels(self, topic: str, partition: str) -> _Settable: ...


class _Settable(Protocol):
    def set(self, value: float) -> None: ...


class HeldGauges:
    """A ``Report`` that keeps a service's two gauges per partition (labels topic, partition; bounded by the
    partitions checked): ``held``, how long the LSO has stayed unmoved behind the log end (0 once it moves), and
    ``hanging``, 1 while that is longer than the threshold. A partition gets series once it has been held."""

    def __init__(self, held: LabelledGauge, hanging: LabelledGauge) -> None:
        self.held, self.hanging = held, hanging
        self._shown: set[tuple[str, str]] = set()

    def __call__(self, verdicts: Verdicts) -> None:
        now_held = {(h.tp.topic, str(h.tp.partition)): h.held_for for h in verdicts.held}
        now_hanging = {(h.tp.topic, str(h.tp.partition)) for h in verdicts.hanging}
        for labels in self._shown | now_held.keys():
            self.held.labels(*labels).set(now_held.get(labels, 0.0))
            self.hanging.labels(*labels).set(1.0 if labels in now_hanging else 0.0)
        self._shown |= now_held.keys()


class HangingCheck:
    """Every ``interval`` seconds, reads the LSO and log end of every partition of ``topics`` and judges them
    (``HangingWatch``): a partition held past ``after_seconds`` is logged at ERROR once, naming topic, partition,
    LSO, log end and for how long, with what it means and the runbook; its end is logged at WARNING. ``report``
    gets every observation's verdicts. Run it on a task of its own (``run``), off any hot path: a failed read is
    logged and retried at the next interval, never raised."""

    def __init__(self, bootstrap: str, topics: Sequence[str] | TopicChoice, *, after_seconds: float, interval: float,
                 report: Report | None = None, clock: Callable[[], float] = time.monotonic,
                 runbook: str = "docs/reference/streaming.md §3.1") -> None:
        self.bootstrap, self.interval = bootstrap, interval
        self.topics: TopicChoice = topics if callable(topics) else _fixed(list(topics))
        self._named = "the watched topics"
        self.watch = HangingWatch(after_seconds)
        self.report, self.clock, self.runbook = report, clock, runbook
        self._reader: OffsetReader | None = None

    async def check(self) -> Verdicts | None:
        """One observation; None when the offsets could not be read (logged)."""
        try:
            if self._reader is None:
                reader = OffsetReader(self.bootstrap)
                await reader.start()
                self._reader = reader
            async with asyncio.timeout(max(self.interval, 10.0)):
                topics = self.topics(await self._reader.topics())
            self._named = ", ".join(topics)
            # A partition without a leader is left out of this observation (it keeps its state), not the others.
            offsets, unreadable = await read_readable(self._reader, topics, max(self.interval, 10.0))
            if unreadable and not offsets:
                raise TimeoutError("no partition's offsets could be read")
            if unreadable:
                log.info("hanging-transaction check: cannot read %s now; trying again in %.0f s",
                         ", ".join(f"{tp.topic}[{tp.partition}]" for tp in unreadable), self.interval)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("hanging-transaction check: cannot read the offsets of %s (%r); trying again in %.0f s",
                        self._named, exc, self.interval)
            self.watch.unread()
            await self.close()
            return None
        verdicts = self.watch.observe(self.clock(), offsets)
        self._log(verdicts)
        if self.report is not None:
            self.report(verdicts)
        return verdicts

    def _log(self, verdicts: Verdicts) -> None:
        for held in verdicts.new:
            log.error("hanging transaction: %s[%d] last stable offset %d unmoved behind log end %d for %.0f s (over "
                      "%.0f s: the longest transaction timeout of its producers plus a margin, so no live transaction "
                      "holds it): read_committed readers stop at %d for good until an abort marker of its producer "
                      "ends it; runbook: %s", held.tp.topic, held.tp.partition, held.stable, held.end, held.held_for,
                      self.watch.after, held.stable, self.runbook)
        for tp in verdicts.ended:
            log.warning("hanging transaction ended: %s[%d] last stable offset moves again", tp.topic, tp.partition)

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``interval`` seconds until ``stop`` is set (or the task is cancelled)."""
        try:
            while not stop.is_set():
                await self.check()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await self.close()

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.stop()
