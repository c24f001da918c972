"""Workload generation, call counting, sizing rules, machine facts and CLI configuration."""

from __future__ import annotations

import gc
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kmsync_bench import cli, sections
from kmsync_bench.config import backfill_cap
from kmsync_bench.cpu import services_collections
from kmsync_bench.machine import code_version, describe_machine, parse_status_kib, peak_rss_mib
from kmsync_bench.report import BenchReport, CapacityOnlyReport
from kmsync_bench.sandbox import count_calls, diff_counts, is_bulk, is_write
from kmsync_bench.sections import live_rate, rest_equivalent, steady_rate
from kmsync_bench.table import capacity_rows, rows
from kmsync_bench.workload import backlog, engagement_csv
from kmsync_kaltura.csv_reports import parse_engagement_csv

AT = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def test_backlog_has_exactly_the_requested_operations_with_unique_ids_and_every_kind() -> None:
    ops = backlog(1_000, "111-AAA-111", "t", AT)
    assert len(ops) == 1_000
    assert len({op.op_id for op in ops}) == 1_000
    kinds = Counter(op.kind for op in ops)
    assert set(kinds) == {"lead_upsert", "program_member_status", "custom_object_upsert", "custom_activity"}
    first_of_each_lead: dict[str, str] = {}
    for op in ops:
        first_of_each_lead.setdefault(op.email, op.kind)
    assert set(first_of_each_lead.values()) == {"lead_upsert"}, "a lead's upsert comes before its other operations"


def test_engagement_csv_is_a_valid_kaltura_4021_export() -> None:
    data = engagement_csv(250, "x", first=10)
    assert data.startswith("\ufeff".encode())
    parsed = parse_engagement_csv(data, entry_id="1_e")
    assert parsed.errors == []
    assert [r.row.email for r in parsed.rows][:2] == ["x10@bench.example", "x11@bench.example"]
    assert len(parsed.rows) == 250


CALLS = {
    "POST /identity/oauth/token": {"200": 3},
    "POST /rest/v1/leads.json": {"200": 10, "606": 2},
    "GET /rest/v1/leads.json": {"200": 4},
    "POST /rest/v1/leads/delete.json": {"200": 1},
    "POST /rest/v1/programs/{programId}/members/status.json": {"200": 5},
    "POST /rest/v1/customobjects/{apiName}.json": {"200": 6},
    "POST /rest/v1/activities/external.json": {"200": 7},
    "POST /bulk/v1/customobjects/{apiName}/import.json": {"200": 1},
    "GET /bulk/v1/customobjects/{apiName}/import/{batchId}/status.json": {"200": 3},
}


def test_writes_are_the_record_carrying_posts_and_identity_is_never_counted() -> None:
    writes = {ep for ep in CALLS if is_write(ep)}
    assert writes == {"POST /rest/v1/leads.json", "POST /rest/v1/programs/{programId}/members/status.json",
                      "POST /rest/v1/customobjects/{apiName}.json", "POST /rest/v1/activities/external.json",
                      "POST /bulk/v1/customobjects/{apiName}/import.json"}
    assert count_calls(CALLS, writes_only=True) == 12 + 5 + 6 + 7 + 1
    assert count_calls(CALLS) == 12 + 4 + 1 + 5 + 6 + 7 + 1 + 3
    assert count_calls(CALLS, codes=["606", "615"]) == 2
    assert {ep for ep in CALLS if is_bulk(ep)} == {"POST /bulk/v1/customobjects/{apiName}/import.json",
                                                   "GET /bulk/v1/customobjects/{apiName}/import/{batchId}/status.json"}


def test_diff_counts_keeps_only_what_happened_between_snapshots() -> None:
    before = {"POST /rest/v1/leads.json": {"200": 10}, "GET /rest/v1/leads.json": {"200": 4}}
    after = {"POST /rest/v1/leads.json": {"200": 13, "606": 1}, "GET /rest/v1/leads.json": {"200": 4},
             "POST /rest/v1/activities/external.json": {"200": 2}}
    assert diff_counts(after, before) == {"POST /rest/v1/leads.json": {"200": 3, "606": 1},
                                          "POST /rest/v1/activities/external.json": {"200": 2}}


def test_live_rate_stays_at_or_under_half_the_measured_capacity() -> None:
    assert live_rate(20, 100) == 20
    assert live_rate(20, 13.4) == 6
    assert live_rate(20, 0.5) == 1


def test_rest_equivalent_of_a_backfill_is_300_records_per_call() -> None:
    rest = rest_equivalent(1_000_000, 50_000)
    assert (rest.lead_lookups, rest.custom_objects, rest.total) == (167, 3_334, 3_501)
    assert rest.custom_activities_if_enabled == 3_334
    assert rest.seconds_at_rate_limit == pytest.approx(3_501 / 100 * 20)


def test_peak_rss_reads_vmhwm() -> None:
    status = "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t   71680 kB\nVmRSS:\t   70000 kB\n"
    assert parse_status_kib(status, "VmHWM") == 71_680
    assert parse_status_kib(status, "VmSwap") is None
    own = peak_rss_mib(os.getpid())
    assert own is not None and own > 10
    assert peak_rss_mib(2**22 + 12345) is None  # no such process


def test_cli_sizes_come_from_the_mode_and_flags() -> None:
    quick = cli.build_config(cli._parser().parse_args(["--quick"]))
    full = cli.build_config(cli._parser().parse_args(["--backfill-rows", "5000"]))
    assert quick.mode == "quick" and quick.backlog_ops < full.backlog_ops
    assert full.backlog_ops == 50_000 and full.backfill_rows == 5_000 and full.backfill_sessions == 20
    assert cli.build_config(cli._parser().parse_args([])).backfill_rows == 1_000_000


def test_cli_refuses_impossible_sizes_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--quick", "--backlog-ops", "5"]) == 2
    assert "backlog_ops" in capsys.readouterr().err
    assert cli.main(["--quick", "--backfill-rows", "4001"]) == 2
    assert "does not split into 2 sessions" in capsys.readouterr().err


def test_steady_rate_ignores_the_slow_start_and_the_tail() -> None:
    times = [0.0] + [10.0 + i * 0.1 for i in range(98)] + [100.0]  # 10 per second after a 10 s start
    assert steady_rate(times) == pytest.approx(10.0, rel=0.02)
    assert steady_rate([1.0, 2.0]) == 0.0


def test_code_version_names_the_commit_that_ran() -> None:
    version = code_version()
    assert len(version.commit) == 40 and all(c in "0123456789abcdef" for c in version.commit)
    assert all(p.startswith(("services/", "libs/")) for p in version.uncommitted_paths)


def test_machine_description_comes_from_this_machine() -> None:
    m = describe_machine("3.9.1")
    assert m.cpu_count == os.cpu_count() and m.kafka_version == "3.9.1" and m.memory_gib > 0
    assert m.load_average is not None and len(m.load_average) == 3


def test_backfill_calls_are_told_from_the_live_trickles_by_their_bodies() -> None:
    bf_leads = {"endpoint": "POST /rest/v1/leads.json", "code": "200",
                "body": '{"input": [{"email": "bf12@bench.example"}]}'}
    bf_objects = {"endpoint": "POST /rest/v1/customobjects/{apiName}.json", "code": "200",
                  "body": '{"input": [{"entry_id": "1_backfill007", "leadID": 3}]}'}
    bulk = {"endpoint": "POST /bulk/v1/customobjects/{apiName}/import.json", "code": "200", "body": "<multipart>"}
    live = {"endpoint": "POST /rest/v1/customobjects/{apiName}.json", "code": "200",
            "body": '{"input": [{"entry_id": "1_livebf", "email": "lvd3@bench.example"}]}'}
    live_leads = {"endpoint": "POST /rest/v1/leads.json", "code": "606", "body": '[{"email": "lva3@bench.example"}]'}
    describe = {"endpoint": "GET /rest/v1/leads/describe.json", "code": "200", "body": ""}
    assert [sections.is_backfill_call(e) for e in (bf_leads, bf_objects, bulk, live, live_leads, describe)] == [
        True, True, True, False, False, False]
    log = [bf_leads, live, live, live_leads, describe]
    assert sections.live_call_counts(log) == {"POST /rest/v1/customobjects/{apiName}.json": {"200": 2},
                                              "POST /rest/v1/leads.json": {"606": 1}}


def test_the_backfill_cap_is_the_sink_limiters() -> None:
    full = cli.build_config(cli._parser().parse_args([]))
    assert (full.backfill_share, full.backfill_lane_share) == (1.0, 0.3)
    assert backfill_cap(full) == 27  # 0.3 of (100 × 1.0 − 10 headroom)
    assert backfill_cap(full.model_copy(update={"backfill_lane_share": 0.5})) == 45


def test_only_capacity_reports_section_four_with_its_cpu_lines() -> None:
    """`kmsync bench --only capacity` (issue #22's quick loop): the report holds the capacity section and
    the printed lines are the full table's capacity lines."""
    recorded = BenchReport.model_validate_json(
        (Path(__file__).parent / "data" / "quick-report.json").read_text())
    args = cli._parser().parse_args(["--only", "capacity", "--quick"])
    measure, report_type, field = cli.ONE_SECTION[args.only]
    assert (measure, report_type, field) == (cli.measure_capacity_only, CapacityOnlyReport, "capacity")
    report = CapacityOnlyReport(mode="quick", started_at=recorded.started_at, finished_at=recorded.finished_at,
                                wall_seconds=1.0, machine=recorded.machine, code=recorded.code, config=recorded.config,
                                capacity=recorded.capacity)
    assert CapacityOnlyReport.model_validate_json(report.model_dump_json()) == report
    printed = cli.one_section_rows(report)
    assert printed == capacity_rows(recorded.capacity)
    assert printed and all(line in rows(recorded) for line in printed)
    assert printed[0][0] == "4 capacity"


def test_in_process_benchmarks_run_under_the_services_collector_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """sink_cpu, ingest_cpu and transform_lean measure a service's code under the schedule the services run
    with, from the same setting (KMSYNC_GC_FULL_THRESHOLD), and give Python's back afterwards."""
    before = gc.get_threshold()
    monkeypatch.setenv("KMSYNC_GC_FULL_THRESHOLD", "1234")
    with services_collections():
        assert gc.get_threshold() == (before[0], before[1], 1234)
    assert gc.get_threshold() == before
