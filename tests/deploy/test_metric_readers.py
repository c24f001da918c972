"""Programs that read kmsync's /metrics (the `kmsync run` progress line, the benchmarks, the end-to-end
test's PromQL) name series the services really expose: a reader of a name nobody exposes shows 0
forever, as the progress line's "606/615" column did while the sink exported a gauge (issue #20)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest

from kmsync_cli.demo import progress_line
from kmsync_cli.stack import Stack
from kmsync_common.clock import FakeClock
from kmsync_ingest.metrics import IngestMetrics
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_sink.metrics import SinkMetrics
from kmsync_transform.metrics import TransformMetrics

READERS = ("apps/kmsync_cli", "apps/kmsync_bench", "tests/e2e")
SERIES_NAME = re.compile(r"\bkmsync_(?:ingest|transform|sink)_[a-z0-9_]*[a-z0-9]\b")


def metric_names_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("metric_names", Path(__file__).with_name("test_metric_names.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_series_a_reader_names_is_exposed(repo: Path) -> None:
    names = metric_names_module()
    exposed = set(names.code_metrics(repo))
    families = {name for path in sorted(repo.glob("services/*/metrics.py"))
                for _, name, _ in names.defined_in(path)}  # text_string_to_metric_families' names
    read: dict[str, set[str]] = {}
    for directory in READERS:
        for path in sorted((repo / directory).glob("*.py")):
            for name in SERIES_NAME.findall(path.read_text()):
                read.setdefault(name, set()).add(str(path.relative_to(repo)))
    assert "kmsync_sink_throttle_answers_total" in read, "the progress line reads the 606/615 counter"
    unknown = {name: sorted(paths) for name, paths in read.items() if name not in exposed | families}
    assert unknown == {}


class _Stack:
    """What progress_line reads from a running stack: each service's /metrics, Kaltura's clock."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts

    def metrics(self, name: str) -> str:
        return self.texts[name]

    def kaltura_status(self) -> dict[str, Any]:
        return {"now": "2025-06-01T10:00:00+00:00", "finished": False}


def test_the_progress_line_counts_the_sinks_throttle_answers() -> None:
    sink = SinkMetrics(CollectorRegistry())
    limiter = InstanceLimiter("123-ABC-456", clock=FakeClock())
    for code in ("606", "606", "615"):
        limiter.on_throttle(code)
    sink.observe_limiter("123-ABC-456", limiter)
    sink.observe_call("123-ABC-456", "leads.json", 300, "ok")
    sink.dlq.labels("123-ABC-456", "1003").inc(2)
    texts = {"ingest": generate_latest(IngestMetrics(CollectorRegistry()).registry).decode(),
             "transform": generate_latest(TransformMetrics(CollectorRegistry()).registry).decode(),
             "sink": generate_latest(sink.registry).decode()}
    line = progress_line(cast(Stack, _Stack(texts)))
    assert "| 606/615 3 |" in line, line
    assert "Marketo calls     1 (300.0 records/write call)" in line and "dead letters 2" in line, line
