"""Prometheus metrics of the transform service, per tenant (the event's name in the tenants file)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric

from kmsync_common.health import service_registry
from kmsync_transform.routing import RouteResult
from kmsync_transform.transformer import StepResult

#: A counter's labelled series: the counter and its label values.
Series = tuple[Counter, tuple[str, ...]]


class Tally:
    """Counts of the record path kept as plain ints, added to their prometheus counters by `flush()`,
    which the registry runs before it collects (a scrape, generate_latest, get_sample_value): what a
    scrape reads is exact, and a record pays a dict update per count instead of prometheus' lock and
    checks (about 4 % of transform's engine thread; issue #22).

    One thread counts (the engine's); any may flush. Totals only grow and each is written by that one
    thread, so a flush adds to each counter the part of its total not added yet, under a lock of its
    own: nothing is counted twice or lost whichever thread flushes, and when."""

    def __init__(self) -> None:
        self.totals: dict[Series, int] = {}
        self._added: dict[Series, int] = {}
        self._children: dict[Series, Counter] = {}
        self._lock = threading.Lock()

    def add(self, counter: Counter, labels: tuple[str, ...], amount: int = 1) -> None:
        key = (counter, labels)
        self.totals[key] = self.totals.get(key, 0) + amount

    def flush(self) -> None:
        with self._lock:
            for key, total in list(self.totals.items()):  # a copy: the counting thread may add series
                added = self._added.get(key, 0)
                if total != added:
                    child = self._children.get(key)
                    if child is None:
                        child = self._children[key] = key[0].labels(*key[1])
                    child.inc(total - added)
                    self._added[key] = total

    def collect(self) -> Iterator[Metric]:
        """Registered before the counters, so the registry runs it first: a flush, no metric of its own."""
        self.flush()
        return iter(())

    def describe(self) -> list[Metric]:
        return []


class TransformMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = service_registry(registry)
        r = self.registry
        self.tally = Tally()
        r.register(self.tally)  # first: a collection flushes the counts before it reads the counters
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
        self.label_regressions = Counter("kmsync_transform_label_regressions_dropped",
                                         "Granular labels not written: lower in the label order than the member's",
                                         ["tenant"], registry=r)
        self.ledger_hits = Counter("kmsync_transform_activity_ledger_hits",
                                   "Activities not emitted again because the ledger holds them",
                                   ["tenant"], registry=r)
        self.dead_letters = Counter("kmsync_transform_dead_lettered", "Records sent to transform.dlq.v1",
                                    ["tenant", "reason"], registry=r)
        self.decisions = Counter("kmsync_transform_decisions", "Decisions sent to transform.decisions.v1: "
                                 "data dropped or changed on its way to Marketo", ["decision", "tenant"], registry=r)
        # Set after every poll from the last fetch response (kmsync_kafka.lag): log end minus position.
        self.consumer_lag = Gauge("kmsync_transform_consumer_lag_records",
                                  "Input records not read yet: the partition's log end (last stable offset for "
                                  "read_committed) minus transform's position, as of the last poll",
                                  ["topic", "partition"], registry=r)
        self._lag_children: dict[tuple[str, int], Gauge] = {}
        self._inc = self.tally.add

    def routed(self, topic: str, result: RouteResult) -> None:
        self._inc(self.records_in, (result.tenant, topic))
        if result.dead_letter is not None:
            self._inc(self.dead_letters, (result.tenant, result.dead_letter.reason_code))
        if result.decision is not None:
            self._inc(self.decisions, (result.decision.decision, result.tenant))

    def stepped(self, result: StepResult) -> None:
        tenant = result.tenant
        for op in result.ops:
            self._inc(self.ops_out, (tenant, op.kind))
        for dl in result.dead_letters:
            self._inc(self.dead_letters, (tenant, dl.reason_code))
        for d in result.decisions:
            self._inc(self.decisions, (d.decision, tenant))
        if result.regressions:
            self._inc(self.regressions, (tenant,), result.regressions)
        if result.repeats:
            self._inc(self.repeats, (tenant,), result.repeats)
        if result.ledger_hits:
            self._inc(self.ledger_hits, (tenant,), result.ledger_hits)
        if result.label_regressions:
            self._inc(self.label_regressions, (tenant,), result.label_regressions)

    def set_lag(self, topic: str, partition: int, records: int) -> None:
        """`topic` is the catalogue name (as in records_in), without the deployment's prefix."""
        child = self._lag_children.get((topic, partition))
        if child is None:
            child = self._lag_children[(topic, partition)] = self.consumer_lag.labels(topic, str(partition))
        child.set(records)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
