"""`kmsync bench [--quick] [--out bench/results/<timestamp>.json]`: measure, write the JSON report and
its charts (<report>.latency.png, <report>.calls.png), print a table.

Starts its own Kafka broker, the Marketo sandbox and ingest/transform/sink as separate processes on
loopback ports, runs the five measurements in one session, and stops everything it started.

Also: `kmsync bench charts REPORT.json ...` draws a report's charts again;
`kmsync bench codecs` measures the contracts' JSON encode/decode per record (no broker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import math
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from kmsync_bench import sections
from kmsync_bench.config import BACKFILL_INSTANCE, FULL, QUICK, BenchConfig
from kmsync_bench.kafka_io import ResultsFollower
from kmsync_bench.machine import code_version, describe_machine
from kmsync_bench.report import (
    Backfill,
    BackfillOnlyReport,
    BenchReport,
    Budget,
    Capacity,
    CapacityOnlyReport,
    Latency,
    LatencyOnlyReport,
    OneSectionReport,
    stamp,
    write_report,
)
from kmsync_bench.sandbox import SandboxAdmin
from kmsync_bench.stack import Stack, sandbox_limits
from kmsync_bench.table import capacity_rows, latency_rows, live_during_backfill_rows, render
from kmsync_common.clock import SYSTEM_CLOCK
from kmsync_config.settings import CommonSettings
from kmsync_sink.settings import SinkSettings
from kmsync_testing.kafka_broker import kafka_version


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kmsync bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes); what the tests run")
    p.add_argument("--out", type=Path, help="report path (default: bench/results/<UTC timestamp>.json)")
    p.add_argument("--work-dir", type=Path, help="broker data and service logs (default: a temporary directory)")
    p.add_argument("--backlog-ops", type=int, help="operations in the section 1/2 backlog")
    p.add_argument("--capacity-rows", type=int, help="engagement rows through the pipeline, limits lifted")
    p.add_argument("--backfill-rows", type=int, help="engagement rows loaded with kmsync backfill (1,000,000)")
    p.add_argument("--backfill-sessions", type=int, help="session CSVs the backfill rows are split into (20)")
    p.add_argument("--latency-seconds", type=float, help="how long the live stream runs")
    p.add_argument("--only", choices=sorted(ONE_SECTION),
                   help="run one section alone after the warm-up: 5 (live-backfill), 3 (latency) or 4 "
                        "(capacity); the report holds that section only")
    return p


def build_config(args: argparse.Namespace) -> BenchConfig:
    base = QUICK if args.quick else FULL
    overrides = {name: getattr(args, name) for name in
                 ("backlog_ops", "capacity_rows", "backfill_rows", "backfill_sessions", "latency_seconds")
                 if getattr(args, name) is not None}
    return BenchConfig.model_validate({**base.model_dump(), **overrides})


def sink_settings_recorded() -> dict[str, Any]:
    """The sink's own settings as this run used them (its defaults: the bench sets none)."""
    common = set(CommonSettings.model_fields)
    return {name: f.get_default(call_default_factory=True) for name, f in SinkSettings.model_fields.items()
            if name not in common}


class Phases:
    """Wall time per step, announced on stderr as it starts."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._name = ""
        self._t = SYSTEM_CLOCK.monotonic()

    def next(self, name: str) -> None:
        now = SYSTEM_CLOCK.monotonic()
        if self._name:
            self.seconds[self._name] = round(now - self._t, 1)
        self._name, self._t = name, now
        if name:
            print(f"kmsync bench: {name} ...", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def observing(stack: Stack) -> AsyncIterator[tuple[SandboxAdmin, ResultsFollower]]:
    """The sandbox's admin API and a follower of marketo.results.v1 (the backfill's outcomes only counted,
    the live trickle beside it kept whole), for one run."""
    assert stack.sandbox is not None
    admin = SandboxAdmin(stack.sandbox.base_url)
    follower = ResultsFollower(stack.bootstrap, count_only=frozenset({BACKFILL_INSTANCE}),
                               keep_sessions=frozenset({sections.LIVE_BESIDE_ENTRY}))
    await follower.start()
    try:
        yield admin, follower
    finally:
        await follower.stop()
        await admin.aclose()


async def measure(stack: Stack, cfg: BenchConfig, phases: Phases, deadline: float) -> dict[str, Any]:
    async with observing(stack) as (admin, follower):
        phases.next("warm-up")
        await sections.warm_up(stack, follower)
        phases.next("capacity")
        capacity = await sections.capacity(stack, admin, follower, cfg)
        phases.next("backlog")
        alone = await sections.backlog_phase(stack, admin, follower, cfg, "eff", cfg.backlog_ops, None)
        phases.next("naive")
        efficiency = await sections.efficiency(stack, admin, follower, cfg, alone)
        phases.next("shared backlog")
        shared = await sections.backlog_phase(stack, admin, follower, cfg, "shared", cfg.shared_backlog_ops,
                                              cfg.external_share)
        phases.next("latency")
        latency = await sections.latency(stack, admin, follower, cfg, capacity.events_per_second)
        phases.next("live during backfill")
        backfill = await sections.backfill(stack, admin, follower, cfg, deadline - 15)  # 15 s to report and stop
        phases.next("")
        limits = {m: await admin.limits(m) for m in sandbox_limits()}
        return {"capacity": capacity, "efficiency": efficiency, "budget": Budget(alone=alone[0], shared=shared[0]),
                "latency": latency, "backfill": backfill, "sandbox_limits": limits}


async def measure_backfill_only(stack: Stack, cfg: BenchConfig, phases: Phases, deadline: float) -> Backfill:
    async with observing(stack) as (admin, follower):
        phases.next("warm-up")
        await sections.warm_up(stack, follower)
        phases.next("live during backfill")
        return await sections.backfill(stack, admin, follower, cfg, deadline - 15)


async def measure_latency_only(stack: Stack, cfg: BenchConfig, phases: Phases, deadline: float) -> Latency:
    async with observing(stack) as (admin, follower):
        phases.next("warm-up")
        await sections.warm_up(stack, follower)
        phases.next("latency")
        return await sections.latency(stack, admin, follower, cfg, math.inf)


async def measure_capacity_only(stack: Stack, cfg: BenchConfig, phases: Phases, deadline: float) -> Capacity:
    async with observing(stack) as (admin, follower):
        phases.next("warm-up")
        await sections.warm_up(stack, follower)
        phases.next("capacity")
        return await sections.capacity(stack, admin, follower, cfg)


#: `--only SECTION` → (what measures it, the report that holds it, the field it goes in).
ONE_SECTION: dict[str, tuple[Callable[..., Coroutine[Any, Any, Any]], type[OneSectionReport], str]] = {
    "live-backfill": (measure_backfill_only, BackfillOnlyReport, "backfill"),
    "latency": (measure_latency_only, LatencyOnlyReport, "latency"),
    "capacity": (measure_capacity_only, CapacityOnlyReport, "capacity"),
}


def run_one_section(cfg: BenchConfig, out: Path, work: Path, section: str) -> OneSectionReport:
    """`--only SECTION`: start the stack, run that section after the warm-up, write its report."""
    started, t0, code = SYSTEM_CLOCK.now(), SYSTEM_CLOCK.monotonic(), code_version()
    stack, phases = Stack(work, cfg), Phases()
    measure_one, report_type, field = ONE_SECTION[section]
    try:
        phases.next("start-up (broker, sandbox, services)")
        stack.start()
        result: Any = asyncio.run(measure_one(stack, cfg, phases, t0 + cfg.total_seconds))
    finally:
        stack.stop()
    report = report_type(mode=cfg.mode, started_at=started, finished_at=SYSTEM_CLOCK.now(),
                         wall_seconds=round(SYSTEM_CLOCK.monotonic() - t0, 1),
                         machine=describe_machine(kafka_version()), code=code, config=cfg.model_dump(),
                         **{field: result})
    write_report(report, out)
    return report


def one_section_rows(report: OneSectionReport) -> list[tuple[str, str, str]]:
    if isinstance(report, BackfillOnlyReport):
        return live_during_backfill_rows(report.backfill)
    if isinstance(report, LatencyOnlyReport):
        return latency_rows(report.latency)
    return capacity_rows(report.capacity)


def run(cfg: BenchConfig, out: Path, work: Path) -> BenchReport:
    started = SYSTEM_CLOCK.now()
    t0 = SYSTEM_CLOCK.monotonic()
    code = code_version()
    stack = Stack(work, cfg)
    phases = Phases()
    try:
        phases.next("start-up (broker, sandbox, services)")
        stack.start()
        results = asyncio.run(measure(stack, cfg, phases, t0 + cfg.total_seconds))
    finally:
        stack.stop()
    report = BenchReport(
        mode=cfg.mode, started_at=started, finished_at=SYSTEM_CLOCK.now(),
        wall_seconds=round(SYSTEM_CLOCK.monotonic() - t0, 1),
        phase_seconds=phases.seconds,
        machine=describe_machine(kafka_version()), code=code, config=cfg.model_dump(),
        sandbox_limits=results["sandbox_limits"],
        sink_settings=sink_settings_recorded(), efficiency=results["efficiency"], budget=results["budget"],
        latency=results["latency"], capacity=results["capacity"], backfill=results["backfill"],
        notes=["Every number was measured in this run; figures derived from measured calls by arithmetic "
               "(at the rate limit, REST equivalents) say how in their field names and docs.",
               "One sandbox process serves four instances: efficiency/budget/latency under Marketo's real limits, "
               "naive with the rate limit lifted, capacity with every limit lifted, backfill under the real "
               "rolling limits (sandbox_limits)."])
    write_report(report, out)
    return report


def write_charts(report: BenchReport, out: Path) -> list[Path]:
    """The report's charts beside it (kmsync_bench.charts); none, with a note, without matplotlib (a dev
    dependency: the service image has no bench)."""
    try:
        from kmsync_bench import charts
    except ModuleNotFoundError as exc:
        print(f"kmsync bench: no charts ({exc.name} is not installed: make venv)", file=sys.stderr)
        return []
    return charts.write_charts(report, out)


#: Subcommands that are not a benchmark run: name → module with main(argv).
TOOLS = {"charts": "kmsync_bench.charts", "codecs": "kmsync_bench.codecs"}


def main(argv: list[str]) -> int:
    if argv and argv[0] in TOOLS:
        try:
            tool: Callable[[list[str]], int] = importlib.import_module(TOOLS[argv[0]]).main
        except ModuleNotFoundError as exc:  # matplotlib is a dev dependency; the service image has none
            missing = (exc.name or "a module").split(".")[0]
            print(f"kmsync bench {argv[0]}: {missing} is not installed (make venv installs the dev tools)",
                  file=sys.stderr)
            return 2
        return tool(argv[1:])
    args = _parser().parse_args(argv)
    try:
        cfg = build_config(args)
    except ValueError as exc:
        print(f"kmsync bench: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("bench/results") / f"{stamp(SYSTEM_CLOCK.now())}.json"
    def runner(work: Path) -> BenchReport | OneSectionReport:
        return run(cfg, out, work) if args.only is None else run_one_section(cfg, out, work, args.only)

    try:
        if args.work_dir is not None:
            report = runner(args.work_dir.resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="kmsync-bench-") as tmp:
                report = runner(Path(tmp))
    except (RuntimeError, OSError) as exc:
        print(f"kmsync bench failed: {exc}", file=sys.stderr)
        return 1
    if not isinstance(report, BenchReport):
        print("\n".join("  ".join(row) for row in one_section_rows(report)))
        print(f"report: {out}")
        return 0
    print(render(report))
    print(f"report: {out}")
    for chart in write_charts(report, out):
        print(f"chart: {chart}")
    return 0
