"""Per-instance settings from the tenants file reach the instance's worker, window and limiter; the
sink's bulk window settings are validated against each other (no broker needed)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kmsync_config import ConfigError, parse_tenants
from kmsync_config.settings import load_settings
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import MarketoSettings
from kmsync_sink.service import MarketoSink
from kmsync_sink.settings import SinkSettings
from kmsync_sink.worker import InstanceWorker
from kmsync_sink.writer import MarketoWriter

A, B, C = "111-AAA-111", "222-BBB-222", "333-CCC-333"


def test_bulk_window_must_fit_the_partition_buffer() -> None:
    with pytest.raises(ValidationError, match=r"bulk_window_max_records \(60000\) must be ≤ "
                       r"sink_max_buffered_per_partition \(50000\)"):
        SinkSettings(bulk_window_max_records=60_000)
    assert SinkSettings(bulk_window_max_records=60_000, sink_max_buffered_per_partition=60_000)
    defaults = SinkSettings()
    assert defaults.bulk_window_max_records <= defaults.sink_max_buffered_per_partition


def test_bulk_window_is_never_smaller_than_the_normal_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMSYNC_WINDOW_MAX_RECORDS", "5000")
    monkeypatch.setenv("KMSYNC_BULK_WINDOW_MAX_RECORDS", "4000")
    with pytest.raises(ConfigError) as err:
        load_settings(SinkSettings)
    [problem] = err.value.problems
    assert "bulk_window_max_records (4000) must be ≥ window_max_records (5000)" in problem
    monkeypatch.setenv("KMSYNC_BULK_WINDOW_MAX_RECORDS", "5000")
    monkeypatch.setenv("KMSYNC_BULK_WINDOW_MAX_BYTES", "1000000")
    with pytest.raises(ConfigError, match=r"bulk_window_max_bytes \(1000000\) must be ≥ window_max_bytes"):
        load_settings(SinkSettings)


def test_the_bulk_pipeline_fits_marketos_import_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMSYNC_BULK_PIPELINE_MAX_JOBS", "11")
    with pytest.raises(ConfigError) as err:
        load_settings(SinkSettings)
    [problem] = err.value.problems
    assert "bulk_pipeline_max_jobs (11) must be ≤ 10" in problem and "§9.1" in problem
    monkeypatch.setenv("KMSYNC_BULK_PIPELINE_MAX_JOBS", "-1")
    with pytest.raises(ConfigError, match="bulk_pipeline_max_jobs"):
        load_settings(SinkSettings)
    monkeypatch.setenv("KMSYNC_BULK_PIPELINE_MAX_JOBS", "0")  # off: a window waits for its jobs
    assert load_settings(SinkSettings).bulk_pipeline_max_jobs == 0
    monkeypatch.delenv("KMSYNC_BULK_PIPELINE_MAX_JOBS")
    assert load_settings(SinkSettings).bulk_pipeline_max_jobs == 4


def tenants(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TEST_SINK_SECRET", "s3cr3t")

    def inst(munchkin: str, **fields: Any) -> dict[str, Any]:
        return {"munchkin_id": munchkin, "endpoint": "http://127.0.0.1:9", "client_id": "cid",
                "client_secret": {"env": "TEST_SINK_SECRET"}, "share": 0.5, **fields}

    return parse_tenants({"marketo_instances": {
        "lifted": inst(A, rate_limit_calls=1000, bulk_min_records=7),
        "default": inst(B),
        "never": inst(C, bulk_min_records=0),
    }, "events": []})


async def test_each_worker_gets_its_instance_rate_limit_and_bulk_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    limiters, tokens = LimiterRegistry(), TokenRegistry()

    def writer(settings: MarketoSettings) -> MarketoWriter:
        return MarketoClient(settings, limiters=limiters, token_registry=tokens)  # never called here

    settings = SinkSettings(bulk_min_records=500, window_max_records=3000, bulk_window_max_records=40_000)
    sink = MarketoSink(settings, tenants(monkeypatch), writer_factory=writer)
    workers: list[InstanceWorker] = []
    try:
        for m in (A, B, C):
            w = sink._worker_for(m)
            assert isinstance(w, InstanceWorker)
            workers.append(w)
        lifted, default = workers[:2]
        # The limiter each worker writes through: share × the instance's rate, less the headroom.
        assert lifted.writer.limiter.stats().window_limit == 500 - 10
        assert default.writer.limiter.stats().window_limit == 50 - 10, "docs/reference/marketo-api.md §2.1: 100 per 20 s"
        assert [w.bulk_min_records for w in workers] == [7, 500, 0]
        # Windows close on count at and take up to the bulk caps only where bulk is on.
        assert [w.window.limits.caps()[0] for w in workers] == [40_000, 40_000, 3000]
        # Bulk custom object jobs are pipelined (default 4 outstanding) only where bulk is on.
        assert [w.pipeline.max_jobs if w.pipeline else None for w in workers] == [4, 4, None]
        assert workers[0].executor.pipeline is workers[0].pipeline
    finally:
        for w in workers:
            await w.stop(0.1)
        for wr in sink._writers:
            await wr.aclose()
