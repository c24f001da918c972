"""Commit control: commit only offsets whose records all have an outcome (the offset tracker's
committable positions), and pause a partition whose undecided records pile up (a parked instance)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.worker import InstanceWorker

log = logging.getLogger(__name__)

#: How often the per-instance held-work gauges are set (each counts over the instance's windows).
INSTANCE_GAUGES_EVERY_SECONDS = 1.0


class CommitControl:
    def __init__(self, tracker: OffsetTracker, max_buffered_per_partition: int, metrics: SinkMetrics) -> None:
        self.tracker = tracker
        self.cap = max_buffered_per_partition
        #: A paused partition resumes when its undecided operations fall below this (half the cap).
        self.resume_below = max_buffered_per_partition // 2
        self.metrics = metrics
        #: Set when the sink starts.
        self.consumer: AIOKafkaConsumer | None = None
        self.paused: set[TopicPartition] = set()
        #: Instances with held-work gauge series, and when they are set next.
        self._reported: set[str] = set()
        self._gauges_due = 0.0

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        offsets = {
            TopicPartition(t, p): pos for (t, p), pos in self.tracker.to_commit().items()
            if TopicPartition(t, p) in assigned and (only is None or TopicPartition(t, p) in only)
        }
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("commit refused (group rebalanced): %s", exc)
            return
        except KafkaError as exc:  # the broker is away: committed later, nothing is lost by waiting
            log.warning("commit failed (%r); retried at the next interval", exc)
            return
        self.tracker.mark_committed({(tp.topic, tp.partition): pos for tp, pos in offsets.items()})

    def flow_control(self, workers: Mapping[str, InstanceWorker]) -> None:
        """Pause a partition whose undecided records pile up (a parked instance), resume it later; set the
        held-work gauges."""
        assert self.consumer is not None
        cap = self.cap
        undecided = 0
        paused_now = False
        for tp in self.consumer.assignment():
            open_n = self.tracker.open_count(tp.topic, tp.partition)
            undecided += open_n
            if open_n >= cap and tp not in self.paused:
                self.consumer.pause(tp)
                self.paused.add(tp)
                paused_now = True
                log.warning("partition %s paused: %d operations undecided", tp, open_n)
            elif open_n < self.resume_below and tp in self.paused:
                self.consumer.resume(tp)
                self.paused.discard(tp)
        if paused_now:  # a window whose partitions are all paused closes with what it holds (worker.py)
            for worker in workers.values():
                worker.partitions_paused()
        self.metrics.undecided.set(undecided)
        now = time.monotonic()
        if now >= self._gauges_due:  # a scan of every window: once a second, not every poll (1.6 % of CPU)
            self._gauges_due = now + INSTANCE_GAUGES_EVERY_SECONDS
            self._instance_gauges(workers)

    def stays_paused(self, topic: str, partition: int) -> bool:
        """Paused, and not resumed at the next poll either: its undecided operations are not below half the cap. A
        window fed only by such partitions cannot fill (worker.py closes it at once)."""
        return (topic, partition) in self.paused and self.tracker.open_count(topic, partition) >= self.resume_below

    def _instance_gauges(self, workers: Mapping[str, InstanceWorker]) -> None:
        """Per instance, summed over its live and backfill workers (lanes.py). An instance whose workers
        a rebalance took away loses its series here (its new owner reports it), so no stale count stays."""
        buffered: dict[str, int] = {}
        awaiting: dict[str, int] = {}
        for worker in workers.values():
            m = worker.munchkin_id
            buffered[m] = buffered.get(m, 0) + worker.buffered
            awaiting[m] = awaiting.get(m, 0) + worker.awaiting_verification
        for m, n in buffered.items():
            self.metrics.buffered.labels(m).set(n)
            self.metrics.awaiting_verification.labels(m).set(awaiting[m])
        for m in self._reported - buffered.keys():
            self.metrics.buffered.remove(m)
            self.metrics.awaiting_verification.remove(m)
        self._reported = set(buffered)

    def revoked(self, tp: TopicPartition) -> None:
        """A partition left: nothing of its tracking or pausing counts any more."""
        self.tracker.forget(tp.topic, tp.partition)
        self.paused.discard(tp)
