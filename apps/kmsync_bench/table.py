"""The short table `kmsync bench` prints: one line per number that matters. Pure."""

from __future__ import annotations

from kmsync_bench.report import Backfill, BenchReport, Capacity, Latency


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def rows(report: BenchReport) -> list[tuple[str, str, str]]:
    e, b, lat, cap, bf = report.efficiency, report.budget, report.latency, report.capacity, report.backfill
    naive_limit = e.naive.at_rate_limit
    out = [
        ("1 API efficiency", f"kmsync {e.kmsync.records_per_call:.1f} records/call "
                             f"({e.kmsync.write_calls} write calls for {e.backlog_ops:,} ops)",
         f"naive {e.naive.records_per_call:.1f} records/call; {naive_limit.calls:,} calls "
         f"({e.call_reduction:.0f}x more), {naive_limit.seconds_at_rate_limit / 60:.0f} min at the rate limit"),
    ]
    for label, phase in (("2 budget, alone", b.alone), ("2 budget, shared", b.shared)):
        ext = ""
        if phase.external is not None:
            ext = (f"; external {_pct(phase.external.target_share)} → {phase.external.mean_per_window:.0f}/window,"
                   f" its 606: {phase.external.throttled_606}")
        out.append((label, f"peak {phase.sink_peak_per_window}/{phase.configured_per_window:.0f} per "
                           f"{phase.window_seconds:.0f} s ({_pct(phase.peak_share_of_configured)} of configured, "
                           f"mean {_pct(phase.mean_share_of_configured)})",
                    f"606: {phase.sink_606}, 615: {phase.sink_615}; instance peak "
                    f"{phase.instance_peak_per_window}/{phase.instance_limit_per_window}{ext}"))
    out += latency_rows(lat)
    out += capacity_rows(cap)
    rest = bf.rest_equivalent
    out.append(("5 backfill", f"{bf.rows:,} rows ({bf.sessions} sessions × {bf.attendees:,}): {bf.calls_total:,} calls "
                              f"({bf.bulk_submit_calls} bulk imports), {bf.rows_per_second:,.0f} rows/s"
                              f"{'' if bf.completed else ', INCOMPLETE'}",
                f"REST at 300/call: {rest.total:,} calls ({bf.call_reduction:.0f}x more), "
                f"{rest.seconds_at_rate_limit / 60:.0f} min at the rate limit; peak {bf.peak_calls_per_window}/20 s"))
    out += live_during_backfill_rows(bf)
    return out


def capacity_rows(cap: Capacity) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(cap.peak_rss_mib.items()))
    out.append(("4 capacity", f"{cap.events_per_second:,.0f} events/s, steady {cap.steady_events_per_second:,.0f}"
                              f" ({cap.rows:,} rows"
                              f"{'' if cap.completed else ', INCOMPLETE'})",
                f"peak RSS MiB: {rss}"))
    if cap.cpu_per_10k_rows is not None and cap.passthrough is not None:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cap.cpu_per_10k_rows.items()))
        pt = cap.passthrough
        out.append(("4 capacity CPU", f"kmsync {cap.kmsync_cpu_per_10k_rows:.2f} CPU s per 10,000 rows, "
                                      f"{cap.cpu_multiple_of_passthrough:.1f}x a bare passthrough "
                                      f"({pt.total_cpu_per_10k:.2f}: client {pt.client_cpu_per_10k:.2f}, "
                                      f"broker {pt.broker_cpu_per_10k:.2f})",
                    f"per process: {cpu}"))
    return out


def latency_rows(lat: Latency) -> list[tuple[str, str, str]]:
    d = lat.end_to_end
    walk_in = "" if lat.walk_in is None else f"; walk-ins p95 {lat.walk_in.p95:.2f} s"
    return [("3 latency", f"p50 {d.p50:.2f} s, p95 {d.p95:.2f} s, p99 {d.p99:.2f} s",
             f"{lat.rows_per_second:.0f} rows/s for {lat.seconds:.0f} s, {d.count} outcomes{walk_in}")]


def live_during_backfill_rows(bf: Backfill) -> list[tuple[str, str, str]]:
    if bf.live_alone is None or bf.live_during is None:
        return []
    a, d = bf.live_alone, bf.live_during
    return [("5 live during backfill",
             f"live p50/p95/p99 {d.p50:.2f}/{d.p95:.2f}/{d.p99:.2f} s during, {a.p50:.2f}/{a.p95:.2f}/{a.p99:.2f} s "
             f"alone (p95 {d.p95 - a.p95:+.2f} s)",
             f"backfill peak {bf.backfill_peak_calls_per_window}/20 s (cap {bf.backfill_cap_per_window}), "
             f"{bf.seconds:,.0f} s{'' if bf.completed else ' INCOMPLETE'}"
             + ("" if bf.live_during_upstream is None else
                f"; upstream (ingest+transform) p95 {bf.live_during_upstream.p95:.2f} s during"))]


def render(report: BenchReport) -> str:
    table = rows(report)
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    m = report.machine
    lines = [f"kmsync bench ({report.mode}) on {m.cpu_count} CPU, {m.memory_gib:g} GiB, Python {m.python}, "
             f"Kafka {m.kafka_version}; {report.wall_seconds / 60:.1f} min"
             + (f"; load average {m.load_average[2]:.1f} (15 min)" if m.load_average else "")]
    for r in table:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
    return "\n".join(lines)
