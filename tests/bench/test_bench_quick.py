"""`kmsync bench --quick` end to end: its own Kafka broker, the sandbox and the three services as
processes; the report must hold every section with plausible numbers, and the table must print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmsync_bench.config import EFFICIENCY_INSTANCE, INSTANCE_RATE_LIMIT, NAIVE_INSTANCE
from kmsync_bench.report import load_report

# Starts a real broker (like the session fixture does), so it is deselected by `make unit` with the others.
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(360)]


def test_quick_bench_measures_every_section(tmp_path: Path) -> None:
    out = tmp_path / "results" / "quick.json"
    kmsync = Path(sys.executable).parent / "kmsync"
    proc = subprocess.run([str(kmsync), "bench", "--quick", "--out", str(out), "--work-dir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=330, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = load_report(out)  # validates the schema
    assert report.mode == "quick" and report.machine.cpu_count == os.cpu_count()
    assert report.config["backlog_ops"] == report.efficiency.backlog_ops

    # 1. kmsync fills calls; the naive writer sends exactly one record per call.
    eff = report.efficiency
    assert eff.naive.records_per_call == 1.0 and eff.naive.failed_ops == 0
    assert eff.kmsync.records_per_call > 100 > eff.naive.records_per_call
    assert eff.kmsync.outcomes.get("failed", 0) == 0
    assert eff.call_reduction > 50
    assert eff.naive.ops == eff.backlog_ops and eff.naive.at_rate_limit.calls >= eff.backlog_ops
    assert report.sandbox_limits[EFFICIENCY_INSTANCE]["rate_limit"] == INSTANCE_RATE_LIMIT
    assert report.sandbox_limits[NAIVE_INSTANCE]["rate_limit"] > INSTANCE_RATE_LIMIT

    # 2. The budget: never above kmsync's configured share, no throttling, the external client counted.
    for phase in (report.budget.alone, report.budget.shared):
        assert 0 < phase.sink_peak_per_window <= phase.configured_per_window
        assert phase.sink_606 == 0 and phase.sink_615 == 0
    shared = report.budget.shared
    assert shared.external is not None and shared.external.calls > 0
    assert shared.instance_peak_per_window > shared.sink_peak_per_window

    # 3. Latency: ordered percentiles, seconds not minutes.
    lat = report.latency.end_to_end
    assert lat.count == 2 * report.latency.rows
    assert 0 < lat.p50 <= lat.p95 <= lat.p99 <= lat.max < 60
    # ... for registered attendees (their lead ids known: no lead call in the stream) and for walk-ins.
    walk_in = report.latency.walk_in
    assert walk_in is not None and report.latency.walk_in_seconds is not None
    assert walk_in.count == 2 * report.latency.rows_per_second * report.latency.walk_in_seconds

    # 4. Capacity with each service's peak RSS, the sink's limiter lifted too (no 90-per-20 s ceiling).
    cap = report.capacity
    assert cap.completed and cap.events_per_second > 0
    assert {"ingest", "transform", "sink"} <= set(cap.peak_rss_mib)
    assert all(10 < mib < 4_000 for mib in cap.peak_rss_mib.values())
    assert cap.stage_seconds["ingest"] <= cap.stage_seconds["transform"] <= cap.stage_seconds["sink"]
    # ... and its CPU per 10,000 rows per process, against a bare passthrough of the same records.
    assert cap.cpu_per_10k_rows is not None and cap.passthrough is not None
    assert {"ingest", "transform", "sink", "broker", "marketo-sandbox"} <= set(cap.cpu_per_10k_rows)
    assert all(v > 0 for v in cap.cpu_per_10k_rows.values())
    assert cap.idle_cpu_per_second is not None and set(cap.cpu_per_10k_rows) == set(cap.idle_cpu_per_second)
    assert all(0 <= v <= (os.cpu_count() or 1) for v in cap.idle_cpu_per_second.values())  # CPU s per s
    assert cap.kmsync_cpu_per_10k_rows is not None and cap.kmsync_cpu_per_10k_rows > 0
    pt = cap.passthrough
    assert pt.records == cap.rows and pt.client_cpu_per_10k > 0 and pt.broker_cpu_per_10k > 0
    assert cap.cpu_multiple_of_passthrough is not None and cap.cpu_multiple_of_passthrough > 0
    assert cap.cpu_multiple_of_passthrough == pytest.approx(
        cap.kmsync_cpu_per_10k_rows / pt.total_cpu_per_10k, rel=0.01)

    # 5. Backfill: every row reached Marketo through bulk imports, fewer calls than REST, within the limits.
    bf = report.backfill
    assert bf.completed and sum(bf.outcomes.values()) == bf.rows and bf.outcomes.get("failed", 0) == 0
    assert bf.bulk_submit_calls >= 1 and bf.calls_total < bf.rest_equivalent.total
    assert bf.throttled_606 == 0 and bf.peak_calls_per_window <= INSTANCE_RATE_LIMIT
    assert bf.peak_rss_mib is not None and {"ingest", "transform", "sink"} <= set(bf.peak_rss_mib)
    # 5. Live during backfill: a live trickle on the backfill's instance, alone and during; the backfill in its cap.
    assert bf.live_alone is not None and bf.live_during is not None and bf.live_during.count == bf.live_alone.count
    assert bf.live_during_upstream is not None and bf.answer_seconds_during is not None
    assert bf.backfill_cap_per_window == 27 and bf.backfill_peak_calls_per_window is not None
    assert 1 <= bf.backfill_peak_calls_per_window <= bf.backfill_cap_per_window

    # The charts beside the report (kmsync_bench.charts), from the calls series every phase recorded.
    for phase in (report.budget.alone, report.budget.shared, report.latency, report.backfill):
        assert phase.calls_series is not None and len(phase.calls_series.sink) >= 2
    for chart in (out.with_suffix(".latency.png"), out.with_suffix(".calls.png")):
        assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and f"chart: {chart}" in proc.stdout

    assert "4 capacity CPU" in proc.stdout and "a bare passthrough" in proc.stdout
    assert "1 API efficiency" in proc.stdout and "5 backfill" in proc.stdout and str(out) in proc.stdout
    assert "5 live during backfill" in proc.stdout
