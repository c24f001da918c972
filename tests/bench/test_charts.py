"""The charts `kmsync bench` writes beside its report: latency percentiles and calls per 20 s (PNG).

Drawn from a small recorded report (tests/bench/data/quick-report.json: the report of a `kmsync bench
--quick` run at commit 7a8428d, with the per-second calls series) and from one written before the
series existed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from kmsync_bench import charts
from kmsync_bench.cli import main as bench_main
from kmsync_bench.cli import write_charts
from kmsync_bench.report import BenchReport, load_report

RECORDED = Path(__file__).parent / "data" / "quick-report.json"


def _assert_png(path: Path, min_width: int, min_height: int) -> None:
    assert path.is_file() and path.stat().st_size > 10_000, path
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()  # the whole file decodes (a truncated PNG fails here)
    with Image.open(path) as img:
        width, height = img.size
        assert width >= min_width and height >= min_height
        # Something was drawn: a blank canvas has a single colour.
        assert len(img.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 20


def test_the_recorded_report_has_the_series_the_calls_chart_draws() -> None:
    report = load_report(RECORDED)
    for phase in (report.budget.alone, report.budget.shared):
        assert phase.calls_series is not None
        assert max(phase.calls_series.sink) <= phase.sink_peak_per_window
        assert phase.calls_series.instance is None or max(phase.calls_series.instance) <= \
            phase.instance_peak_per_window
    assert report.budget.shared.calls_series is not None and report.budget.shared.calls_series.instance
    assert report.latency.calls_series is not None and report.backfill.calls_series is not None


def test_charts_of_a_recorded_report_are_valid_pngs_beside_it(tmp_path: Path) -> None:
    report_path = tmp_path / "20261206T020000Z.json"
    shutil.copy(RECORDED, report_path)
    written = write_charts(load_report(report_path), report_path)
    latency_png, calls_png = charts.chart_paths(report_path)
    assert written == [latency_png, calls_png]
    assert latency_png.name == "20261206T020000Z.latency.png" and calls_png.name == "20261206T020000Z.calls.png"
    _assert_png(latency_png, 800, 400)
    _assert_png(calls_png, 800, 900)  # one panel per phase: budget alone, shared, latency, backfill


def test_the_calls_chart_has_a_panel_per_phase_and_the_latency_chart_a_group_per_kind() -> None:
    report = load_report(RECORDED)
    assert [p.title.split(":")[0] for p in charts.panels(report)] == [
        "2. Budget, kmsync alone", "2. Budget, shared with an external client at 40%", "3. Latency stream",
        "5. Backfill"]
    latency = charts.latency_figure(report)
    ticks = [t.get_text() for t in latency.axes[0].get_xticklabels()]
    assert ticks[0].startswith("end to end") and len(ticks) == 1 + len(report.latency.by_kind)
    assert len(charts.calls_figure(report).axes) == 4


def test_a_report_written_before_the_series_still_charts(tmp_path: Path, report_data: dict[str, Any]) -> None:
    report = BenchReport.model_validate(report_data)
    assert report.budget.alone.calls_series is None
    for path in write_charts(report, tmp_path / "old.json"):
        _assert_png(path, 800, 400)


def test_kmsync_bench_charts_redraws_them_from_report_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    report_path = tmp_path / "run.json"
    shutil.copy(RECORDED, report_path)
    assert bench_main(["charts", str(report_path)]) == 0
    out = capsys.readouterr().out
    for path in charts.chart_paths(report_path):
        _assert_png(path, 800, 400)
        assert str(path) in out
    assert bench_main(["charts", str(tmp_path / "missing.json")]) == 2


def test_kmsync_bench_charts_without_matplotlib_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from kmsync_bench import cli

    monkeypatch.delitem(sys.modules, "kmsync_bench.charts", raising=False)
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # what an image without the dev tools has
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["charts", "report.json"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "kmsync bench charts: matplotlib is not installed (make venv installs the dev tools)"
