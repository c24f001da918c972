"""A window whose partitions stay paused cannot fill: it closes at once (worker.py, reason ``paused``), but only while
flow control keeps them paused past its next poll (commits.py ``stays_paused``). A partition about to resume (its
undecided operations below half the cap) will bring more records, so its window still fills to its count."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from kmsync_sink.commits import CommitControl
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.offsets import OffsetTracker

from .test_adaptive_windows import A, _worker

TOPIC = "marketo.ops.v1"


def test_a_partition_stays_paused_only_while_its_undecided_operations_are_not_below_half_the_cap() -> None:
    control = CommitControl(OffsetTracker(), 20, SinkMetrics())
    for offset in range(25):
        control.tracker.read(TOPIC, 0, offset)
    assert not control.stays_paused(TOPIC, 0), "not paused (yet)"
    control.paused.add(TopicPartition(TOPIC, 0))
    assert control.stays_paused(TOPIC, 0)
    for offset in range(15):  # a window of 15 decided: 10 undecided, not below half the cap
        control.tracker.done(TOPIC, 0, offset)
    assert control.stays_paused(TOPIC, 0)
    control.tracker.done(TOPIC, 0, 15)  # 9: resumed at the next poll, more records come
    assert not control.stays_paused(TOPIC, 0)
    assert not control.stays_paused(TOPIC, 1)


def test_a_window_cannot_grow_only_when_every_partition_it_reads_stays_paused(ops: Any) -> None:
    worker = _worker()
    assert not worker._cannot_grow(), "a worker that has read nothing waits for its first records"
    stays: set[tuple[str, int]] = {(TOPIC, 0)}
    worker._stays_paused = lambda topic, partition: (topic, partition) in stays
    worker.add(ops.pending(ops.lead("a@x.com", munchkin=A), arrived=99.0))
    worker.partitions = {(TOPIC, 0)}
    assert worker._cannot_grow()
    worker.partitions = {(TOPIC, 0), (TOPIC, 1)}  # its backfill lane's partition, say, still fetching
    assert not worker._cannot_grow()
    stays.clear()  # about to resume
    worker.partitions = {(TOPIC, 0)}
    assert not worker._cannot_grow()
