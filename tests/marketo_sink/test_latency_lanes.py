"""End-to-end latency is live data's delay: outcomes of the backfill lane (history, with source
times days or months old) are counted and decided but not observed as latency, so a large backfill
neither distorts the latency panel nor fires KmsyncSinkFallingBehind (deploy/prometheus/alerts.yml)."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import generate_latest

from kmsync_bench.workload import attendee_ops
from kmsync_common.metrics_text import sample_sum
from kmsync_contracts import utc_now
from kmsync_sink.decisions import Decision
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.pending import PendingOp, Source
from kmsync_sink.publishing import OutcomePublisher

M = "111-AAA-111"
LIVE, BACKFILL = "marketo.ops.v1", "marketo.ops.backfill.v1"


def test_only_live_outcomes_are_observed_as_latency() -> None:
    tracker, metrics = OffsetTracker(), SinkMetrics()
    publisher = OutcomePublisher("marketo.results.v1", "marketo.dlq.v1", tracker, metrics)
    publisher.backfill_topic = BACKFILL
    now = utc_now()
    live = attendee_ops(1, M, "live", now - timedelta(seconds=2))
    history = attendee_ops(2, M, "old", now - timedelta(days=90))
    decisions = []
    for topic, ops in ((LIVE, live), (BACKFILL, history)):
        for offset, op in enumerate(ops):
            tracker.read(topic, 0, offset)
            decisions.append(Decision(PendingOp(Source(topic, 0, offset), op, 100, 0.0), "created"))
    publisher._count(decisions, now)
    text = generate_latest(metrics.registry).decode()
    assert sample_sum(text, "kmsync_sink_end_to_end_latency_seconds_count") == len(live)
    assert sample_sum(text, "kmsync_sink_end_to_end_latency_seconds_sum") < 10 * len(live)
    assert sample_sum(text, "kmsync_sink_outcomes_total") == len(live) + len(history)  # every one decided
    assert tracker.open_count(BACKFILL, 0) == 0 and tracker.open_count(LIVE, 0) == 0
