"""Charts of a benchmark report (PNG, matplotlib's Agg backend): latency percentiles and calls per 20 s.

`kmsync bench` writes them next to its JSON report (``<report>.latency.png``,
``<report>.calls.png``); ``kmsync bench charts REPORT.json ...`` draws them again from report files.
matplotlib is a dev dependency (requirements-dev.lock), like the benchmark itself: the service
image installs neither. Pure drawing: every number comes from the report.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from pydantic import ValidationError

from kmsync_bench.report import BenchReport, CallSeries, Dist, load_report

#: Pixels per inch of the PNGs: 900 × 500 (latency) and 1100 × 1000 (calls), 10-40 KB each.
DPI = 100
PALETTE_COLOURS = 64
PERCENTILES = ("p50", "p95", "p99", "max")
COLOURS = {"p50": "#4c72b0", "p95": "#dd8452", "p99": "#c44e52", "max": "#8172b3"}


def chart_paths(report_path: Path) -> tuple[Path, Path]:
    """Where the charts of the report at ``report_path`` go: beside it, named after it."""
    return report_path.with_suffix(".latency.png"), report_path.with_suffix(".calls.png")


def _subtitle(report: BenchReport) -> str:
    m = report.machine
    return (f"kmsync bench ({report.mode}), {report.started_at:%Y-%m-%d %H:%M} UTC, commit {report.code.commit[:7]}; "
            f"{m.cpu_count} CPU, Python {m.python}, Kafka {m.kafka_version}")


def latency_figure(report: BenchReport) -> Figure:
    """Grouped bars: p50, p95, p99 and max seconds, end to end and for each kind of operation."""
    lat = report.latency
    groups: list[tuple[str, Dist]] = [("end to end", lat.end_to_end), *sorted(lat.by_kind.items())]
    fig = Figure(figsize=(9, 5), dpi=DPI)
    ax = fig.add_subplot()
    width = 0.8 / len(PERCENTILES)
    for i, name in enumerate(PERCENTILES):
        xs = [g + (i - (len(PERCENTILES) - 1) / 2) * width for g in range(len(groups))]
        values = [float(getattr(d, name)) for _, d in groups]
        bars = ax.bar(xs, values, width, label=name, color=COLOURS[name])
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), [f"{label}\n({d.count:,} outcomes)" for label, d in groups])
    ax.set_ylabel("seconds, Kaltura export → Marketo accepted")
    ax.set_ylim(0, max(d.max for _, d in groups) * 1.15)
    ax.legend(loc="upper left", ncols=len(PERCENTILES), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"3. Latency: {lat.rows_per_second:.0f} rows/s for {lat.seconds:.0f} s", fontsize=11)
    fig.suptitle(_subtitle(report), fontsize=8, y=0.995)
    fig.tight_layout()
    return fig


@dataclass
class Panel:
    """One phase of the calls chart."""

    title: str
    seconds: float
    series: CallSeries | None
    #: Recorded in every report: drawn as lines where the report has no series (written before it had one).
    peak: int
    mean: float | None
    #: Horizontal reference lines: (label, calls per window).
    limits: list[tuple[str, float]] = field(default_factory=list)


def panels(report: BenchReport) -> list[Panel]:
    alone, shared = report.budget.alone, report.budget.shared
    limit = float(alone.instance_limit_per_window)
    share = [(f"kmsync's share ({alone.configured_per_window:.0f})", alone.configured_per_window),
             (f"instance limit ({limit:.0f})", limit)]
    lat, bf = report.latency, report.backfill
    return [
        Panel(f"2. Budget, kmsync alone: {alone.ops:,} operations", alone.seconds, alone.calls_series,
              alone.sink_peak_per_window, alone.sink_mean_per_window, share),
        Panel(f"2. Budget, shared with an external client at {shared.external.target_share:.0%}"
              if shared.external else "2. Budget, shared", shared.seconds, shared.calls_series,
              shared.sink_peak_per_window, shared.sink_mean_per_window, share),
        Panel(f"3. Latency stream: {lat.rows:,} rows", lat.seconds, lat.calls_series, lat.calls_per_window_peak,
              None, share),
        Panel(f"5. Backfill: {bf.rows:,} rows, share 1.0", bf.seconds, bf.calls_series, bf.peak_calls_per_window,
              None, [(f"instance limit ({limit:.0f})", limit)]),
    ]


def _draw_panel(ax: Axes, panel: Panel) -> None:
    if panel.series is not None:
        s = panel.series
        xs = [i * s.step_seconds for i in range(len(s.sink) - 1)] + [s.seconds]
        ax.plot(xs, s.sink, label=f"kmsync (peak {panel.peak} in any 20 s)", color="#4c72b0")
        if s.instance is not None:
            ax.plot(xs, s.instance, label="all clients", color="#55a868")
    else:
        ax.hlines(panel.peak, 0, panel.seconds, colors="#4c72b0", label=f"kmsync peak ({panel.peak})")
        if panel.mean is not None:
            ax.hlines(panel.mean, 0, panel.seconds, colors="#4c72b0", linestyles="dotted",
                      label=f"kmsync mean ({panel.mean:.0f})")
        ax.text(0.01, 0.04, "this report has no per-second series: its recorded peak and mean", fontsize=7,
                transform=ax.transAxes)
    for (label, value), style in zip(panel.limits, ("--", ":"), strict=False):
        ax.axhline(value, color="#c44e52", linestyle=style, linewidth=1, label=label)
    top = max([panel.peak, *(v for _, v in panel.limits)])
    ax.set_ylim(0, top * 1.15)
    ax.set_xlim(0, max(panel.seconds if panel.series is None else panel.series.seconds, 1.0))
    ax.set_title(panel.title, fontsize=9, loc="left")
    ax.set_ylabel("calls / 20 s", fontsize=8)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    ax.grid(alpha=0.3)


def calls_figure(report: BenchReport) -> Figure:
    """Per phase: the sink's calls in the rolling 20 s window (Marketo's rate limit window) over time."""
    phases = panels(report)
    fig = Figure(figsize=(11, 2.5 * len(phases)), dpi=DPI)
    axes = fig.subplots(len(phases), 1)
    for ax, panel in zip(axes, phases, strict=True):
        _draw_panel(ax, panel)
    axes[-1].set_xlabel("seconds since the phase started")
    fig.suptitle(_subtitle(report), fontsize=8, y=0.998)
    fig.tight_layout()
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Rendered by Agg, then written with a 64-colour palette (flat lines and text: no visible loss,
    a quarter of the bytes, so example charts can live in the repository)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    image.convert("RGB").quantize(colors=PALETTE_COLOURS).save(path, format="PNG", optimize=True)
    return path


def write_charts(report: BenchReport, report_path: Path) -> list[Path]:
    """Both charts beside ``report_path``; returns their paths."""
    latency_png, calls_png = chart_paths(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    return [_save(latency_figure(report), latency_png), _save(calls_figure(report), calls_png)]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kmsync bench charts",
                                description="Draw the charts of benchmark reports again, beside each report.")
    p.add_argument("reports", nargs="+", type=Path, help="report JSON files (bench/results/*.json)")
    args = p.parse_args(argv)
    for path in args.reports:
        try:
            written = write_charts(load_report(path), path)
        except (OSError, ValidationError) as exc:
            print(f"kmsync bench charts: {path}: {exc}", file=sys.stderr)
            return 2
        print("\n".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
