"""The five measurements. Each returns its report section; numbers come from the sandbox's admin
counts, marketo.results.v1 and the services' /metrics, all measured in this run."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from kmsync_bench import passthrough as bare
from kmsync_bench.config import (
    BACKFILL_INSTANCE,
    CAPACITY_INSTANCE,
    DAILY_QUOTA,
    EFFICIENCY_INSTANCE,
    INSTANCE_RATE_LIMIT,
    NAIVE_INSTANCE,
    RATE_WINDOW_SECONDS,
    REST_BATCH,
    BenchConfig,
    backfill_cap,
)
from kmsync_bench.cpu import cpu_seconds, kmsync_total, multiple, per_10k, spent
from kmsync_bench.external import ExternalClient
from kmsync_bench.kafka_io import ResultsFollower, produce_ops, topic_sizes
from kmsync_bench.naive import NaiveWriter
from kmsync_bench.report import (
    AtRateLimit,
    Backfill,
    BudgetPhase,
    CallSeries,
    Capacity,
    Dist,
    Efficiency,
    KmsyncWrites,
    Latency,
    NaiveWrites,
    Passthrough,
    RestEquivalent,
)
from kmsync_bench.report import ExternalClient as ExternalReport
from kmsync_bench.sandbox import (
    CLIENT_ID,
    CLIENT_SECRET,
    EXTERNAL_CLIENT_ID,
    EXTERNAL_CLIENT_SECRET,
    REQUEST_LOG_SIZE,
    SandboxAdmin,
    count_calls,
    diff_counts,
    is_bulk,
    is_identity,
    is_write,
)
from kmsync_bench.stack import EVENT_IDS, WARM_UP_INSTANCE, Stack
from kmsync_bench.stats import Distribution, distribution, rolling_window_usage, window_series
from kmsync_bench.workload import PARTNER_ID, attendee_ops, backlog, engagement_csv, engagement_csv_lines
from kmsync_common.clock import SYSTEM_CLOCK
from kmsync_common.metrics_text import sample_sum
from kmsync_contracts.codecs import decode
from kmsync_contracts.outcomes import RecordOutcome
from kmsync_contracts.topics import MARKETO_OPS, SESSION_ENGAGEMENT
from kmsync_kafka.reading import read_to_end

#: Seconds between the samples of a phase's calls series (CallSeries).
SERIES_STEP_SECONDS = 1.0


def _dist(d: Distribution) -> Dist:
    return Dist(count=d.count, p50=round(d.p50, 3), p95=round(d.p95, 3), p99=round(d.p99, 3),
                max=round(d.max, 3), mean=round(d.mean, 3))


def calls_series(sink_times: list[float], all_times: list[float] | None, start: float, end: float) -> CallSeries:
    """The phase's calls per rolling window, sampled every second, for the charts."""
    return CallSeries(
        window_seconds=RATE_WINDOW_SECONDS, step_seconds=SERIES_STEP_SECONDS, seconds=round(end - start, 2),
        sink=window_series(sink_times, RATE_WINDOW_SECONDS, start, end, SERIES_STEP_SECONDS),
        instance=(None if all_times is None
                  else window_series(all_times, RATE_WINDOW_SECONDS, start, end, SERIES_STEP_SECONDS)))


async def wait_until(cond: Callable[[], bool], within: float, stack: Stack) -> bool:
    """Poll ``cond`` until true or the deadline; fail fast when a service process died."""
    deadline = SYSTEM_CLOCK.monotonic() + within
    while not cond():
        stack.check_alive()
        if SYSTEM_CLOCK.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)  # polling a condition with a deadline
    return True


def _outcome_counts(follower: ResultsFollower, munchkin: str, op_ids: set[str] | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op_id, outcome in follower.outcomes(munchkin).items():
        if op_ids is None or op_id in op_ids:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


async def sink_records_written(stack: Stack, munchkin: str) -> float:
    """Sum of the sink's records-per-call histogram for one instance (records it put in calls)."""
    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(f"{stack.url('sink')}/metrics")).text
    return sample_sum(text, "kmsync_sink_records_per_call_sum", {"munchkin_id": munchkin})


async def upload_report(stack: Stack, csv: bytes, event: str, entry_id: str, exported_at: datetime) -> None:
    """POST a report 4021 CSV to ingest, as Kaltura's export lands (answered after Kafka acknowledged)."""
    params = {"partner_id": str(PARTNER_ID), "virtual_event_id": str(EVENT_IDS[event]), "entry_id": entry_id,
              "report_id": "4021", "exported_at": exported_at.isoformat(), "final": "true"}
    async with httpx.AsyncClient(timeout=600) as http:
        resp = await http.post(f"{stack.url('ingest')}/ingest/kaltura/reports", params=params, content=csv,
                               headers={"Content-Type": "text/csv",
                                        "Authorization": f"Bearer {stack.upload_token}"})
    if resp.status_code != 200:
        raise RuntimeError(f"ingest refused the report: {resp.status_code} {resp.text[:500]}")


async def warm_up(stack: Stack, follower: ResultsFollower) -> None:
    """Five rows end to end, so every service has joined its group before anything is timed; then the
    broker's warm-up."""
    await upload_report(stack, engagement_csv(5, "warm"), "latency", "1_warmup", SYSTEM_CLOCK.now())
    if not await wait_until(lambda: follower.count(EFFICIENCY_INSTANCE) >= 10, 180, stack):
        raise RuntimeError("the warm-up rows never reached Marketo: the pipeline is not flowing")
    await warm_broker(stack, follower)


#: How many times section 4's rows the broker's warm-up sends (warm_broker).
BROKER_WARM_UP_ROUNDS = 3


async def warm_broker(stack: Stack, follower: ResultsFollower) -> None:
    """BROKER_WARM_UP_ROUNDS times section 4's load (capacity_rows engagement rows, two operations each) end to
    end on an instance of its own, before anything is measured. A broker JVM just started compiles its hot paths
    (JIT) under its first loads: measured (issue #22, session 8), the first 20,000 rows cost the broker 4.2 CPU
    s per 10,000 rows, 2.9 of them in its C1/C2 compiler threads; the next six rounds of 20,000 rows 1.4-1.5,
    then 0.9-1.0 and 0.6 (its C2 thread 0.5 -> 0.1). A deployed broker has done that long ago; without this the
    bench charged it to kmsync's rows."""
    rows = BROKER_WARM_UP_ROUNDS * stack.config.capacity_rows
    await upload_report(stack, engagement_csv(rows, "jit"), "warm-up", "1_brokerwarmup", SYSTEM_CLOCK.now())
    if not await wait_until(lambda: follower.count(WARM_UP_INSTANCE) >= 2 * rows, stack.config.section_timeout_seconds,
                            stack):
        raise RuntimeError(f"the broker's warm-up rows did not all reach Marketo: {follower.count(WARM_UP_INSTANCE)} "
                           f"of {2 * rows} operations")


# -- 1 + 2a: the backlog ----------------------------------------------------------------------------
async def backlog_phase(stack: Stack, admin: SandboxAdmin, follower: ResultsFollower, cfg: BenchConfig,
                        tag: str, n_ops: int, external_share: float | None
                        ) -> tuple[BudgetPhase, dict[str, dict[str, int]], float, float]:
    munchkin = EFFICIENCY_INSTANCE
    ops = backlog(n_ops, munchkin, tag, SYSTEM_CLOCK.now())
    op_ids = {op.op_id for op in ops}
    before = await admin.by_endpoint(munchkin)
    client_before = await admin.by_client(munchkin, CLIENT_ID)
    records_before = await sink_records_written(stack, munchkin)
    stop = asyncio.Event()
    external: ExternalClient | None = None
    external_task: asyncio.Task[object] | None = None
    if external_share is not None:
        external = ExternalClient(stack.sandbox.instance_url(munchkin) if stack.sandbox else "", EXTERNAL_CLIENT_ID,
                                  EXTERNAL_CLIENT_SECRET, external_share * INSTANCE_RATE_LIMIT, RATE_WINDOW_SECONDS)
        external_task = asyncio.create_task(external.run(stop))
    start = SYSTEM_CLOCK.time()
    await produce_ops(stack.bootstrap, ops)
    done = await wait_until(lambda: op_ids <= follower.outcomes(munchkin).keys(), cfg.section_timeout_seconds,
                            stack)
    end = SYSTEM_CLOCK.time()
    stop.set()
    if external_task is not None and external is not None:
        await external_task
        await external.aclose()
    if not done:
        raise RuntimeError(f"backlog {tag}: {len(op_ids - follower.outcomes(munchkin).keys())} of {n_ops} "
                           f"operations without an outcome after {cfg.section_timeout_seconds:.0f}s")
    delta = diff_counts(await admin.by_endpoint(munchkin), before)
    client_delta = diff_counts(await admin.by_client(munchkin, CLIENT_ID), client_before)
    records = await sink_records_written(stack, munchkin) - records_before
    sink_times, all_times = await admin.call_times(munchkin, CLIENT_ID), await admin.call_times(munchkin)
    sink_usage = rolling_window_usage(sink_times, RATE_WINDOW_SECONDS, start, end)
    all_usage = rolling_window_usage(all_times, RATE_WINDOW_SECONDS, start, end)
    configured = cfg.sink_share * INSTANCE_RATE_LIMIT
    ext_report = None
    if external is not None and external_share is not None:
        ext_codes = external.stats.codes
        ext_usage = rolling_window_usage(await admin.call_times(munchkin, EXTERNAL_CLIENT_ID),
                                         RATE_WINDOW_SECONDS, start, end)
        ext_report = ExternalReport(target_share=external_share, calls=external.stats.calls,
                                    mean_per_window=round(ext_usage.mean, 2),
                                    throttled_606=ext_codes.get("606", 0), throttled_615=ext_codes.get("615", 0))
    phase = BudgetPhase(
        ops=n_ops, seconds=round(end - start, 2), instance_limit_per_window=INSTANCE_RATE_LIMIT,
        window_seconds=RATE_WINDOW_SECONDS, configured_per_window=configured, sink_calls=sink_usage.calls,
        sink_peak_per_window=sink_usage.peak, sink_mean_per_window=round(sink_usage.mean, 2),
        peak_share_of_configured=round(sink_usage.peak / configured, 3),
        mean_share_of_configured=round(sink_usage.mean / configured, 3),
        peak_share_of_instance=round(sink_usage.peak / INSTANCE_RATE_LIMIT, 3),
        instance_peak_per_window=all_usage.peak,
        sink_606=count_calls(client_delta, codes=["606"]), sink_615=count_calls(client_delta, codes=["615"]),
        external=ext_report, outcomes=_outcome_counts(follower, munchkin, op_ids),
        calls_series=calls_series(sink_times, all_times if external is not None else None, start, end),
    )
    return phase, delta, records, end - start


async def efficiency(stack: Stack, admin: SandboxAdmin, follower: ResultsFollower, cfg: BenchConfig,
                     alone: tuple[BudgetPhase, dict[str, dict[str, int]], float, float]) -> Efficiency:
    phase, delta, records, seconds = alone
    write_calls = count_calls(delta, writes_only=True)
    kmsync = KmsyncWrites(
        ops=cfg.backlog_ops, write_calls=write_calls, records_written=int(records),
        records_per_call=round(records / write_calls, 2), ops_per_call=round(cfg.backlog_ops / write_calls, 2),
        calls_by_endpoint=delta, seconds=round(seconds, 2), outcomes=phase.outcomes)
    kmsync_calls = count_calls(delta)
    # The naive writer on the same backlog, same sandbox, an instance whose rate limit is lifted.
    ops = backlog(cfg.backlog_ops, NAIVE_INSTANCE, "naive", SYSTEM_CLOCK.now())
    before = await admin.by_endpoint(NAIVE_INSTANCE)
    assert stack.sandbox is not None
    writer = NaiveWriter(stack.sandbox.instance_url(NAIVE_INSTANCE), CLIENT_ID, CLIENT_SECRET, concurrency=10)
    try:
        stats = await writer.run(ops)
    finally:
        await writer.aclose()
    naive_delta = diff_counts(await admin.by_endpoint(NAIVE_INSTANCE), before)
    n_writes = count_calls(naive_delta, writes_only=True)
    n_calls = count_calls(naive_delta)
    naive = NaiveWrites(
        ops=cfg.backlog_ops, write_calls=n_writes, other_calls=n_calls - n_writes,
        records_per_call=round(cfg.backlog_ops / n_writes, 3), seconds=round(stats.seconds, 2),
        failed_ops=stats.failed_ops,
        at_rate_limit=AtRateLimit(
            calls=n_calls, seconds_at_rate_limit=round(n_calls / INSTANCE_RATE_LIMIT * RATE_WINDOW_SECONDS, 1),
            share_of_daily_quota=round(n_calls / DAILY_QUOTA, 3)))
    return Efficiency(
        backlog_ops=cfg.backlog_ops, kmsync=kmsync, naive=naive,
        call_reduction=round(n_calls / kmsync_calls, 1),
        method=(
            f"Both writers sent all {cfg.backlog_ops:,} operations to the same sandbox process. kmsync under the "
            f"real limits ({INSTANCE_RATE_LIMIT} calls/{RATE_WINDOW_SECONDS:.0f} s, share {cfg.sink_share}); the "
            "naive writer on an instance with the rate limit lifted so it ends within the run (10 attendees at a "
            "time); its at_rate_limit figures are its measured calls at the full instance rate limit."))


# -- 3: latency ----------------------------------------------------------------------------------
async def trickle(stack: Stack, event: str, entry_id: str, tag: str, rows_per_tick: int, ticks: int) -> None:
    """A live stream: ``rows_per_tick`` engagement rows posted to ingest each second for ``ticks`` seconds,
    each upload with exported_at = now (Kaltura's source_time)."""
    next_at = SYSTEM_CLOCK.monotonic()
    for tick in range(ticks):
        csv = engagement_csv(rows_per_tick, tag, first=tick * rows_per_tick)
        await upload_report(stack, csv, event, entry_id, SYSTEM_CLOCK.now())
        next_at += 1.0
        await asyncio.sleep(max(0.0, next_at - SYSTEM_CLOCK.monotonic()))  # pacing the live rate, not synchronisation


def live_rate(requested: float, capacity_events_per_second: float) -> int:
    """Rows per second for the live stream: the requested rate, at most half the measured capacity."""
    return max(1, math.floor(min(requested, capacity_events_per_second / 2)))


#: Section 3's trickle tags: attendees who registered before the session (the case the target is for) and
#: walk-ins kmsync has never seen (each of their windows first learns lead ids: one call more).
REGISTERED_TAG, WALK_IN_TAG = "live", "walkin"


async def register(stack: Stack, follower: ResultsFollower, cfg: BenchConfig, munchkin: str, tag: str,
                   people: int) -> None:
    """The trickle's attendees registered before their session, as at a real event (registration comes
    first, then attendance): each one's lead upsert and Registered status, as transform emits them for a
    registration, written and decided before the stream starts. The sink then knows their lead ids."""
    at = SYSTEM_CLOCK.now()
    ops = [op for i in range(people) for op in attendee_ops(i, munchkin, tag, at)[:2]]
    op_ids = {op.op_id for op in ops}
    await produce_ops(stack.bootstrap, ops)
    if not await wait_until(lambda: op_ids <= follower.outcomes(munchkin).keys(), cfg.section_timeout_seconds,
                            stack):
        raise RuntimeError(f"latency: {len(op_ids - follower.outcomes(munchkin).keys())} of {len(op_ids)} "
                           "registrations had no outcome")


@dataclass
class _Trickled:
    outcomes: list[RecordOutcome]
    start: float
    end: float

    def seconds(self) -> list[float]:
        return [(o.decided_at - o.source_time).total_seconds() for o in self.outcomes]


async def _trickle_outcomes(stack: Stack, follower: ResultsFollower, cfg: BenchConfig, munchkin: str, tag: str,
                            rows_per_tick: int, ticks: int) -> _Trickled:
    """One live stream (``trickle``) and its outcomes: each final engagement row gives one custom object and
    one custom activity."""
    already = set(follower.outcomes(munchkin))
    start = SYSTEM_CLOCK.time()
    await trickle(stack, "latency", f"1_{tag}", tag, rows_per_tick, ticks)
    expected = 2 * ticks * rows_per_tick

    def new() -> list[str]:
        return [k for k in follower.outcomes(munchkin) if k not in already]

    if not await wait_until(lambda: len(new()) >= expected, cfg.section_timeout_seconds, stack):
        raise RuntimeError(f"latency ({tag}): {len(new())} of {expected} outcomes arrived")
    return _Trickled([follower.outcomes(munchkin)[k] for k in new()], start, SYSTEM_CLOCK.time())


async def latency(stack: Stack, admin: SandboxAdmin, follower: ResultsFollower, cfg: BenchConfig,
                  capacity_events_per_second: float) -> Latency:
    """Section 3: registered attendees' engagement rows streamed live (the target), then walk-ins for half
    as long (reported beside it)."""
    munchkin = EFFICIENCY_INSTANCE
    rows_per_tick = live_rate(cfg.latency_rows_per_second, capacity_events_per_second)
    ticks = max(1, round(cfg.latency_seconds))
    await register(stack, follower, cfg, munchkin, REGISTERED_TAG, ticks * rows_per_tick)
    # Registration comes well before a session: the stream starts once the registrations' calls (and the
    # sections' before them) have left the instance's rolling window, with the budget a session has.
    await asyncio.sleep(cfg.latency_quiet_seconds)  # the budget's window passing, not synchronisation
    live = await _trickle_outcomes(stack, follower, cfg, munchkin, REGISTERED_TAG, rows_per_tick, ticks)
    by_kind: dict[str, list[float]] = {}
    for o, s in zip(live.outcomes, live.seconds(), strict=True):
        by_kind.setdefault(o.kind, []).append(s)
    sink_times = await admin.call_times(munchkin, CLIENT_ID)
    usage = rolling_window_usage(sink_times, RATE_WINDOW_SECONDS, live.start, live.end)
    walk_in = await _trickle_outcomes(stack, follower, cfg, munchkin, WALK_IN_TAG, rows_per_tick,
                                      max(1, ticks // 2))
    return Latency(
        requested_rows_per_second=cfg.latency_rows_per_second, rows_per_second=float(rows_per_tick),
        seconds=float(ticks), rows=ticks * rows_per_tick, end_to_end=_dist(distribution(live.seconds())),
        by_kind={k: _dist(distribution(v)) for k, v in by_kind.items()}, calls_per_window_peak=usage.peak,
        calls_series=calls_series(sink_times, None, live.start, live.end),
        walk_in=_dist(distribution(walk_in.seconds())), walk_in_seconds=float(max(1, ticks // 2)),
        path=("attendees registered first (their lead upserts and Registered statuses decided before the stream, "
              "as at a real event); then report 4021 CSV posted to ingest each second with exported_at = now "
              "(Kaltura's source_time) → kaltura.session-engagement.v1 → transform → marketo.ops.v1 → sink "
              "(adaptive windows: a custom object call and a custom activity call per window) → Marketo accepted; "
              "decided_at from marketo.results.v1. walk_in: the same stream for people kmsync never saw (each "
              "window first upserts their leads for ids: three calls)"))


def steady_rate(times: list[float]) -> float:
    """Items per second between the 10th and 90th percentile of their (sorted) completion times."""
    if len(times) < 10:
        return 0.0
    low, high = int(len(times) * 0.1), int(len(times) * 0.9)
    span = times[high] - times[low]
    return (high - low) / span if span > 0 else 0.0


# -- 4: capacity ---------------------------------------------------------------------------------
async def _until_through(stack: Stack, follower: ResultsFollower, munchkin: str, expected: int,
                         ops_size: Callable[[], Awaitable[int]], ops_before: int, start: float,
                         within: float) -> tuple[float | None, float]:
    """Wait until ``expected`` operations have an outcome (or ``within`` seconds). Returns when
    transform had put ``expected`` more operations on marketo.ops.v1 (None: not yet) and when the
    wait ended, both in seconds since ``start``."""
    transform_done: float | None = None
    while SYSTEM_CLOCK.monotonic() < start + within:
        stack.check_alive()
        if transform_done is None and await ops_size() - ops_before >= expected:
            transform_done = SYSTEM_CLOCK.monotonic() - start
        if follower.count(munchkin) >= expected:
            break
        await asyncio.sleep(0.2)  # polling progress with a deadline
    elapsed = SYSTEM_CLOCK.monotonic() - start
    if transform_done is None and await ops_size() - ops_before >= expected:
        transform_done = elapsed
    return transform_done, elapsed


#: Seconds the capacity section first watches every process while nothing is sent.
IDLE_SECONDS = 5.0


async def idle_cpu(stack: Stack, seconds: float = IDLE_SECONDS) -> dict[str, float]:
    """Each process's CPU seconds per second over ``seconds`` of no traffic."""
    before = cpu_seconds(stack.cpu_pids())
    t0 = SYSTEM_CLOCK.monotonic()
    await asyncio.sleep(seconds)  # the measurement's interval, not synchronisation
    after = cpu_seconds(stack.cpu_pids())
    elapsed = SYSTEM_CLOCK.monotonic() - t0
    return {name: round(used / elapsed, 4) for name, used in sorted(spent(before, after).items())}


async def capacity(stack: Stack, admin: SandboxAdmin, follower: ResultsFollower, cfg: BenchConfig) -> Capacity:
    """Section 4, with each process's CPU over the section and the passthrough floor after it."""
    munchkin = CAPACITY_INSTANCE
    rows = cfg.capacity_rows
    expected = 2 * rows
    before = await admin.by_endpoint(munchkin)
    csv = engagement_csv(rows, "cap")
    # One consumer polls the ops topic's end offsets for the whole section (a consumer per poll
    # would add a connection's worth of broker CPU to what the section measures).
    async with topic_sizes(stack.bootstrap, MARKETO_OPS) as ops_size:
        ops_before = await ops_size()
        idle = await idle_cpu(stack)
        start_ms = int(SYSTEM_CLOCK.time() * 1000)
        cpu_before = cpu_seconds(stack.cpu_pids())
        start = SYSTEM_CLOCK.monotonic()
        await upload_report(stack, csv, "capacity", "1_capacity", SYSTEM_CLOCK.now())
        stages = {"ingest": round(SYSTEM_CLOCK.monotonic() - start, 2)}
        transform_done, elapsed = await _until_through(stack, follower, munchkin, expected, ops_size, ops_before,
                                                       start, cfg.section_timeout_seconds)
        cpu_used = spent(cpu_before, cpu_seconds(stack.cpu_pids()))
    done = follower.count(munchkin) >= expected
    if transform_done is not None:
        stages["transform"] = round(transform_done, 2)
    if done:
        stages["sink"] = round(elapsed, 2)
    handled = follower.count(munchkin)
    delta = diff_counts(await admin.by_endpoint(munchkin), before)
    decided = sorted(o.decided_at.timestamp() for o in follower.outcomes(munchkin).values())
    cpu = {name: round(per_10k(seconds, rows), 3) for name, seconds in sorted(cpu_used.items())}
    floor = await passthrough_floor(stack, start_ms)
    kmsync_cpu = kmsync_total(cpu)
    return Capacity(
        cpu_per_10k_rows=cpu, idle_cpu_per_second=idle, kmsync_cpu_per_10k_rows=round(kmsync_cpu, 3),
        passthrough=floor,
        cpu_multiple_of_passthrough=round(multiple(kmsync_cpu, floor.total_cpu_per_10k), 2),
        steady_events_per_second=round(steady_rate(decided) / 2, 1),
        rows=rows, ops=handled, completed=done, seconds=round(elapsed, 2),
        events_per_second=round((rows if done else handled / 2) / elapsed, 1),
        ops_per_second=round(handled / elapsed, 1), stage_seconds=stages,
        write_calls=count_calls(delta, writes_only=True), peak_rss_mib=stack.peak_rss())


async def passthrough_floor(stack: Stack, since_ms: int) -> Passthrough:
    """The bare passthrough (kmsync_bench.passthrough) on a copy of the engagement records ingest
    wrote since ``since_ms``: the same number of records, the same keys and values."""
    records = [(r.key, r.value) for r in await read_to_end(stack.bootstrap, SESSION_ENGAGEMENT.name, within=120)
               if r.timestamp >= since_ms]
    if not records:
        raise RuntimeError("capacity: no engagement records to pass through")
    partitions = bare.partitions()
    await bare.fill(stack.bootstrap, records, partitions)
    assert stack.broker is not None
    run = await bare.run_process(stack.bootstrap, len(records), partitions, stack.broker.process.pid)
    client, broker = per_10k(run.client_cpu_seconds, run.records), per_10k(run.broker_cpu_seconds, run.records)
    return Passthrough(records=run.records, seconds=round(run.seconds, 3),
                       records_per_second=round(run.records / run.seconds, 1),
                       client_cpu_per_10k=round(client, 3), broker_cpu_per_10k=round(broker, 3),
                       total_cpu_per_10k=round(client + broker, 3))


# -- 5: backfill ---------------------------------------------------------------------------------
def rest_equivalent(rows: int, attendees: int) -> RestEquivalent:
    """REST at 300 records per call: one lead look-up per attendee, one custom object per row."""
    leads, objects = math.ceil(attendees / REST_BATCH), math.ceil(rows / REST_BATCH)
    total = leads + objects
    return RestEquivalent(lead_lookups=leads, custom_objects=objects, total=total,
                          custom_activities_if_enabled=objects,
                          seconds_at_rate_limit=round(total / INSTANCE_RATE_LIMIT * RATE_WINDOW_SECONDS, 1))


def session_entry_id(session: int) -> str:
    return f"1_backfill{session:03d}"


#: The session of the live trickle beside the backfill (same event and instance, the live lane).
LIVE_BESIDE_ENTRY = "1_livebf"
#: A backfill row's email (workload.engagement_row with tag "bf") or session in a call's body.
_BACKFILL_BODY = re.compile(r'"bf\d+@bench\.example"|"1_backfill\d{3}"')


#: A live trickle's row (tags "lva"/"lvd", session LIVE_BESIDE_ENTRY) in a call's body.
_LIVE_BODY = re.compile(r'"lv[ad]\d+@bench\.example"|"1_livebf"')


def live_call_counts(log: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per endpoint and code, the calls of the request log that carried the live trickle's rows."""
    out: dict[str, dict[str, int]] = {}
    for e in log:
        if _LIVE_BODY.search(str(e.get("body", ""))):
            codes = out.setdefault(str(e["endpoint"]), {})
            codes[str(e["code"])] = codes.get(str(e["code"]), 0) + 1
    return out


def is_backfill_call(entry: dict[str, Any]) -> bool:
    """A call of the backfill lane, from the sandbox's request log: a bulk import call (only the backfill's
    windows reach the bulk threshold) or a REST write carrying the backfill's rows (its emails or sessions)."""
    endpoint = str(entry.get("endpoint", ""))
    if is_bulk(endpoint):
        return True
    return is_write(endpoint) and bool(_BACKFILL_BODY.search(str(entry.get("body", ""))))


def write_backfill_files(stack: Stack, rows: int, sessions: int) -> list[Path]:
    """One report 4021 CSV per session, the same attendees in each."""
    paths = []
    for s in range(sessions):
        path = stack.work / f"Report_4021_{PARTNER_ID}_{session_entry_id(s)}.csv"
        with path.open("w", encoding="utf-8") as fh:
            fh.writelines(engagement_csv_lines(rows // sessions, "bf"))
        paths.append(path)
    return paths


async def load_files(stack: Stack, paths: list[Path]) -> float:
    """Each file through the real `kmsync backfill FILE` command, one after the other; seconds taken."""
    t0 = SYSTEM_CLOCK.monotonic()
    for s, path in enumerate(paths):
        argv, env = stack.backfill_argv(path, session_entry_id(s))
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"kmsync backfill {path.name} exited with {proc.returncode}: {err.decode()[-1000:]}")
        path.unlink()
    return SYSTEM_CLOCK.monotonic() - t0


async def live_beside(stack: Stack, follower: ResultsFollower, cfg: BenchConfig, tag: str) -> Dist:
    """A live trickle on the backfill's instance (cfg.latency_rows_per_second for cfg.latency_seconds):
    its rows' latency, Kaltura export time → Marketo accepted (one custom object per row)."""
    munchkin = BACKFILL_INSTANCE
    rows_per_tick, ticks = max(1, round(cfg.latency_rows_per_second)), max(1, round(cfg.latency_seconds))
    already = set(follower.outcomes(munchkin))
    await trickle(stack, "backfill", LIVE_BESIDE_ENTRY, tag, rows_per_tick, ticks)
    expected = rows_per_tick * ticks

    def new() -> list[str]:
        return [k for k in follower.outcomes(munchkin) if k not in already]

    if not await wait_until(lambda: len(new()) >= expected, cfg.section_timeout_seconds, stack):
        raise RuntimeError(f"live beside the backfill ({tag}): {len(new())} of {expected} outcomes arrived")
    outcomes = [follower.outcomes(munchkin)[k] for k in new()]
    return _dist(distribution([(o.decided_at - o.source_time).total_seconds() for o in outcomes]))


#: Seconds between two probes of a process's HTTP answer time (responsiveness beside the backfill).
PROBE_SECONDS = 0.25


async def probe(urls: dict[str, str], stop: asyncio.Event) -> dict[str, list[float]]:
    """Each process's answer time to a trivial GET (sink and transform: /healthz, served on their event loop;
    the sandbox: /_sandbox/health), every PROBE_SECONDS until ``stop``: a process busy with a backfill's
    work shows as answer times of seconds, and every call or record it handles meanwhile waits as long."""
    times: dict[str, list[float]] = {name: [] for name in urls}
    async with httpx.AsyncClient(timeout=60) as http:
        while not stop.is_set():
            for name, url in urls.items():
                t = SYSTEM_CLOCK.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    await http.get(url)
                    times[name].append(SYSTEM_CLOCK.monotonic() - t)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_SECONDS)
    return times


def probe_urls(stack: Stack) -> dict[str, str]:
    assert stack.sandbox is not None
    return {"sink": f"{stack.url('sink')}/healthz", "transform": f"{stack.url('transform')}/healthz",
            "marketo-sandbox": f"{stack.sandbox.base_url}/_sandbox/health"}


async def probed_live(stack: Stack, follower: ResultsFollower, cfg: BenchConfig,
                      tag: str) -> tuple[Dist, dict[str, Dist]]:
    """live_beside, with each process's answer times (probe) while the trickle runs and its outcomes arrive."""
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(probe_urls(stack), stop))
    try:
        live = await live_beside(stack, follower, cfg, tag)
    finally:
        stop.set()
    return live, {name: _dist(distribution(v)) for name, v in (await probing).items() if v}


async def backfill_started(admin: SandboxAdmin, loader: asyncio.Task[float], within: float, stack: Stack) -> None:
    """Until the backfill's first call reached the instance (or its loader ended, or ``within`` seconds)."""
    deadline = SYSTEM_CLOCK.monotonic() + within
    while not loader.done() and SYSTEM_CLOCK.monotonic() < deadline:
        if any(is_backfill_call(e) for e in await admin.request_log(BACKFILL_INSTANCE, limit=50)):
            return
        stack.check_alive()
        await asyncio.sleep(1.0)  # polling a condition with a deadline


async def backfill(stack: Stack, admin: SandboxAdmin, follower: ResultsFollower, cfg: BenchConfig,
                   deadline: float) -> Backfill:
    """Section 5, live during backfill: a live trickle on the backfill's instance alone, then the backfill
    (``kmsync backfill`` of cfg.backfill_rows) with the same trickle once its first calls are out.
    ``deadline`` (SYSTEM_CLOCK.monotonic()) ends the wait for the backfill's outcomes: the run's budget."""
    munchkin, rows = BACKFILL_INSTANCE, cfg.backfill_rows
    paths = write_backfill_files(stack, rows, cfg.backfill_sessions)
    alone, answers_alone = await probed_live(stack, follower, cfg, "lva")
    before = await admin.by_endpoint(munchkin)
    start, t0 = SYSTEM_CLOCK.time(), SYSTEM_CLOCK.monotonic()
    loader = asyncio.create_task(load_files(stack, paths))
    try:
        await backfill_started(admin, loader, 120.0, stack)
        during, answers_during = await probed_live(stack, follower, cfg, "lvd")
        loaded = await loader
    finally:
        loader.cancel()
    done = await wait_until(lambda: follower.count(munchkin) >= rows,
                            max(1.0, deadline - SYSTEM_CLOCK.monotonic()), stack)
    elapsed = SYSTEM_CLOCK.monotonic() - t0
    upstream = await upstream_latency(stack)
    log = [e for e in await admin.request_log(munchkin) if start <= float(e["at"])]
    # The instance's calls since the backfill started, less those that carried the live trickle's rows.
    delta = diff_counts(diff_counts(await admin.by_endpoint(munchkin), before), live_call_counts(log))
    return backfill_report(cfg, follower, delta, log,
                           Timing(start, SYSTEM_CLOCK.time(), elapsed, loaded, done),
                           LiveBeside(alone, during, upstream.get("lva"), upstream.get("lvd"), answers_alone,
                                      answers_during), stack.peak_rss())


@dataclass(frozen=True)
class Timing:
    start: float
    end: float
    elapsed: float
    loaded: float
    done: bool


@dataclass(frozen=True)
class LiveBeside:
    alone: Dist
    during: Dist
    #: The ingest + transform part of each (Kaltura export time → operation emitted on marketo.ops.v1).
    alone_upstream: Dist | None = None
    during_upstream: Dist | None = None
    #: Each process's answer times to a trivial GET meanwhile (probe).
    answers_alone: dict[str, Dist] | None = None
    answers_during: dict[str, Dist] | None = None


async def upstream_latency(stack: Stack) -> dict[str, Dist]:
    """Per live trickle ("lva", "lvd"): Kaltura export time → transform emitted the row's operation, from
    marketo.ops.v1 (the rest of the live latency is the sink's)."""
    seconds: dict[str, list[float]] = {"lva": [], "lvd": []}
    for r in await read_to_end(stack.bootstrap, MARKETO_OPS.name, within=120):
        if r.key != BACKFILL_INSTANCE.encode() or r.value is None or LIVE_BESIDE_ENTRY.encode() not in r.value:
            continue
        op = decode(MARKETO_OPS, r.value)
        tag = op.email[:3]
        if tag in seconds:
            seconds[tag].append((op.emitted_at - op.source_time).total_seconds())
    return {tag: _dist(distribution(v)) for tag, v in seconds.items() if v}


def backfill_report(cfg: BenchConfig, follower: ResultsFollower, delta: dict[str, dict[str, int]],
                    log: list[dict[str, Any]], t: Timing, live: LiveBeside, rss: dict[str, float]) -> Backfill:
    """``delta``: the backfill's calls (the live trickle's taken out); ``log``: the instance's request log since
    the backfill started, live calls included (the instance's peak)."""
    munchkin, rows, sessions = BACKFILL_INSTANCE, cfg.backfill_rows, cfg.backfill_sessions
    attendees = rows // sessions
    calls_total = count_calls(delta)
    submits = sum(n for ep, codes in delta.items() if ep.startswith("POST /bulk/") for n in codes.values())
    bulk_other = sum(n for ep, codes in delta.items() if is_bulk(ep) for n in codes.values()) - submits
    rest_writes = sum(n for ep, codes in delta.items() if is_write(ep) and not is_bulk(ep) for n in codes.values())
    sink_times = [float(e["at"]) for e in log if e.get("clientId") == CLIENT_ID and not is_identity(e["endpoint"])]
    backfill_times = [float(e["at"]) for e in log if is_backfill_call(e)]
    usage = rolling_window_usage(sink_times, RATE_WINDOW_SECONDS, t.start, t.end)
    handled = follower.count(munchkin)
    rest = rest_equivalent(rows, attendees)
    note = (f"{sessions} report 4021 CSVs (one per session, {attendees:,} attendees each, the same attendees in "
            "every session) loaded with the real `kmsync backfill FILE` command (the backfill lane) into an event "
            "that writes custom objects only (the seed's recommended setup; custom activities have no bulk import "
            f"and would add {rest.custom_activities_if_enabled:,} REST calls). The instance has Marketo's rolling "
            f"limits, share {cfg.backfill_share}, backfill_share {cfg.backfill_lane_share}, bulk_min_records "
            f"{cfg.backfill_bulk_min_records:,}: the sink learns lead ids over REST (email-only upserts, 300 per "
            "call) and imports the custom objects with the Bulk API; the sandbox finishes an import in 1 s + 0.1 ms "
            "per row (real Marketo: minutes, which adds status polls, not submissions). Live: "
            f"{cfg.latency_rows_per_second:g} engagement rows/s for {cfg.latency_seconds:g} s posted to ingest for "
            "the same event and instance (the live lane), once alone and once after the backfill's first call.")
    if not t.done:
        note += f" INCOMPLETE: {handled:,} of {rows:,} rows had an outcome when the run's time budget ran out."
    if len(log) >= REQUEST_LOG_SIZE:
        note += f" The sandbox's request log held only its last {REQUEST_LOG_SIZE:,} calls: peaks may be low."
    return Backfill(
        rows=rows, sessions=sessions, attendees=attendees, completed=t.done, seconds=round(t.elapsed, 2),
        load_seconds=round(t.loaded, 2), rows_per_second=round(handled / t.elapsed, 1),
        outcomes=follower.status_counts(munchkin), calls_by_endpoint=delta, bulk_submit_calls=submits,
        bulk_other_calls=bulk_other, rest_write_calls=rest_writes, calls_total=calls_total, rest_equivalent=rest,
        call_reduction=round(rest.total / max(1, calls_total), 1), peak_calls_per_window=usage.peak,
        throttled_606=count_calls(delta, codes=["606"]), throttled_615=count_calls(delta, codes=["615"]),
        peak_rss_mib=rss, note=note, calls_series=calls_series(sink_times, None, t.start, t.end),
        live_alone=live.alone, live_during=live.during,
        live_alone_upstream=live.alone_upstream, live_during_upstream=live.during_upstream,
        answer_seconds_alone=live.answers_alone, answer_seconds_during=live.answers_during,
        backfill_peak_calls_per_window=rolling_window_usage(backfill_times, RATE_WINDOW_SECONDS, t.start, t.end).peak,
        backfill_cap_per_window=backfill_cap(cfg))
