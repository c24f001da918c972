"""The sink's Prometheus series, on the sink's own registry (several sinks may share a test process).

Labels never carry emails or secrets; ``instance`` is the Munchkin id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kmsync_marketo.limiter import InstanceLimiter

_RECORD_BUCKETS = (1, 10, 50, 100, 200, 250, 290, 300, 1000, 10_000, 100_000)
_WINDOW_BUCKETS = (1, 10, 100, 300, 600, 1000, 3000, 10_000, 30_000)
_LATENCY_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 86_400)


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls = Counter("kmsync_sink_marketo_calls", "Marketo write calls by endpoint and result code",
                             ["instance", "endpoint", "code"], registry=r)
        self.records_per_call = Histogram("kmsync_sink_records_per_call", "Records carried by one write call",
                                          ["instance", "endpoint"], buckets=_RECORD_BUCKETS, registry=r)
        self.window_records = Histogram("kmsync_sink_window_records", "Operations in a closed window",
                                        ["instance", "reason"], buckets=_WINDOW_BUCKETS, registry=r)
        self.window_bytes = Histogram("kmsync_sink_window_bytes", "Encoded bytes in a closed window",
                                      ["instance"], buckets=(1e3, 1e4, 1e5, 1e6, 4e6, 8e6, 1.6e7), registry=r)
        self.latency = Histogram("kmsync_sink_end_to_end_latency_seconds",
                                 "Kaltura source time to the sink's decision", ["instance", "kind"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.outcomes = Counter("kmsync_sink_outcomes", "Final outcomes by kind and status",
                                ["instance", "kind", "status"], registry=r)
        self.dlq = Counter("kmsync_sink_dead_letters", "Operations dead-lettered, by reason code",
                           ["instance", "reason_code"], registry=r)
        self.retries = Counter("kmsync_sink_record_retries", "Failed records scheduled for another try",
                               ["instance"], registry=r)
        self.limiter_waits = Gauge("kmsync_sink_limiter_waits", "Times the instance limiter made a call wait",
                                   ["instance"], registry=r)
        self.limiter_wait_seconds = Gauge("kmsync_sink_limiter_wait_seconds",
                                          "Seconds calls waited in the instance limiter", ["instance"], registry=r)
        self.budget_used = Gauge("kmsync_sink_budget_used", "Calls used of the instance budget",
                                 ["instance", "budget"], registry=r)
        self.budget_limit = Gauge("kmsync_sink_budget_limit", "The instance budget this sink may use",
                                  ["instance", "budget"], registry=r)
        self.throttles = Gauge("kmsync_sink_throttle_answers", "606/615 answers Marketo gave this process",
                               ["instance", "code"], registry=r)
        self.parked = Gauge("kmsync_sink_instance_parked", "1 while the instance waits for the daily reset (607)",
                            ["instance"], registry=r)
        self.bulk_in_flight = Gauge("kmsync_sink_bulk_jobs_in_flight", "Bulk import requests running",
                                    ["instance"], registry=r)
        self.buffered = Gauge("kmsync_sink_buffered_operations", "Operations read and not yet decided",
                              ["instance"], registry=r)
        self.verifications = Counter(
            "kmsync_sink_activity_verifications",
            "Custom activities looked up in the lead's activity log after an uncertain write, by result "
            "(found, absent, error, deferred)", ["instance", "result"], registry=r)
        # Set after every poll from the last fetch response (kmsync_kafka.lag): log end minus position.
        self.consumer_lag = Gauge("kmsync_sink_consumer_lag_records",
                                  "Operations on marketo.ops.v1 this sink has not read yet", ["partition"],
                                  registry=r)

    def observe_call(self, instance: str, endpoint: str, records: int, code: str) -> None:
        self.calls.labels(instance, endpoint, code).inc()
        self.records_per_call.labels(instance, endpoint).observe(records)

    def observe_limiter(self, instance: str, limiter: InstanceLimiter) -> None:
        st = limiter.stats()
        self.limiter_waits.labels(instance).set(st.waits)
        self.limiter_wait_seconds.labels(instance).set(st.wait_seconds)
        self.budget_used.labels(instance, "daily").set(st.daily_used)
        self.budget_limit.labels(instance, "daily").set(st.daily_budget)
        self.budget_used.labels(instance, "rolling_window").set(st.window_used)
        self.budget_limit.labels(instance, "rolling_window").set(st.window_limit)
        for code, n in st.throttles.items():
            self.throttles.labels(instance, code).set(n)
        self.parked.labels(instance).set(1 if st.parked_until is not None else 0)
