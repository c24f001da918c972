"""The sink's held-work gauges follow the instance's worker: a rebalance that takes the worker away
removes its samples, so no stale count outlives it (chaos's drain and dashboards read them)."""

from __future__ import annotations

from prometheus_client import generate_latest

from kmsync_common.metrics_text import sample_sum
from kmsync_sink.metrics import SinkMetrics


def test_forgetting_an_instance_removes_its_held_work_samples_only() -> None:
    m = SinkMetrics()
    for munchkin in ("111-AAA-111", "222-BBB-222"):
        m.buffered.labels(munchkin).set(236)
        m.awaiting_verification.labels(munchkin).set(236)
    m.forget_instance("111-AAA-111")
    m.forget_instance("333-CCC-333")  # never reported here: nothing to remove, no error
    text = generate_latest(m.registry).decode()
    assert "111-AAA-111" not in text
    assert sample_sum(text, "kmsync_sink_buffered_operations") == 236
    assert sample_sum(text, "kmsync_sink_activities_awaiting_verification", {"munchkin_id": "222-BBB-222"}) == 236
