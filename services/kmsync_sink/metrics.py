"""The sink's Prometheus series, on the sink's own registry (several sinks may share a test process).

Labels never carry emails or secrets; ``munchkin_id`` is the Marketo instance's Munchkin id. No label
is named like one Prometheus attaches to the scrape target (``instance``, ``job``; Prometheus
Operator's ``endpoint``, ``service``, ``pod``, ...): those would arrive renamed ``exported_*``
(tests/deploy/test_metric_conventions.py). Running totals are Counters, exposed as ``<name>_total``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from kmsync_common.health import service_registry
from kmsync_marketo.lanes import current_lane
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_marketo.transport import CallStats
from kmsync_sink.held_leads import call_stats

_RECORD_BUCKETS = (1, 10, 50, 100, 200, 250, 290, 300, 1000, 10_000, 100_000)
_WINDOW_BUCKETS = (1, 10, 100, 300, 600, 1000, 3000, 10_000, 30_000)
_LATENCY_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 86_400)

#: A counter's labelled series: the counter and its label values.
_Series = tuple[Counter, tuple[str, ...]]


class _BeforeCollect:
    """Registered first, so the registry runs it before it collects the counters (a scrape, generate_latest,
    get_sample_value): ``update`` brings them up to date. It exposes no metric of its own."""

    def __init__(self, update: Callable[[], None]) -> None:
        self._update = update

    def collect(self) -> Iterator[Metric]:
        self._update()
        return iter(())

    def describe(self) -> list[Metric]:
        return []


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = service_registry(registry)
        r = self.registry
        r.register(_BeforeCollect(self._observe_clients))
        # lane: live or backfill (kmsync_marketo.lanes; two values): a backfill's calls apart from live's.
        self.calls = Counter("kmsync_sink_marketo_calls", "Marketo write calls by endpoint, result code and lane",
                             ["munchkin_id", "marketo_endpoint", "code", "lane"], registry=r)
        self.records_per_call = Histogram("kmsync_sink_records_per_call", "Records carried by one write call",
                                          ["munchkin_id", "marketo_endpoint"], buckets=_RECORD_BUCKETS, registry=r)
        self.window_records = Histogram("kmsync_sink_window_records", "Operations in a closed window",
                                        ["munchkin_id", "reason"], buckets=_WINDOW_BUCKETS, registry=r)
        self.window_bytes = Histogram("kmsync_sink_window_bytes", "Encoded bytes in a closed window",
                                      ["munchkin_id"], buckets=(1e3, 1e4, 1e5, 1e6, 4e6, 8e6, 1.6e7), registry=r)
        self.latency = Histogram("kmsync_sink_end_to_end_latency_seconds",
                                 "Kaltura source time to the sink's decision (live lane only)", ["munchkin_id", "kind"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.outcomes = Counter("kmsync_sink_outcomes", "Final outcomes by kind and status",
                                ["munchkin_id", "kind", "status"], registry=r)
        self.dlq = Counter("kmsync_sink_dead_letters", "Operations dead-lettered, by reason code",
                           ["munchkin_id", "reason_code"], registry=r)
        self.retries = Counter("kmsync_sink_record_retries", "Failed records scheduled for another try",
                               ["munchkin_id"], registry=r)
        self._limiter_metrics(r)
        self._client_metrics(r)
        self.bulk_in_flight = Gauge("kmsync_sink_bulk_jobs_in_flight", "Bulk import requests running",
                                    ["munchkin_id"], registry=r)
        self.buffered = Gauge("kmsync_sink_buffered_operations",
                              "Operations of the instance waiting in its windows (or held back behind a bulk job), "
                              "not yet sent", ["munchkin_id"], registry=r)
        self.undecided = Gauge("kmsync_sink_undecided_records",
                               "Records read from the operations topics without an outcome yet (waiting, in a call "
                               "or held for verification); committed offsets wait for them", registry=r)
        self.verifications = Counter(
            "kmsync_sink_activity_verifications",
            "Custom activities looked up in the lead's activity log after an uncertain write, by result "
            "(found, absent, error, deferred)", ["munchkin_id", "result"], registry=r)
        self.awaiting_verification = Gauge(
            "kmsync_sink_activities_awaiting_verification",
            "Custom activities that may be in Marketo after an ambiguous answer, held until the lead's "
            "activity log is read (KMSYNC_SINK_ACTIVITY_VERIFY_DELAY_SECONDS after the write)",
            ["munchkin_id"], registry=r)
        # Set after every poll from the last fetch response (kmsync_kafka.lag): log end minus position.
        self.consumer_lag = Gauge("kmsync_sink_consumer_lag_records",
                                  "Operations on marketo.ops.v1 and marketo.ops.backfill.v1 (added per partition "
                                  "number) this sink has not read yet", ["partition"],
                                  registry=r)
        #: The limiter last observed per Munchkin id, and the running totals it had then.
        self._limiters: dict[str, InstanceLimiter] = {}
        self._totals: dict[_Series, float] = {}
        #: The Marketo client's call totals per Munchkin id (watch_client), and the part of them added so far.
        self._clients: dict[str, tuple[CallStats, dict[_Series, float]]] = {}

    def _limiter_metrics(self, r: CollectorRegistry) -> None:
        """The instance limiter's budget, waits and 606/615 handling (fed by observe_limiter)."""
        # Running totals of the limiter (LimiterStats), fed by increments in observe_limiter.
        self.limiter_waits = Counter("kmsync_sink_limiter_waits", "Calls the instance limiter made wait",
                                     ["munchkin_id"], registry=r)
        self.limiter_wait_seconds = Counter("kmsync_sink_limiter_wait_seconds",
                                            "Seconds calls spent waiting in the instance limiter", ["munchkin_id"],
                                            registry=r)
        self.limiter_rate_decreases = Counter(
            "kmsync_sink_limiter_rate_decreases",
            "606/615 answers that made the instance limiter lower its call rate", ["munchkin_id"], registry=r)
        self.limiter_throttles_tolerated = Counter(
            "kmsync_sink_limiter_throttles_tolerated",
            "606/615 answers within the limiter's tolerance: retried without lowering the rate", ["munchkin_id"],
            registry=r)
        self.budget_used = Gauge("kmsync_sink_budget_used", "Calls used of the instance budget",
                                 ["munchkin_id", "budget"], registry=r)
        self.budget_limit = Gauge("kmsync_sink_budget_limit", "The instance budget this sink may use",
                                  ["munchkin_id", "budget"], registry=r)
        self.throttles = Counter("kmsync_sink_throttle_answers", "606/615 answers from Marketo to this process",
                                 ["munchkin_id", "code"], registry=r)
        self.parked = Gauge("kmsync_sink_instance_parked", "1 while the instance waits for the daily reset (607)",
                            ["munchkin_id"], registry=r)

    def _client_metrics(self, r: CollectorRegistry) -> None:
        """The Marketo client's retries (its transport's CallStats), read when the registry is collected."""
        self.marketo_retries = Counter(
            "kmsync_sink_marketo_retries",
            "Marketo requests the client sent again, by reason: backoff (a transient error), in_process (a lead "
            "write replayed only KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS after its send), throttle (606/615)",
            ["munchkin_id", "reason"], registry=r)
        self.marketo_in_process_holds = Counter(
            "kmsync_sink_marketo_in_process_holds",
            "Lead writes out of retries whose failure was returned only "
            "KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS after their last send", ["munchkin_id"], registry=r)
        self.marketo_replay_delay_seconds = Counter(
            "kmsync_sink_marketo_replay_delay_seconds",
            "Seconds Marketo calls were held beyond the ordinary backoff because a lead write may still have been "
            "in process", ["munchkin_id"], registry=r)
        self.marketo_reauths = Counter("kmsync_sink_marketo_reauths",
                                       "Requests sent again with a new token after Marketo called theirs invalid "
                                       "(601/602)", ["munchkin_id"], registry=r)

    def watch_client(self, munchkin_id: str, writer: object) -> None:
        """Export the call totals of the instance's Marketo client (``MarketoClient.transport.stats``; a writer
        without them exports nothing). Read at each collection, so a lane held by retries shows while it is held,
        and a call pays nothing for it. A client this process has not seen for the instance counts from 0."""
        stats = call_stats(writer)
        if stats is not None and self._clients.get(munchkin_id, (None,))[0] is not stats:
            if munchkin_id in self._clients:  # what the replaced client counted since the last collection
                self._observe_client(munchkin_id, *self._clients[munchkin_id])
            self._clients[munchkin_id] = (stats, {})

    def _observe_clients(self) -> None:
        for munchkin_id, (st, added) in list(self._clients.items()):
            self._observe_client(munchkin_id, st, added)

    def _observe_client(self, munchkin_id: str, st: CallStats, added: dict[_Series, float]) -> None:
        for reason, n in st.resends().items():
            self._advance(self.marketo_retries, (munchkin_id, reason), n, added)
        self._advance(self.marketo_in_process_holds, (munchkin_id,), st.retry_reasons.get("in_process_hold", 0), added)
        self._advance(self.marketo_replay_delay_seconds, (munchkin_id,), st.replay_delay_seconds, added)
        self._advance(self.marketo_reauths, (munchkin_id,), st.reauths, added)

    def observe_call(self, munchkin_id: str, endpoint: str, records: int, code: str) -> None:
        self.calls.labels(munchkin_id, endpoint, code, current_lane()).inc()  # the calling task's lane
        self.records_per_call.labels(munchkin_id, endpoint).observe(records)

    def observe_limiter(self, munchkin_id: str, limiter: InstanceLimiter) -> None:
        st = limiter.stats()
        if self._limiters.get(munchkin_id) is not limiter:
            # A limiter this process has not seen for the instance counts from 0.
            self._limiters[munchkin_id] = limiter
            self._totals = {key: v for key, v in self._totals.items() if key[1][0] != munchkin_id}
        self._advance(self.limiter_waits, (munchkin_id,), st.waits)
        self._advance(self.limiter_wait_seconds, (munchkin_id,), st.wait_seconds)
        self._advance(self.limiter_rate_decreases, (munchkin_id,), st.rate_decreases)
        self._advance(self.limiter_throttles_tolerated, (munchkin_id,), st.throttles_tolerated)
        for code, n in st.throttles.items():
            self._advance(self.throttles, (munchkin_id, code), n)
        self.budget_used.labels(munchkin_id, "daily").set(st.daily_used)
        self.budget_limit.labels(munchkin_id, "daily").set(st.daily_budget)
        self.budget_used.labels(munchkin_id, "rolling_window").set(st.window_used)
        self.budget_limit.labels(munchkin_id, "rolling_window").set(st.window_limit)
        self.parked.labels(munchkin_id).set(1 if st.parked_until is not None else 0)

    def _advance(self, counter: Counter, labels: tuple[str, ...], total: float,
                 added: dict[_Series, float] | None = None) -> None:
        """Add to ``counter`` what its source (the limiter; a client, ``added`` its totals so far) counted since
        the last call (its counts never go down)."""
        added = self._totals if added is None else added
        key = (counter, labels)
        delta = total - added.get(key, 0)
        added[key] = total
        child = counter.labels(*labels)  # the series exists (at 0) from the first observation
        if delta > 0:
            child.inc(delta)


def observe_many(child: Histogram, values: Sequence[float]) -> None:
    """Each of ``values`` observed in a labelled histogram child, with one increment per bucket and one of
    the sum instead of two per value (``observe`` per outcome was 3 % of the sink's CPU, issue #22). A
    value goes to the first bucket whose bound it does not exceed, as ``observe`` puts it; a
    prometheus_client without these internals gets ``observe`` per value."""
    bounds: Sequence[float] | None = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        for value in values:
            child.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
    total.inc(sum(values))
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
