"""The sink's per-instance held-work gauges follow the instance's workers: a rebalance that takes them
away removes the instance's series, so no stale count outlives them (chaos's drain and dashboards
read them; the new owner reports the instance)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from prometheus_client import generate_latest

from kmsync_common.metrics_text import sample_sum
from kmsync_sink.commits import CommitControl
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.worker import InstanceWorker

A, B = "111-AAA-111", "222-BBB-222"


@dataclass
class _Held:
    """What the gauges read of an instance's worker."""

    munchkin_id: str
    buffered: int
    awaiting_verification: int


def _gauges(control: CommitControl, workers: dict[str, _Held]) -> str:
    control._instance_gauges(cast(Mapping[str, InstanceWorker], workers))
    return generate_latest(control.metrics.registry).decode()


def test_an_instances_lanes_add_up_and_a_worker_taken_away_leaves_no_stale_series() -> None:
    control = CommitControl(OffsetTracker(), 1000, SinkMetrics())
    text = _gauges(control, {"a-live": _Held(A, 200, 36), "a-backfill": _Held(A, 36, 0), "b-live": _Held(B, 5, 5)})
    assert sample_sum(text, "kmsync_sink_buffered_operations", {"munchkin_id": A}) == 236
    assert sample_sum(text, "kmsync_sink_activities_awaiting_verification", {"munchkin_id": A}) == 36
    # A rebalance moved A's partition to another replica: its workers are gone from this one.
    text = _gauges(control, {"b-live": _Held(B, 0, 0)})
    assert A not in text
    assert sample_sum(text, "kmsync_sink_buffered_operations") == 0
    assert sample_sum(text, "kmsync_sink_activities_awaiting_verification", {"munchkin_id": B}) == 0
    # And back again: reported afresh.
    text = _gauges(control, {"a-live": _Held(A, 3, 1), "b-live": _Held(B, 0, 0)})
    assert sample_sum(text, "kmsync_sink_buffered_operations", {"munchkin_id": A}) == 3
