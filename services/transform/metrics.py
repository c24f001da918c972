"""Prometheus metrics of the transform service, per tenant (the event's name in the tenants file)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from transform.routing import RouteResult
from transform.transformer import StepResult


class TransformMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = Counter("kmsync_transform_records_in", "Input records read",
                                  ["tenant", "topic"], registry=r)
        self.ops_out = Counter("kmsync_transform_ops_out", "Marketo operations emitted",
                               ["tenant", "kind"], registry=r)
        self.regressions = Counter("kmsync_transform_status_regressions_dropped",
                                   "Statuses dropped: lower step than the member already has",
                                   ["tenant"], registry=r)
        self.repeats = Counter("kmsync_transform_repeats_dropped",
                               "Statuses or poll answers dropped: the member already has them",
                               ["tenant"], registry=r)
        self.ledger_hits = Counter("kmsync_transform_activity_ledger_hits",
                                   "Activities not emitted again because the ledger holds them",
                                   ["tenant"], registry=r)
        self.dead_letters = Counter("kmsync_transform_dead_lettered", "Records sent to transform.dlq.v1",
                                    ["tenant", "reason"], registry=r)
        # Set after every poll from the last fetch response (transform.lag): log end minus position.
        self.consumer_lag = Gauge("kmsync_transform_consumer_lag_records",
                                  "Input records not read yet: the partition's log end (last stable offset for "
                                  "read_committed) minus transform's position, as of the last poll",
                                  ["topic", "partition"], registry=r)
        self._lag_children: dict[tuple[str, int], Gauge] = {}

    def routed(self, topic: str, result: RouteResult) -> None:
        self.records_in.labels(result.tenant, topic).inc()
        if result.dead_letter is not None:
            self.dead_letters.labels(result.tenant, result.dead_letter.reason_code).inc()

    def stepped(self, result: StepResult) -> None:
        for op in result.ops:
            self.ops_out.labels(result.tenant, op.kind).inc()
        for dl in result.dead_letters:
            self.dead_letters.labels(result.tenant, dl.reason_code).inc()
        if result.regressions:
            self.regressions.labels(result.tenant).inc(result.regressions)
        if result.repeats:
            self.repeats.labels(result.tenant).inc(result.repeats)
        if result.ledger_hits:
            self.ledger_hits.labels(result.tenant).inc(result.ledger_hits)

    def set_lag(self, topic: str, partition: int, records: int) -> None:
        """`topic` is the catalogue name (as in records_in), without the deployment's prefix."""
        child = self._lag_children.get((topic, partition))
        if child is None:
            child = self._lag_children[(topic, partition)] = self.consumer_lag.labels(topic, str(partition))
        child.set(records)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
