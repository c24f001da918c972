"""Every metric family each kmsync service registers follows Prometheus' conventions (issue #20):

- no label is named like a label Prometheus attaches to the scrape target (`instance`, `job`, the
  labels Prometheus Operator's ServiceMonitor/PodMonitor and the shipped scrape configs add, `__*`):
  such a label is renamed `exported_<name>` on scrape, or overrides the target's with honor_labels;
- a running total is a Counter, exposed as `<name>_total`; a Gauge is never named or described like
  one (a gauge fed a running total breaks rate()/increase() and readers looking for `_total`).

The families are read from each service's metrics object built on a fresh CollectorRegistry (what
the service really registers), and, for any module these objects do not cover, from the source.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from kmsync_common.clock import FakeClock
from kmsync_ingest.metrics import IngestMetrics
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_sink.metrics import SinkMetrics
from kmsync_transform.metrics import TransformMetrics

#: Labels Prometheus gives every target: `instance` and `job` always; Prometheus Operator's
#: ServiceMonitor/PodMonitor add `namespace`, `service`, `pod`, `container` and `endpoint` (the port).
TARGET_LABELS = {"instance", "job", "namespace", "service", "pod", "container", "endpoint"}
#: Suffixes prometheus_client adds to counters, histograms and summaries; a gauge never ends in one.
SERIES_SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created", "_info")
#: Quantities known to only grow while a process runs (a limiter's statistics, answers received):
#: they are Counters wherever they are exported.
KNOWN_CUMULATIVE = {
    "kmsync_sink_throttle_answers",
    "kmsync_sink_limiter_waits",
    "kmsync_sink_limiter_wait_seconds",
    "kmsync_sink_limiter_rate_decreases",
    "kmsync_sink_limiter_throttles_tolerated",
}
#: Help text that describes a running total ("Times ...", "... since start", "... gave this process").
CUMULATIVE_HELP = re.compile(r"^times\b|\b(since|so far|running total|cumulative|in total|gave|waited)\b",
                             re.IGNORECASE)

SERVICES: dict[str, Callable[[CollectorRegistry], Any]] = {
    "ingest": IngestMetrics,
    "transform": TransformMetrics,
    "sink": SinkMetrics,
}


def families(metrics: object) -> list[MetricWrapperBase]:
    """The prometheus_client metrics a service's metrics object holds."""
    return [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]


def label_names(metric: MetricWrapperBase) -> tuple[str, ...]:
    # prometheus_client keeps a family's label names only here (collect() shows them on samples only).
    names = metric._labelnames
    assert isinstance(names, tuple)
    return names


def family_name(metric: MetricWrapperBase) -> str:
    [family] = list(metric.describe())
    return str(family.name)


def problems(kind: str, name: str, help_text: str, labels: tuple[str, ...]) -> list[str]:
    """What is wrong with one metric family (empty: nothing)."""
    found = [f"{name}: label {label!r} is a Prometheus target label" for label in labels
             if label in TARGET_LABELS or label.startswith("__")]
    if kind == "gauge":
        if name.endswith(SERIES_SUFFIXES):
            found.append(f"{name}: a gauge named like a counter/histogram series")
        if name in KNOWN_CUMULATIVE:
            found.append(f"{name}: a running total exported as a gauge")
        if CUMULATIVE_HELP.search(help_text):
            found.append(f"{name}: a gauge described as a running total ({help_text!r})")
    return found


@pytest.fixture(params=sorted(SERVICES))
def service_metrics(request: pytest.FixtureRequest) -> tuple[str, CollectorRegistry, list[MetricWrapperBase]]:
    registry = CollectorRegistry()
    metrics = SERVICES[request.param](registry)
    return request.param, registry, families(metrics)


def test_the_checks_catch_target_labels_and_cumulative_gauges() -> None:
    """The rules themselves: the old sink's series would have failed them."""
    assert problems("counter", "kmsync_sink_marketo_calls", "Marketo write calls", ("instance", "code"))
    assert problems("counter", "x", "d", ("job",)) and problems("counter", "x", "d", ("__meta",))
    assert problems("counter", "x", "d", ("endpoint",))
    assert problems("gauge", "kmsync_sink_throttle_answers", "606/615 answers Marketo gave this process", ())
    assert problems("gauge", "kmsync_sink_limiter_waits", "Times the instance limiter made a call wait", ())
    assert problems("gauge", "kmsync_sink_limiter_wait_seconds", "Seconds calls waited in the limiter", ())
    assert problems("gauge", "kmsync_x_requests_total", "Requests", ())
    assert problems("gauge", "kmsync_x_failures", "Failures since the process started", ())
    assert problems("gauge", "kmsync_sink_budget_used", "Calls used of the instance budget",
                    ("munchkin_id", "budget")) == []
    assert problems("counter", "kmsync_sink_throttle_answers", "606/615 answers Marketo gave this process",
                    ("munchkin_id", "code")) == []


def test_no_family_has_a_target_label_or_a_cumulative_gauge(
    service_metrics: tuple[str, CollectorRegistry, list[MetricWrapperBase]],
) -> None:
    service, registry, metrics = service_metrics
    assert metrics, f"{service}: no metrics found"
    # The metrics object holds every family the registry exposes (none made elsewhere and missed here).
    registered = {str(f.name) for f in registry.collect()}
    assert {family_name(m) for m in metrics} == registered
    found = []
    for metric in metrics:
        [family] = list(metric.describe())
        found += problems(family.type, family.name, family.documentation, label_names(metric))
    assert found == [], f"{service}: {found}"


def test_every_counter_is_exposed_with_total(
    service_metrics: tuple[str, CollectorRegistry, list[MetricWrapperBase]],
) -> None:
    service, registry, metrics = service_metrics
    counters = [m for m in metrics if isinstance(m, Counter)]
    assert counters, f"{service}: no counters"
    for counter in counters:
        names = label_names(counter)
        (counter.labels(*["x"] * len(names)) if names else counter).inc()
    text = generate_latest(registry).decode()
    for counter in counters:
        name = family_name(counter)
        assert re.search(rf"^# TYPE {re.escape(name)}(_total)? counter$", text, re.MULTILINE), name
        samples = [str(s.name) for family in counter.collect() for s in family.samples]
        assert all(re.search(rf"^{re.escape(s)}[{{ ]", text, re.MULTILINE) for s in samples), samples
        assert f"{name}_total" in samples, f"{service}: {name} is not exposed as {name}_total"
        assert set(samples) <= {f"{name}_total", f"{name}_created"}, samples


def test_known_running_totals_are_counters_in_the_sink() -> None:
    registry = CollectorRegistry()
    metrics = {family_name(m): m for m in families(SinkMetrics(registry))}
    assert KNOWN_CUMULATIVE <= set(metrics), sorted(KNOWN_CUMULATIVE - set(metrics))
    assert [name for name in sorted(KNOWN_CUMULATIVE) if not isinstance(metrics[name], Counter)] == []


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_the_sink_feeds_the_limiter_totals_to_counters_by_increments() -> None:
    """observe_limiter runs after every window: a counter must grow by what the limiter counted
    since the last call, never by the whole total again (and start over for a new limiter)."""
    registry = CollectorRegistry()
    metrics = SinkMetrics(registry)
    clock = FakeClock()
    limiter = InstanceLimiter("123-ABC-456", clock=clock)
    metrics.observe_limiter("123-ABC-456", limiter)
    assert sample(registry, "kmsync_sink_limiter_waits_total", munchkin_id="123-ABC-456") == 0
    assert sample(registry, "kmsync_sink_throttle_answers_total", munchkin_id="123-ABC-456", code="606") is None
    limiter.on_throttle("606")
    limiter.on_throttle("606")
    metrics.observe_limiter("123-ABC-456", limiter)
    metrics.observe_limiter("123-ABC-456", limiter)  # nothing new: nothing added
    assert sample(registry, "kmsync_sink_throttle_answers_total", munchkin_id="123-ABC-456", code="606") == 2
    st = limiter.stats()
    assert st.rate_decreases + st.throttles_tolerated >= 1
    assert sample(registry, "kmsync_sink_limiter_rate_decreases_total",
                  munchkin_id="123-ABC-456") == st.rate_decreases
    assert sample(registry, "kmsync_sink_limiter_throttles_tolerated_total",
                  munchkin_id="123-ABC-456") == st.throttles_tolerated
    limiter.on_throttle("615")
    metrics.observe_limiter("123-ABC-456", limiter)
    assert sample(registry, "kmsync_sink_throttle_answers_total", munchkin_id="123-ABC-456", code="606") == 2
    assert sample(registry, "kmsync_sink_throttle_answers_total", munchkin_id="123-ABC-456", code="615") == 1
    # A new limiter for the same instance counts from 0: its counts add to the series.
    fresh = InstanceLimiter("123-ABC-456", clock=clock)
    fresh.on_throttle("606")
    metrics.observe_limiter("123-ABC-456", fresh)
    assert sample(registry, "kmsync_sink_throttle_answers_total", munchkin_id="123-ABC-456", code="606") == 3
    text = generate_latest(registry).decode()
    assert 'kmsync_sink_throttle_answers_total{code="606",munchkin_id="123-ABC-456"} 3.0' in text


def test_source_defined_metrics_have_no_target_labels(repo: Path) -> None:
    """Metrics defined anywhere under services/ and libs/ (engines, helpers the objects above do not
    hold), read from the source."""
    spec = importlib.util.spec_from_file_location("metric_names", Path(__file__).with_name("test_metric_names.py"))
    assert spec is not None and spec.loader is not None
    names = importlib.util.module_from_spec(spec)  # its source reader, shared with the alert checks
    spec.loader.exec_module(names)
    found = []
    for path in sorted([*repo.glob("services/**/*.py"), *repo.glob("libs/**/*.py")]):
        if "prometheus_client" not in path.read_text():
            continue
        for kind, name, labels in names.defined_in(path):
            found += [f"{path.relative_to(repo)}: {p}" for p in problems(kind.lower(), name, "", tuple(labels))]
    assert found == []


def test_compose_scrape_jobs_do_not_honor_target_labels(repo: Path) -> None:
    """No metric needs honor_labels any more; with it a target could overwrite `job`/`instance`."""
    config = yaml.safe_load((repo / "deploy/prometheus/prometheus.yml").read_text())
    honoring = [job["job_name"] for job in config["scrape_configs"] if job.get("honor_labels")]
    assert honoring == []
