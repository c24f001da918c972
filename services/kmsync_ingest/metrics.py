"""Prometheus metrics of one ingest instance, in its own registry (tests run several at once).

Labels are bounded: stream (statuses|engagement|polls|dlq|watermarks), mode (pull|webhook|file),
outcome words. Never user ids or emails (docs/reference/streaming.md §6).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kmsync_common.health import service_registry

__all__ = ["CONTENT_TYPE_LATEST", "IngestMetrics"]


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = service_registry(registry)
        r = self.registry
        self.records_in = Counter(
            "kmsync_ingest_records_in_total", "Source records read from Kaltura, before de-duplication",
            ["stream", "mode"], registry=r,
        )
        self.records_out = Counter(
            "kmsync_ingest_records_out_total", "Records acknowledged by Kafka", ["stream"], registry=r,
        )
        self.duplicates = Counter(
            "kmsync_ingest_duplicates_skipped_total", "Source records already produced, skipped",
            ["stream"], registry=r,
        )
        self.statuses_overlap = Counter(
            "kmsync_ingest_statuses_overlap_total", "Statuses re-read before the watermark: skipped (produced "
            "before), late (not visible before: produced now), stale (older than a version produced: skipped), "
            "capped (window cut short)", ["outcome"], registry=r,
        )
        self.bad_rows = Counter(
            "kmsync_ingest_bad_rows_total", "Rows that could not be read (dead-lettered)",
            ["mode"], registry=r,
        )
        self.notifications = Counter(
            "kmsync_ingest_notifications_total", "Kaltura HTTP notifications by outcome",
            ["outcome"], registry=r,
        )
        self.pulls = Counter(
            "kmsync_ingest_pulls_total", "Pulls from Kaltura by stream and outcome",
            ["stream", "outcome"], registry=r,
        )
        self.errors = Counter(
            "kmsync_ingest_errors_total", "Errors by kind (kafka, kaltura, internal)", ["kind"], registry=r,
        )
        self.uploads_in_progress = Gauge(
            "kmsync_ingest_uploads_in_progress", "Report uploads being read or loaded right now", registry=r,
        )
        self.uploads = Counter(
            "kmsync_ingest_uploads_total", "Report uploads by outcome (loaded, unauthorized, refused, busy, "
            "kafka_unavailable)", ["outcome"], registry=r,
        )
        self.owned_partitions = Gauge(
            "kmsync_ingest_owned_partitions", "Coordination partitions whose events this replica pulls",
            registry=r,
        )
        self.owned_events = Gauge(
            "kmsync_ingest_owned_events", "Configured events whose pulls this replica runs", registry=r,
        )
        self.handovers = Counter(
            "kmsync_ingest_handovers_total", "Coordination partitions taken over or released",
            ["direction"], registry=r,
        )
        self.triggers = Counter(
            "kmsync_ingest_forwarded_triggers_total",
            "Notifications forwarded by another replica, by outcome (pulled, retried, skipped)",
            ["outcome"], registry=r,
        )
        self.kafka_up = Gauge(
            "kmsync_ingest_kafka_up", "1 when the last Kafka produce was acknowledged", registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
