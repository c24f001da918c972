"""A complete, plausible report for the pure tests (schema, table)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kmsync_bench.report import BenchReport


def _dist(p50: float) -> dict[str, Any]:
    return {"count": 100, "p50": p50, "p95": p50 * 1.5, "p99": p50 * 1.6, "max": p50 * 2, "mean": p50}


def _phase(external: dict[str, Any] | None) -> dict[str, Any]:
    return {"ops": 50_000, "seconds": 80.0, "instance_limit_per_window": 100, "window_seconds": 20.0,
            "configured_per_window": 60.0, "sink_calls": 180, "sink_peak_per_window": 50,
            "sink_mean_per_window": 45.0, "peak_share_of_configured": 0.833, "mean_share_of_configured": 0.75,
            "peak_share_of_instance": 0.5, "instance_peak_per_window": 88 if external else 50, "sink_606": 0,
            "sink_615": 0, "external": external, "outcomes": {"created": 49_000, "updated": 1_000}}


def report_dict() -> dict[str, Any]:
    at = datetime(2026, 11, 27, 6, 0, tzinfo=UTC).isoformat()
    return {
        "schema_version": 2, "mode": "full", "started_at": at, "finished_at": at, "wall_seconds": 900.0,
        "phase_seconds": {"capacity": 150.0},
        "machine": {"cpu_count": 2, "cpu_model": "test cpu", "memory_gib": 23.5, "python": "3.11.7",
                    "kafka_version": "3.9.1", "platform": "Linux"},
        "code": {"commit": "9806132", "uncommitted_paths": []},
        "config": {"mode": "full"}, "sandbox_limits": {"111-AAA-111": {"rate_limit": 100}},
        "sink_settings": {"window_max_records": 3000},
        "efficiency": {
            "backlog_ops": 50_000,
            "kmsync": {"ops": 50_000, "write_calls": 175, "records_written": 50_400, "records_per_call": 288.0,
                       "ops_per_call": 285.7, "calls_by_endpoint": {"POST /rest/v1/leads.json": {"200": 40}},
                       "seconds": 80.0, "outcomes": {"created": 50_000}},
            "naive": {"ops": 50_000, "write_calls": 50_000, "other_calls": 17, "records_per_call": 1.0,
                      "seconds": 180.0, "failed_ops": 0,
                      "at_rate_limit": {"calls": 50_017, "seconds_at_rate_limit": 10_003.4,
                                        "share_of_daily_quota": 1.0}},
            "call_reduction": 285.8, "method": "both measured on the same backlog",
        },
        "budget": {"alone": _phase(None),
                   "shared": _phase({"target_share": 0.4, "calls": 160, "mean_per_window": 40.0,
                                     "throttled_606": 0, "throttled_615": 0})},
        "latency": {"requested_rows_per_second": 20.0, "rows_per_second": 6.0, "seconds": 60.0, "rows": 360,
                    "end_to_end": _dist(3.9), "by_kind": {"custom_activity": _dist(3.9)},
                    "calls_per_window_peak": 12, "path": "csv → ingest → transform → sink"},
        "capacity": {"rows": 2_000, "ops": 4_000, "completed": True, "seconds": 150.0, "events_per_second": 13.3, "steady_events_per_second": 15.0,
                     "ops_per_second": 26.7, "stage_seconds": {"ingest": 2.0, "transform": 148.0, "sink": 150.0},
                     "write_calls": 60, "peak_rss_mib": {"ingest": 70.0, "transform": 70.0, "sink": 69.0},
                     "cpu_per_10k_rows": {"ingest": 0.69, "transform": 1.95, "sink": 3.16, "broker": 1.52,
                                          "marketo-sandbox": 0.96},
                     "idle_cpu_per_second": {"ingest": 0.01, "transform": 0.02, "sink": 0.02, "broker": 0.05,
                                             "marketo-sandbox": 0.0},
                     "kmsync_cpu_per_10k_rows": 7.32,
                     "passthrough": {"records": 2_000, "seconds": 0.1, "records_per_second": 20_000.0,
                                     "client_cpu_per_10k": 0.38, "broker_cpu_per_10k": 0.27,
                                     "total_cpu_per_10k": 0.65},
                     "cpu_multiple_of_passthrough": 11.26},
        "backfill": {"rows": 1_000_000, "sessions": 20, "attendees": 50_000, "completed": True,
                     "seconds": 600.0, "load_seconds": 300.0, "rows_per_second": 1_666.7,
                     "outcomes": {"created": 1_000_000},
                     "calls_by_endpoint": {"POST /rest/v1/leads.json": {"200": 167},
                                           "POST /bulk/v1/customobjects/{apiName}/import.json": {"200": 40}},
                     "bulk_submit_calls": 40, "bulk_other_calls": 120, "rest_write_calls": 167, "calls_total": 330,
                     "rest_equivalent": {"lead_lookups": 167, "custom_objects": 3_334, "total": 3_501,
                                         "custom_activities_if_enabled": 3_334, "seconds_at_rate_limit": 700.2},
                     "call_reduction": 10.6, "peak_calls_per_window": 40, "throttled_606": 0, "throttled_615": 0,
                     "note": "20 session CSVs"},
        "notes": [],
    }


@pytest.fixture
def report_data() -> dict[str, Any]:
    return report_dict()


@pytest.fixture
def sample_report() -> BenchReport:
    return BenchReport.model_validate(report_dict())
