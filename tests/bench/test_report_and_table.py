"""The report's schema (pydantic, field-level errors) and the printed table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kmsync_bench.report import BenchReport, load_report, stamp, write_report
from kmsync_bench.table import render, rows


def test_report_round_trips_through_json(tmp_path: Path, sample_report: BenchReport) -> None:
    path = tmp_path / "r" / "report.json"
    write_report(sample_report, path)
    assert load_report(path) == sample_report


def test_missing_section_is_reported_by_field(report_data: dict[str, Any]) -> None:
    data = report_data
    del data["capacity"]["peak_rss_mib"]
    with pytest.raises(ValidationError) as err:
        BenchReport.model_validate(data)
    assert ("capacity", "peak_rss_mib") in [e["loc"] for e in err.value.errors()]


def test_implausible_numbers_are_refused(report_data: dict[str, Any]) -> None:
    data = report_data
    data["efficiency"]["kmsync"]["write_calls"] = 0
    data["machine"]["cpu_count"] = 0
    with pytest.raises(ValidationError) as err:
        BenchReport.model_validate(data)
    locs = [e["loc"] for e in err.value.errors()]
    assert ("efficiency", "kmsync", "write_calls") in locs and ("machine", "cpu_count") in locs


def test_unknown_keys_are_refused(report_data: dict[str, Any]) -> None:
    data = report_data
    data["latency"]["p50"] = 1.0
    with pytest.raises(ValidationError):
        BenchReport.model_validate(data)


def test_table_has_one_line_per_measurement_with_its_numbers(sample_report: BenchReport) -> None:
    table = rows(sample_report)
    labels = [r[0] for r in table]
    assert labels == ["1 API efficiency", "2 budget, alone", "2 budget, shared", "3 latency", "4 capacity",
                      "4 capacity CPU", "5 backfill"]
    cells = {r[0]: r[1] + " | " + r[2] for r in table}
    assert "288.0 records/call" in cells["1 API efficiency"] and "naive 1.0 records/call" in cells["1 API efficiency"]
    assert "peak 50/60" in cells["2 budget, alone"] and "606: 0" in cells["2 budget, alone"]
    assert "external 40%" in cells["2 budget, shared"]
    assert "p50 3.90 s" in cells["3 latency"] and "p99 6.24 s" in cells["3 latency"]
    assert "transform 70" in cells["4 capacity"]
    cpu = cells["4 capacity CPU"]
    assert "kmsync 7.32 CPU s per 10,000 rows, 11.3x a bare passthrough" in cpu
    assert "client 0.38, broker 0.27" in cpu and "sink 3.16" in cpu and "marketo-sandbox 0.96" in cpu
    assert "1,000,000 rows (20 sessions × 50,000)" in cells["5 backfill"]
    assert "330 calls (40 bulk imports)" in cells["5 backfill"] and "REST at 300/call: 3,501" in cells["5 backfill"]


def test_rendered_table_names_the_machine_and_aligns_columns(sample_report: BenchReport) -> None:
    text = render(sample_report)
    head, *lines = text.splitlines()
    assert "2 CPU" in head and "Kafka 3.9.1" in head and "Python 3.11.7" in head
    assert len(lines) == 7
    starts = {len(line) - len(line[18:].lstrip()) for line in lines}
    assert len(starts) == 1, "the second column starts at the same place on every line"


def test_a_report_from_before_the_cpu_figures_still_loads_without_the_cpu_line(
        report_data: dict[str, Any]) -> None:
    for key in ("cpu_per_10k_rows", "kmsync_cpu_per_10k_rows", "passthrough", "cpu_multiple_of_passthrough"):
        del report_data["capacity"][key]
    old = BenchReport.model_validate(report_data)
    assert "4 capacity CPU" not in [r[0] for r in rows(old)]


def test_a_passthrough_without_measurable_cpu_is_refused(report_data: dict[str, Any]) -> None:
    report_data["capacity"]["passthrough"]["broker_cpu_per_10k"] = 0.0
    with pytest.raises(ValidationError) as err:
        BenchReport.model_validate(report_data)
    assert ("capacity", "passthrough", "broker_cpu_per_10k") in [e["loc"] for e in err.value.errors()]


def test_an_incomplete_section_says_so(sample_report: BenchReport) -> None:
    broken = sample_report.model_copy(update={"capacity": sample_report.capacity.model_copy(
        update={"completed": False})})
    assert "INCOMPLETE" in dict((r[0], r[1]) for r in rows(broken))["4 capacity"]


def test_stamp_is_file_name_safe() -> None:
    from datetime import UTC, datetime

    assert stamp(datetime(2026, 11, 27, 6, 5, 9, tzinfo=UTC)) == "20261127T060509Z"


def test_live_during_backfill_has_a_line_when_measured(report_data: dict[str, Any]) -> None:
    dist = {"count": 1200, "p50": 1.0, "p95": 1.5, "p99": 2.0, "max": 2.5, "mean": 1.1}
    report_data["backfill"].update(live_alone=dist, live_during={**dist, "p95": 2.1}, backfill_peak_calls_per_window=27,
                                   backfill_cap_per_window=27)
    cells = {r[0]: r[1] + " | " + r[2] for r in rows(BenchReport.model_validate(report_data))}
    line = cells["5 live during backfill"]
    assert "1.00/2.10/2.00 s during" in line and "1.00/1.50/2.00 s alone (p95 +0.60 s)" in line
    assert "backfill peak 27/20 s (cap 27)" in line
