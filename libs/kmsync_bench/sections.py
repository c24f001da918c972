"""The five measurements. Each returns its report section; numbers come from the sandbox's admin
counts, marketo.results.v1 and the services' /metrics, all measured in this run."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from kmsync_bench.config import (
    BACKFILL_INSTANCE,
    BACKFILL_TARGET_ROWS,
    CAPACITY_INSTANCE,
    DAILY_QUOTA,
    EFFICIENCY_INSTANCE,
    INSTANCE_RATE_LIMIT,
    NAIVE_INSTANCE,
    RATE_WINDOW_SECONDS,
    REST_BATCH,
    BenchConfig,
)
from kmsync_bench.external import ExternalClient
from kmsync_bench.kafka_io import ResultsFollower, produce_ops, topic_size
from kmsync_bench.naive import NaiveWriter
from kmsync_bench.report import (
    Backfill,
    BudgetPhase,
    BulkPath,
    Capacity,
    Dist,
    Efficiency,
    KmsyncWrites,
    Latency,
    NaiveExtrapolation,
    NaiveWrites,
)
from kmsync_bench.report import ExternalClient as ExternalReport
from kmsync_bench.sandbox import (
    CLIENT_ID,
    CLIENT_SECRET,
    EXTERNAL_CLIENT_ID,
    EXTERNAL_CLIENT_SECRET,
    SandboxAdmin,
    count_calls,
    diff_counts,
    is_bulk,
    is_write,
)
from kmsync_bench.stack import EVENT_IDS, Stack
from kmsync_bench.stats import Distribution, distribution, rolling_window_usage
from kmsync_bench.workload import PARTNER_ID, backlog, engagement_csv, engagement_csv_lines
from kmsync_contracts.seed import ENGAGEMENT_OBJECT_API_NAME
from kmsync_contracts.topics import MARKETO_OPS
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.bulk import BulkImporter
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import BulkSettings, LimiterSettings, MarketoSettings


def _dist(d: Distribution) -> Dist:
    return Dist(count=d.count, p50=round(d.p50, 3), p95=round(d.p95, 3), p99=round(d.p99, 3),
                max=round(d.max, 3), mean=round(d.mean, 3))


async def wait_until(cond: Callable[[], bool], within: float, stack: Stack) -> bool:
    """Poll ``cond`` until true or the deadline; fail fast when a service process died."""
    deadline = time.monotonic() + within
    while not cond():
        stack.check_alive()
        if time.monotonic() > deadline:
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
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "kmsync_sink_records_per_call":
            total += sum(s.value for s in family.samples
                         if s.name.endswith("_sum") and s.labels.get("instance") == munchkin)
    return total


async def upload_report(stack: Stack, csv: bytes, event: str, entry_id: str, exported_at: datetime) -> None:
    """POST a report 4021 CSV to ingest, as Kaltura's export lands (answered after Kafka acknowledged)."""
    params = {"partner_id": str(PARTNER_ID), "virtual_event_id": str(EVENT_IDS[event]), "entry_id": entry_id,
              "report_id": "4021", "exported_at": exported_at.isoformat(), "final": "true"}
    async with httpx.AsyncClient(timeout=600) as http:
        resp = await http.post(f"{stack.url('ingest')}/ingest/kaltura/reports", params=params, content=csv,
                               headers={"Content-Type": "text/csv"})
    if resp.status_code != 200:
        raise RuntimeError(f"ingest refused the report: {resp.status_code} {resp.text[:500]}")


async def warm_up(stack: Stack, follower: ResultsFollower) -> None:
    """Five rows end to end, so every service has joined its group before anything is timed."""
    await upload_report(stack, engagement_csv(5, "warm"), "latency", "1_warmup", datetime.now(UTC))
    if not await wait_until(lambda: follower.count(EFFICIENCY_INSTANCE) >= 10, 180, stack):
        raise RuntimeError("the warm-up rows never reached Marketo: the pipeline is not flowing")


# -- 1 + 2a: the backlog ----------------------------------------------------------------------------
async def backlog_phase(stack: Stack, admin: SandboxAdmin, follower: ResultsFollower, cfg: BenchConfig,
                        tag: str, n_ops: int, external_share: float | None
                        ) -> tuple[BudgetPhase, dict[str, dict[str, int]], float, float]:
    munchkin = EFFICIENCY_INSTANCE
    ops = backlog(n_ops, munchkin, tag, datetime.now(UTC))
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
    start = time.time()
    await produce_ops(stack.bootstrap, ops)
    done = await wait_until(lambda: op_ids <= follower.outcomes(munchkin).keys(), cfg.section_timeout_seconds,
                            stack)
    end = time.time()
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
    sink_usage = rolling_window_usage(await admin.call_times(munchkin, CLIENT_ID), RATE_WINDOW_SECONDS, start, end)
    all_usage = rolling_window_usage(await admin.call_times(munchkin), RATE_WINDOW_SECONDS, start, end)
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
    # The naive writer on a subset, same sandbox, an instance whose rate limit is lifted.
    ops = backlog(cfg.naive_ops, NAIVE_INSTANCE, "naive", datetime.now(UTC))
    before = await admin.by_endpoint(NAIVE_INSTANCE)
    assert stack.sandbox is not None
    writer = NaiveWriter(stack.sandbox.instance_url(NAIVE_INSTANCE), CLIENT_ID, CLIENT_SECRET)
    try:
        stats = await writer.run(ops)
    finally:
        await writer.aclose()
    naive_delta = diff_counts(await admin.by_endpoint(NAIVE_INSTANCE), before)
    n_writes = count_calls(naive_delta, writes_only=True)
    n_other = count_calls(naive_delta) - n_writes
    calls_per_op = (n_writes + n_other) / cfg.naive_ops
    extrapolated_calls = math.ceil(calls_per_op * cfg.backlog_ops)
    naive = NaiveWrites(
        measured_ops=cfg.naive_ops, write_calls=n_writes, other_calls=n_other,
        records_per_call=round(cfg.naive_ops / n_writes, 3), seconds=round(stats.seconds, 2),
        failed_ops=stats.failed_ops,
        extrapolated_to_backlog=NaiveExtrapolation(
            ops=cfg.backlog_ops, calls=extrapolated_calls,
            seconds_at_rate_limit=round(extrapolated_calls / INSTANCE_RATE_LIMIT * RATE_WINDOW_SECONDS, 1),
            share_of_daily_quota=round(extrapolated_calls / DAILY_QUOTA, 3)))
    return Efficiency(
        backlog_ops=cfg.backlog_ops, kmsync=kmsync, naive=naive,
        call_reduction=round(extrapolated_calls / kmsync_calls, 1),
        measured_vs_extrapolated=(
            f"kmsync: all {cfg.backlog_ops} operations measured under the real limits "
            f"({INSTANCE_RATE_LIMIT} calls/{RATE_WINDOW_SECONDS:.0f} s, share {cfg.sink_share}). Naive: "
            f"{cfg.naive_ops} operations measured (rate limit lifted so it finishes), calls per operation "
            f"extrapolated linearly to {cfg.backlog_ops}; its wall time is the extrapolated calls at the full "
            f"instance rate limit."))


# -- 3: latency ----------------------------------------------------------------------------------
def live_rate(requested: float, capacity_events_per_second: float) -> int:
    """Rows per second for the live stream: the requested rate, at most half the measured capacity."""
    return max(1, math.floor(min(requested, capacity_events_per_second / 2)))


async def latency(stack: Stack, admin: SandboxAdmin, follower: ResultsFollower, cfg: BenchConfig,
                  capacity_events_per_second: float) -> Latency:
    munchkin = EFFICIENCY_INSTANCE
    rows_per_tick = live_rate(cfg.latency_rows_per_second, capacity_events_per_second)
    ticks = max(1, round(cfg.latency_seconds))
    already = set(follower.outcomes(munchkin))
    start = time.time()
    next_at = time.monotonic()
    for tick in range(ticks):
        csv = engagement_csv(rows_per_tick, "live", first=tick * rows_per_tick)
        await upload_report(stack, csv, "latency", "1_live", datetime.now(UTC))
        next_at += 1.0
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing the live rate, not synchronisation
    rows = ticks * rows_per_tick
    expected = 2 * rows  # each final engagement row: one custom object and one custom activity

    def new() -> list[str]:
        return [k for k in follower.outcomes(munchkin) if k not in already]

    if not await wait_until(lambda: len(new()) >= expected, cfg.section_timeout_seconds, stack):
        raise RuntimeError(f"latency: {len(new())} of {expected} outcomes arrived")
    end = time.time()
    outcomes = [follower.outcomes(munchkin)[k] for k in new()]
    seconds = [(o.decided_at - o.source_time).total_seconds() for o in outcomes]
    by_kind: dict[str, list[float]] = {}
    for o, s in zip(outcomes, seconds, strict=True):
        by_kind.setdefault(o.kind, []).append(s)
    usage = rolling_window_usage(await admin.call_times(munchkin, CLIENT_ID), RATE_WINDOW_SECONDS, start, end)
    return Latency(
        requested_rows_per_second=cfg.latency_rows_per_second, rows_per_second=float(rows_per_tick),
        seconds=float(ticks), rows=rows, end_to_end=_dist(distribution(seconds)),
        by_kind={k: _dist(distribution(v)) for k, v in by_kind.items()}, calls_per_window_peak=usage.peak,
        path=("report 4021 CSV posted to ingest each second with exported_at = now (Kaltura's source_time) → "
              "kaltura.session-engagement.v1 → transform → marketo.ops.v1 → sink (window age limit "
              "5 s) → Marketo accepted; decided_at from marketo.results.v1"))


def steady_rate(times: list[float]) -> float:
    """Items per second between the 10th and 90th percentile of their (sorted) completion times."""
    if len(times) < 10:
        return 0.0
    low, high = int(len(times) * 0.1), int(len(times) * 0.9)
    span = times[high] - times[low]
    return (high - low) / span if span > 0 else 0.0


# -- 4: capacity ---------------------------------------------------------------------------------
async def capacity(stack: Stack, admin: SandboxAdmin, follower: ResultsFollower, cfg: BenchConfig) -> Capacity:
    munchkin = CAPACITY_INSTANCE
    rows = cfg.capacity_rows
    expected = 2 * rows
    ops_topic = MARKETO_OPS
    ops_before = await topic_size(stack.bootstrap, ops_topic)
    before = await admin.by_endpoint(munchkin)
    csv = engagement_csv(rows, "cap")
    start = time.monotonic()
    await upload_report(stack, csv, "capacity", "1_capacity", datetime.now(UTC))
    stages = {"ingest": round(time.monotonic() - start, 2)}
    deadline = start + cfg.section_timeout_seconds
    transform_done: float | None = None
    while time.monotonic() < deadline:
        stack.check_alive()
        if transform_done is None and await topic_size(stack.bootstrap, ops_topic) - ops_before >= expected:
            transform_done = time.monotonic() - start
        if follower.count(munchkin) >= expected:
            break
        await asyncio.sleep(0.2)  # polling progress with a deadline
    elapsed = time.monotonic() - start
    done = follower.count(munchkin) >= expected
    if transform_done is None and await topic_size(stack.bootstrap, ops_topic) - ops_before >= expected:
        transform_done = elapsed
    if transform_done is not None:
        stages["transform"] = round(transform_done, 2)
    if done:
        stages["sink"] = round(elapsed, 2)
    handled = follower.count(munchkin)
    delta = diff_counts(await admin.by_endpoint(munchkin), before)
    decided = sorted(o.decided_at.timestamp() for o in follower.outcomes(munchkin).values())
    return Capacity(
        steady_events_per_second=round(steady_rate(decided) / 2, 1),
        rows=rows, ops=handled, completed=done, seconds=round(elapsed, 2),
        events_per_second=round((rows if done else handled / 2) / elapsed, 1),
        ops_per_second=round(handled / elapsed, 1), stage_seconds=stages,
        write_calls=count_calls(delta, writes_only=True), peak_rss_mib=stack.peak_rss())


# -- 5: backfill ---------------------------------------------------------------------------------
def budget_rows_per_second(share: float) -> float:
    """Engagement rows per second the REST budget carries: the limiter's calls per second (share of
    100 / 20 s, minus its 10 calls of headroom) × 300 records, each row needing 3 records (an
    email-only lead upsert, a custom object, an activity)."""
    calls_per_second = max(1.0, INSTANCE_RATE_LIMIT * share - 10) / RATE_WINDOW_SECONDS
    return calls_per_second * REST_BATCH / 3


def rows_that_fit(requested: int, events_per_second: float, seconds: float,
                  budget_per_second: float = math.inf) -> int:
    """The backfill rows this run loads: the requested count, or what the slower of the measured
    pipeline capacity and the API budget carries in ``seconds``."""
    return max(10, min(requested, math.floor(min(events_per_second, budget_per_second) * seconds)))


async def bulk_path(stack: Stack, admin: SandboxAdmin, cfg: BenchConfig, entry_id: str) -> BulkPath:
    """The backfill's engagement records again, through kmsync_marketo's Bulk custom object import."""
    munchkin = BACKFILL_INSTANCE
    assert stack.sandbox is not None
    dump = await admin.dump(munchkin)
    skip = {"marketoGUID", "createdAt", "updatedAt"}
    records = [{**{k: v for k, v in r.items() if k not in skip and v is not None}, "entry_id": f"{entry_id}_bulk"}
               for r in dump["customObjects"].get(ENGAGEMENT_OBJECT_API_NAME, []) if r.get("entry_id") == entry_id]
    if not records:
        raise RuntimeError("bulk path: the backfill left no engagement records to re-import")
    settings = MarketoSettings(
        endpoint=stack.sandbox.instance_url(munchkin), client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET),
        munchkin_id=munchkin, allow_insecure_http=True, limits=LimiterSettings(share=cfg.backfill_share),
        bulk=BulkSettings(poll_initial_seconds=1.0, poll_factor=1.5, poll_max_seconds=5.0))
    before = await admin.by_endpoint(munchkin)
    start = time.monotonic()
    async with MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry()) as client:
        result = await BulkImporter(client).import_custom_objects(ENGAGEMENT_OBJECT_API_NAME, records,
                                                                  dedupe_fields=("entry_id", "personId"))
    elapsed = time.monotonic() - start
    delta = diff_counts(await admin.by_endpoint(munchkin), before)
    submits = sum(n for ep, codes in delta.items() if ep.startswith("POST /bulk/") for n in codes.values())
    bytes_per_row = csv_bytes(records) / len(records)
    target_files = math.ceil(BACKFILL_TARGET_ROWS * bytes_per_row / settings.bulk.max_file_bytes)
    return BulkPath(
        object_name=ENGAGEMENT_OBJECT_API_NAME, rows=len(records), seconds=round(elapsed, 2), calls_by_endpoint=delta,
        calls=count_calls(delta), submit_calls=submits, rows_failed=sum(1 for o in result.outcomes if not o.ok),
        rest_calls_at_300=math.ceil(len(records) / REST_BATCH), csv_bytes_per_row=round(bytes_per_row, 1),
        extrapolated_submits_for_target=target_files,
        note=("kmsync_marketo.bulk.BulkImporter on the records the backfill wrote (entry_id suffixed _bulk so "
              "they are new rows), polling every 1-5 s. The sandbox imports in "
              "seconds; real Marketo takes minutes per job, which adds status polls (Adobe: every 5-30 s) but "
              "no submissions. The sink does not use this path for custom objects."))


def csv_bytes(records: list[dict[str, object]]) -> int:
    columns = sorted({k for r in records for k in r})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(records)
    return len(buffer.getvalue().encode("utf-8"))


async def backfill(stack: Stack, admin: SandboxAdmin, follower: ResultsFollower, cfg: BenchConfig,
                   capacity_events_per_second: float, deadline: float) -> Backfill:
    """``deadline`` (time.monotonic()) ends the wait for outcomes early: the run's total budget."""
    munchkin = BACKFILL_INSTANCE
    rows = rows_that_fit(cfg.backfill_rows, capacity_events_per_second, cfg.backfill_seconds,
                         budget_rows_per_second(cfg.backfill_share))
    expected = 2 * rows
    path = stack.work / f"Report_4021_{PARTNER_ID}_backfill.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(engagement_csv_lines(rows, "bf"))
    before = await admin.by_endpoint(munchkin)
    argv, env = stack.backfill_argv(path, "1_backfill")
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"kmsync backfill exited with {proc.returncode}: {err.decode()[-1000:]}")
    within = max(1.0, min(cfg.section_timeout_seconds, deadline - time.monotonic()))
    done = await wait_until(lambda: follower.count(munchkin) >= expected, within, stack)
    elapsed = time.monotonic() - start
    delta = diff_counts(await admin.by_endpoint(munchkin), before)
    calls_total = count_calls(delta)
    bulk_calls = sum(n for ep, codes in delta.items() if is_bulk(ep) for n in codes.values())
    rest_writes = sum(n for ep, codes in delta.items() if is_write(ep) and not is_bulk(ep) for n in codes.values())
    # REST at 300 per call: the email-only lead upserts that resolve lead ids, the custom objects, the activities.
    rest_equivalent = 3 * math.ceil(rows / REST_BATCH)
    handled = follower.count(munchkin)
    rows_done = rows if done else max(1, handled // 2)  # an incomplete run scales what did arrive
    scale = BACKFILL_TARGET_ROWS / rows_done
    bulk = await bulk_path(stack, admin, cfg, "1_backfill") if done else None
    note = (f"{rows:,} of the {BACKFILL_TARGET_ROWS:,} target rows were loaded in this run: what the slower of "
            "the pipeline capacity measured in section 4 and the API budget carries in --backfill-seconds "
            f"{cfg.backfill_seconds:.0f} (--backfill-rows {cfg.backfill_rows:,}); the 1,000,000-row figures are "
            "these calls and this wall time scaled linearly. " if rows < BACKFILL_TARGET_ROWS else "")
    if not done:
        note += (f"INCOMPLETE: only {rows_done:,} of the {rows:,} rows had reached Marketo when the run's time "
                 "budget ran out (the machine was slower than during the capacity measurement); the figures "
                 "scale those rows, and the Bulk path was not measured. ")
    note += ("Engagement rows become custom objects and custom activities; the sink sends both over REST at "
             "up to 300 per call (its Bulk path covers leads and program members only, and Marketo has no bulk "
             "activity import), so bulk_calls counts only what the Bulk path was used for.")
    return Backfill(
        target_rows=BACKFILL_TARGET_ROWS, requested_rows=cfg.backfill_rows, rows=rows, bulk_path=bulk,
        completed=done, seconds=round(elapsed, 2),
        rows_per_second=round(rows_done / elapsed, 1), ops=handled, calls_by_endpoint=delta,
        bulk_calls=bulk_calls, rest_write_calls=rest_writes, calls_total=calls_total,
        rest_equivalent_calls=rest_equivalent, extrapolated_calls_for_target=math.ceil(calls_total * scale),
        extrapolated_seconds_for_target=round(elapsed * scale, 1), note=note)

