"""The benchmark report (JSON): every number measured in one run, with the configuration and machine.

Validated with pydantic when written and when read back (``load_report``), so a consumer of the
JSON gets field-level errors instead of silently missing numbers.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Machine(_Model):
    cpu_count: int = Field(ge=1)
    cpu_model: str
    memory_gib: float = Field(ge=0)
    python: str
    #: The interpreter's installation (``sys.base_prefix``) and build (``platform.python_build``): which CPython
    #: ran, since one built without profile-guided optimisation runs Python code about half as fast
    #: (docs/decisions.md); the figures of different interpreters do not compare.
    python_build: str | None = None
    kafka_version: str
    platform: str
    #: 1/5/15-minute load averages when the report was written: other work on the machine slows
    #: every throughput figure (the 15-minute one covers most of a full run).
    load_average: tuple[float, float, float] | None = None


class CodeVersion(_Model):
    """The code that ran: services are installed editable, so uncommitted edits count."""

    commit: str
    #: Files under services/ and libs/ that differed from the commit when the run started.
    uncommitted_paths: list[str]


class Dist(_Model):
    """A distribution in seconds."""

    count: int = Field(ge=1)
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


class CallSeries(_Model):
    """Calls that started in the rolling window (t - window_seconds, t] at t = the phase's start, then
    every step_seconds, and at its end (the last sample, less than a step after the one before; the
    first samples cover less than a window): what the calls chart draws (kmsync_bench.charts).
    Counted from the sandbox's request log."""

    window_seconds: float = Field(gt=0)
    step_seconds: float = Field(gt=0)
    #: From the phase's start to its end, the last sample.
    seconds: float = Field(ge=0)
    #: kmsync's sink (its client id).
    sink: list[int] = Field(min_length=1)
    #: Every client of the instance together (kmsync and the external client), where one ran.
    instance: list[int] | None = None


class KmsyncWrites(_Model):
    ops: int = Field(ge=1)
    #: Write calls (leads, program member status, custom objects, activities, bulk imports) the sandbox counted.
    write_calls: int = Field(ge=1)
    #: Records carried by those calls: operations plus the email-only lead upserts the sink adds.
    records_written: int = Field(ge=1)
    records_per_call: float = Field(gt=0)
    #: Operations per write call (what the backlog cost, counting the sink's extra lead look-ups).
    ops_per_call: float = Field(gt=0)
    calls_by_endpoint: dict[str, dict[str, int]]
    seconds: float = Field(gt=0)
    outcomes: dict[str, int]


class AtRateLimit(_Model):
    """What the naive writer's measured calls cost on a real instance (arithmetic on measured calls)."""

    calls: int = Field(ge=1)
    #: The calls at the instance's rate limit (100 calls / 20 s), had the naive writer all of it.
    seconds_at_rate_limit: float = Field(gt=0)
    #: Share of a 50,000-call daily quota.
    share_of_daily_quota: float = Field(ge=0)


class NaiveWrites(_Model):
    #: Operations the naive writer sent: the whole backlog, against the same sandbox.
    ops: int = Field(ge=1)
    write_calls: int = Field(ge=1)
    other_calls: int = Field(ge=0)
    records_per_call: float = Field(gt=0)
    #: Its wall time on an instance with the rate limit lifted (so it ends within the run).
    seconds: float = Field(gt=0)
    failed_ops: int = Field(ge=0)
    at_rate_limit: AtRateLimit


class Efficiency(_Model):
    backlog_ops: int = Field(ge=1)
    kmsync: KmsyncWrites
    naive: NaiveWrites
    #: naive calls ÷ kmsync calls, both measured on the same backlog.
    call_reduction: float = Field(gt=0)
    method: str


class ExternalClient(_Model):
    target_share: float = Field(gt=0, le=1)
    calls: int = Field(ge=0)
    mean_per_window: float = Field(ge=0)
    throttled_606: int = Field(ge=0)
    throttled_615: int = Field(ge=0)


class BudgetPhase(_Model):
    ops: int = Field(ge=1)
    seconds: float = Field(gt=0)
    instance_limit_per_window: int = Field(ge=1)
    window_seconds: float = Field(gt=0)
    #: share × instance limit: the calls per window kmsync is configured to use.
    configured_per_window: float = Field(gt=0)
    sink_calls: int = Field(ge=0)
    sink_peak_per_window: int = Field(ge=0)
    sink_mean_per_window: float = Field(ge=0)
    peak_share_of_configured: float = Field(ge=0)
    mean_share_of_configured: float = Field(ge=0)
    peak_share_of_instance: float = Field(ge=0)
    #: Peak calls per window of every client together (kmsync + external).
    instance_peak_per_window: int = Field(ge=0)
    sink_606: int = Field(ge=0)
    sink_615: int = Field(ge=0)
    external: ExternalClient | None = None
    outcomes: dict[str, int]
    #: Optional: reports written before the charts existed have none.
    calls_series: CallSeries | None = None


class Budget(_Model):
    alone: BudgetPhase
    shared: BudgetPhase


class Latency(_Model):
    requested_rows_per_second: float = Field(gt=0)
    #: The rate used: the requested one, capped at half the capacity measured in section 4.
    rows_per_second: float = Field(gt=0)
    seconds: float = Field(gt=0)
    rows: int = Field(ge=1)
    #: Kaltura export time (source_time) → Marketo accepted (RecordOutcome.decided_at), all kinds, for
    #: attendees who registered before the stream (the sink knows their lead ids).
    end_to_end: Dist
    by_kind: dict[str, Dist]
    calls_per_window_peak: int = Field(ge=0)
    path: str
    calls_series: CallSeries | None = None
    #: The same stream for walk-ins kmsync never saw (a lead upsert for ids before each window's writes),
    #: for ``walk_in_seconds``; None in reports from before 2026-12-06.
    walk_in: Dist | None = None
    walk_in_seconds: float | None = None


class Passthrough(_Model):
    """A bare aiokafka passthrough of the capacity section's records on the same broker, same run:
    consume 500, produce them (acks=all, idempotent), commit (kmsync_bench.passthrough)."""

    records: int = Field(ge=1)
    seconds: float = Field(gt=0)
    records_per_second: float = Field(gt=0)
    #: The passthrough process's CPU (utime + stime, every thread) per 10,000 records.
    client_cpu_per_10k: float = Field(gt=0)
    #: The broker's CPU during the passthrough per 10,000 records.
    broker_cpu_per_10k: float = Field(gt=0)
    #: client + broker.
    total_cpu_per_10k: float = Field(gt=0)


class Capacity(_Model):
    rows: int = Field(ge=1)
    ops: int = Field(ge=1)
    completed: bool
    seconds: float = Field(gt=0)
    events_per_second: float = Field(ge=0)
    ops_per_second: float = Field(ge=0)
    #: Rows per second between the 10th and the 90th percentile of outcome times (decided_at):
    #: the steady rate once the first rows are through.
    steady_events_per_second: float = Field(ge=0)
    #: Seconds from the start until each stage had handled everything: ingest (CSV acknowledged),
    #: transform (every operation on marketo.ops.v1), sink (every outcome on marketo.results.v1).
    stage_seconds: dict[str, float]
    write_calls: int = Field(ge=0)
    peak_rss_mib: dict[str, float]
    #: CPU seconds per 10,000 rows of each process (ingest, transform, sink, marketo-sandbox, broker)
    #: from /proc/<pid>/stat at the start and the end of the section, replicas and children summed.
    cpu_per_10k_rows: dict[str, float] | None = None
    #: CPU seconds per second of each process while nothing was sent, over the seconds just
    #: before the section (consumers' fetches, heartbeats, the benchmark's own readers): part of
    #: every section-long figure, the tail where the sink waits out its window age included.
    idle_cpu_per_second: dict[str, float] | None = None
    #: ingest + transform + sink + broker (the Marketo sandbox is not kmsync's cost).
    kmsync_cpu_per_10k_rows: float | None = Field(default=None, gt=0)
    passthrough: Passthrough | None = None
    #: kmsync_cpu_per_10k_rows ÷ passthrough.total_cpu_per_10k: kmsync's CPU per row as a multiple
    #: of the passthrough's per record.
    cpu_multiple_of_passthrough: float | None = Field(default=None, gt=0)


class RestEquivalent(_Model):
    """What a REST-only writer at 300 records per call needs for the same backfill (arithmetic)."""

    #: Email-only lead upserts that learn the lead ids the custom objects' link field needs.
    lead_lookups: int = Field(ge=0)
    custom_objects: int = Field(ge=0)
    total: int = Field(ge=0)
    #: The same rows' custom activities, had the event sent them (Marketo has no bulk activity
    #: import, docs/reference/marketo-api.md §7.3): REST only, 300 per call.
    custom_activities_if_enabled: int = Field(ge=0)
    #: ``total`` at the instance's full rate limit (100 calls / 20 s).
    seconds_at_rate_limit: float = Field(ge=0)


class Backfill(_Model):
    rows: int = Field(ge=1)
    sessions: int = Field(ge=1)
    #: Distinct attendees (leads): the same attendees appear in every session.
    attendees: int = Field(ge=1)
    completed: bool
    #: From the first `kmsync backfill` until every row had an outcome (or the run's budget ended).
    seconds: float = Field(gt=0)
    #: Seconds the `kmsync backfill` commands took to load every file into Kafka.
    load_seconds: float = Field(gt=0)
    rows_per_second: float = Field(ge=0)
    outcomes: dict[str, int]
    calls_by_endpoint: dict[str, dict[str, int]]
    #: Bulk custom object import submissions, status polls and failure/warning reads.
    bulk_submit_calls: int = Field(ge=0)
    bulk_other_calls: int = Field(ge=0)
    #: REST write calls (the email-only lead upserts that learn lead ids).
    rest_write_calls: int = Field(ge=0)
    #: Every call the sandbox counted for the instance, the token and usage reads included.
    calls_total: int = Field(ge=0)
    rest_equivalent: RestEquivalent
    #: rest_equivalent.total ÷ calls_total.
    call_reduction: float = Field(ge=0)
    #: The most calls that started in any rolling 20 s window (the instance's limit is 100).
    peak_calls_per_window: int = Field(ge=0)
    throttled_606: int = Field(ge=0)
    throttled_615: int = Field(ge=0)
    #: Each process's peak RSS (VmHWM) at the end of the backfill: the run's high-water mark.
    peak_rss_mib: dict[str, float] | None = None
    note: str
    calls_series: CallSeries | None = None
    #: Live during backfill (issue #18): a live trickle on the same instance, Kaltura export time → Marketo
    #: accepted, alone (before the backfill) and during it (started once the backfill's first call was out).
    live_alone: Dist | None = None
    live_during: Dist | None = None
    #: Their ingest + transform part: Kaltura export time → the operation on marketo.ops.v1 (emitted_at).
    live_alone_upstream: Dist | None = None
    live_during_upstream: Dist | None = None
    #: Each process's answer time to a trivial GET (sink/transform /healthz on their event loop, the sandbox's
    #: health) every 0.25 s while each trickle ran: how long a busy process made everything wait.
    answer_seconds_alone: dict[str, Dist] | None = None
    answer_seconds_during: dict[str, Dist] | None = None
    #: The backfill lane's calls (bulk, and REST writes carrying its rows) in any rolling 20 s, and its cap.
    backfill_peak_calls_per_window: int | None = Field(default=None, ge=0)
    backfill_cap_per_window: int | None = Field(default=None, ge=1)


class BenchReport(_Model):
    schema_version: Literal[2] = 2
    mode: Literal["quick", "full"]
    started_at: AwareDatetime
    finished_at: AwareDatetime
    wall_seconds: float = Field(gt=0)
    #: Wall seconds of each step (start-up, warm-up, each section).
    phase_seconds: dict[str, float]
    machine: Machine
    code: CodeVersion
    config: dict[str, Any]
    sandbox_limits: dict[str, dict[str, Any]]
    sink_settings: dict[str, Any]
    efficiency: Efficiency
    budget: Budget
    latency: Latency
    capacity: Capacity
    backfill: Backfill
    notes: list[str] = Field(default_factory=list)


class _OneSectionReport(_Model):
    """`kmsync bench --only SECTION`: one section after the warm-up, with the run's context."""

    mode: Literal["quick", "full"]
    started_at: AwareDatetime
    finished_at: AwareDatetime
    wall_seconds: float = Field(gt=0)
    machine: Machine
    code: CodeVersion
    config: dict[str, Any]


class BackfillOnlyReport(_OneSectionReport):
    """`kmsync bench --only live-backfill`: section 5 alone (warm-up, then live during backfill)."""

    section: Literal["live-backfill"] = "live-backfill"
    backfill: Backfill


class LatencyOnlyReport(_OneSectionReport):
    """`kmsync bench --only latency`: section 3 alone (warm-up, then the live streams; the rate is not
    capped by a capacity measured in the same run)."""

    section: Literal["latency"] = "latency"
    latency: Latency


class CapacityOnlyReport(_OneSectionReport):
    """`kmsync bench --only capacity`: section 4 alone (warm-up, then the capacity run with each process's
    CPU and the passthrough floor)."""

    section: Literal["capacity"] = "capacity"
    capacity: Capacity


#: The report of `kmsync bench --only SECTION`.
OneSectionReport = BackfillOnlyReport | LatencyOnlyReport | CapacityOnlyReport


def write_report(report: BenchReport | OneSectionReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.model_dump_json(indent=2) + "\n")


def load_report(path: Path) -> BenchReport:
    return BenchReport.model_validate_json(path.read_text())


def stamp(moment: datetime) -> str:
    """File-name-safe UTC timestamp for bench/results/<timestamp>.json."""
    return moment.strftime("%Y%m%dT%H%M%SZ")
