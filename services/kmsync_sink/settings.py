"""The sink's settings (environment, prefix KMSYNC_), validated once at start-up.

Windowing defaults favour full calls under a backlog (≥ 290 records per write call on average) while
a quiet stream still leaves within ``window_max_age_seconds``. Marketo's own limits (300 records per
call, 1 MB bodies, 100 calls / 20 s) live in kmsync_marketo, never here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kmsync_config.settings import CommonSettings
from kmsync_marketo.endpoints import BULK_IMPORT_QUEUED_MAX
from kmsync_marketo.settings import ReplayEnvironment

#: What the group's rebalance timeout allows beyond the longest drain of a revocation (its commit, the rejoin).
REBALANCE_MARGIN_SECONDS = 10.0
#: The sink consumer's max_poll_interval_ms (aiokafka's default, set explicitly). A consumer that has not polled for
#: this long is treated as stuck by aiokafka 0.14: ``GroupCoordinator.ensure_active_group`` puts its rejoin off
#: (``fetcher_idle_time >= max_poll_interval``) until the next ``getmany`` resets the idle time, and its heartbeat
#: task (``_heartbeat_routine``) may leave the group meanwhile. The sink polls nothing while its revoked partitions
#: drain; how a drain that long ends is untested, so, as a cautious choice, the rebalance timeout, which covers the
#: longest drain, must stay below it.
MAX_POLL_INTERVAL_SECONDS = 300.0
#: aiokafka's request_timeout_ms default. It sends JoinGroup with it (aiokafka 0.14
#: ``CoordinatorGroupRebalance.perform_group_join``), and the broker answers a JoinGroup only once every member has
#: rejoined or the rebalance timeout has passed: the Java client waits rebalance timeout + 5 s for that answer, so
#: the sink's consumer takes the larger of the two.
REQUEST_TIMEOUT_SECONDS = 40.0


class WindowSettings(CommonSettings):
    """The knobs an instance worker uses (windowing, retry, cache, usage), apart from Kafka's."""

    #: A window closes when it holds this many operations ...
    window_max_records: int = Field(default=3000, ge=1)
    #: ... or its oldest operation has waited this long ...
    window_max_age_seconds: float = Field(default=5.0, gt=0)
    #: ... or its operations' encoded size reaches this many bytes.
    window_max_bytes: int = Field(default=8_000_000, ge=1_000)
    #: Adaptive windows (adaptive.py, issue #18): a live window closes before its age limit when its lane has
    #: no lag and the budget has room for its calls, after at least this many seconds (a burst gathers) ...
    window_min_linger_seconds: float = Field(default=0.1, ge=0)
    #: ... unless turned off (windows then close on count, bytes and age only).
    window_adaptive: bool = True
    #: When a window closes on count or bytes, a call that would carry fewer records than this
    #: waits for the next window (until the window's age limit forces it out). 0 disables.
    window_min_call_records: int = Field(default=290, ge=0)
    #: Bulk Import API threshold (docs/reference/marketo-api.md §9; 0 disables the bulk path). A window whose lead
    #: upserts carrying data reach it sends leads, program members and custom objects bulk; a custom
    #: object whose own deduplicated upserts in the window reach it goes bulk on its own. A tenants
    #: file instance's ``bulk_min_records`` replaces it for that instance. None (the default): chosen
    #: per window from its volume and the budget (adaptive.auto_bulk_min_records, issue #18).
    bulk_min_records: int | None = Field(default=None, ge=0)
    #: The automatic threshold's records: 1,500 is five full REST calls, what a bulk job costs in calls (a
    #: submission, status polls, a failure/warning file); when the lane's budget has no room for the window's
    #: REST calls now, bulk starts at two full calls' worth (600).
    bulk_auto_min_records: int = Field(default=1_500, ge=1)
    #: With a bulk threshold > 0, a window closes on count only at this many ready operations (not at
    #: window_max_records) and takes up to this many, whatever closed it ...
    bulk_window_max_records: int = Field(default=25_000, ge=1)
    #: ... and this many encoded bytes, instead of window_max_records / window_max_bytes.
    bulk_window_max_bytes: int = Field(default=64_000_000, ge=1_000)
    #: Bulk custom object jobs of one instance that may still be running at Marketo while the
    #: instance's later windows go on (pipelined; docs/reference/marketo-api.md §9.1: Marketo processes 2 at once
    #: and queues 10 including those). A window that would start one more waits for one to end.
    #: 0: a window waits for its own jobs (no pipeline).
    bulk_pipeline_max_jobs: int = Field(default=4, ge=0)
    #: Failed records are retried (alone, not their whole call) this many times in total ...
    retry_max_attempts: int = Field(default=8, ge=1)
    #: ... after base × 2^(attempt-1) seconds with jitter, capped.
    retry_base_seconds: float = Field(default=1.0, ge=0)
    retry_max_seconds: float = Field(default=300.0, ge=0)
    #: Email → lead id entries kept per instance.
    lead_cache_size: int = Field(default=200_000, ge=0)
    #: Every this many minutes (and on start) the instance's calls today by every integration are
    #: read from Marketo's usage endpoint and fed to the limiter's daily budget (0: never).
    sink_usage_reconcile_minutes: float = Field(default=10.0, ge=0)
    #: The instance's schema (custom activity type, custom objects, fields, lengths, dedupe and link
    #: fields) is read again this often, and at once after a write answered 1006/1013 (issue #17).
    sink_schema_refresh_seconds: float = Field(default=600.0, gt=0)
    #: Per Munchkin id, the API name of a seed schema where discovery (API name with or without _c,
    #: display name) would not find it, as JSON: {"123-ABC-456": {"kalturaUserSessionEngagement": "x_c"}}.
    sink_schema_names: dict[str, dict[str, str]] = Field(default={})
    #: A granular label answered 1013 Membership not found (the status call that creates the membership
    #: may still be retrying, docs/reference/marketo-api.md §13.4) is retried until this many attempts,
    #: then dead-lettered. As many as a status gets (retry_max_attempts' default), so a label waits as long as
    #: the status call that creates its membership may retry.
    sink_member_data_1013_retries: int = Field(default=8, ge=0)
    #: A lead refused with 1021 Company update not allowed (docs/reference/marketo-api.md §14, whether an
    #: instance allows company through Sync Leads is UNCONFIRMED): drop_and_retry sends it once more without
    #: its company and names the dropped field in the outcome (kmsync.company_dropped); fail dead-letters it.
    sink_company_on_1021: Literal["drop_and_retry", "fail"] = "drop_and_retry"

    @model_validator(mode="after")
    def _check_bulk_window(self) -> WindowSettings:
        if self.bulk_pipeline_max_jobs > BULK_IMPORT_QUEUED_MAX:
            raise ValueError(
                f"bulk_pipeline_max_jobs ({self.bulk_pipeline_max_jobs}) must be ≤ {BULK_IMPORT_QUEUED_MAX}: "
                f"Marketo queues at most {BULK_IMPORT_QUEUED_MAX} bulk imports per instance, running ones "
                "included, and refuses more with 1016 (docs/reference/marketo-api.md §9.1); "
                "lower KMSYNC_BULK_PIPELINE_MAX_JOBS"
            )
        if self.bulk_window_max_records < self.window_max_records:
            raise ValueError(
                f"bulk_window_max_records ({self.bulk_window_max_records}) must be ≥ window_max_records "
                f"({self.window_max_records}): a bulk window is the larger one; raise "
                "KMSYNC_BULK_WINDOW_MAX_RECORDS or lower KMSYNC_WINDOW_MAX_RECORDS"
            )
        if self.bulk_window_max_bytes < self.window_max_bytes:
            raise ValueError(
                f"bulk_window_max_bytes ({self.bulk_window_max_bytes}) must be ≥ window_max_bytes "
                f"({self.window_max_bytes}): a bulk window is the larger one; raise "
                "KMSYNC_BULK_WINDOW_MAX_BYTES or lower KMSYNC_WINDOW_MAX_BYTES"
            )
        return self


class SinkSettings(WindowSettings):
    #: Consumer group of every sink replica.
    sink_group_id: str = "kmsync-marketo-sink"
    #: Longest a revoked partition's in-flight calls may run before they are abandoned (their
    #: records stay uncommitted and the new owner replays them) ...
    sink_drain_timeout_seconds: float = Field(default=20.0, gt=0)
    #: ... except a window whose Sync Leads call the Marketo client holds (a request Marketo may still be
    #: processing, replayed no earlier than this long after its send; docs/reference/marketo-api.md §5.1): its drain
    #: goes on until the window ends, up to this plus sink_drain_timeout_seconds, so the replay is answered by this
    #: owner. The client's own setting, read from the same variable (KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS);
    #: the group's rebalance timeout is derived from both (``rebalance_timeout_seconds``).
    marketo_ambiguous_replay_delay_seconds: float = Field(
        default_factory=lambda: ReplayEnvironment().ambiguous_replay_delay_seconds, ge=0)
    #: Operations buffered for one partition before its fetching pauses (a parked instance).
    sink_max_buffered_per_partition: int = Field(default=50_000, ge=1)
    #: How far back the activity ledger reads marketo.results.v1 on start (ops retention: 7 days).
    sink_ledger_lookback_hours: float = Field(default=7 * 24.0, gt=0)
    #: Commit at most this often (seconds) while records complete.
    sink_commit_interval_seconds: float = Field(default=1.0, gt=0)
    #: A custom activity that may have been applied (intent without a certain outcome) is looked up
    #: in its lead's activity log only once its intent is this old: a request the client gave up on
    #: (a dropped connection, a drain, a kill) may still be running at Marketo, whose server timeout
    #: for Add Custom Activities is 90 s (docs/reference/marketo-api.md §7.1).
    sink_activity_verify_delay_seconds: float = Field(default=90.0, ge=0)
    #: How often the sink reads the last stable offset and log end of its input partitions, looking for a
    #: hanging transaction (hanging_check.py, docs/reference/streaming.md §3.1); 0 turns the check off.
    sink_hanging_check_seconds: float = Field(default=30.0, ge=0)
    #: A partition whose last stable offset stays unmoved behind its log end this long holds a hanging
    #: transaction: longer than the longest transaction.timeout.ms of kmsync's producers (ingest's 60 s;
    #: transform's 10 s writes marketo.ops.v1) plus the broker's abort scan (10 s), plus a margin.
    sink_hanging_after_seconds: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SinkSettings:
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("retry_max_seconds must be ≥ retry_base_seconds")
        if self.bulk_window_max_records > self.sink_max_buffered_per_partition:
            # Fetching pauses at sink_max_buffered_per_partition undecided operations, so a larger
            # bulk window could never fill.
            raise ValueError(
                f"bulk_window_max_records ({self.bulk_window_max_records}) must be ≤ "
                f"sink_max_buffered_per_partition ({self.sink_max_buffered_per_partition}): a partition "
                "pauses at that many undecided operations, so a bulk window that large never fills; "
                "lower KMSYNC_BULK_WINDOW_MAX_RECORDS or raise KMSYNC_SINK_MAX_BUFFERED_PER_PARTITION"
            )
        if self.rebalance_timeout_seconds > MAX_POLL_INTERVAL_SECONDS:
            raise ValueError(
                f"sink_drain_timeout_seconds ({self.sink_drain_timeout_seconds:g}) + "
                f"marketo_ambiguous_replay_delay_seconds ({self.marketo_ambiguous_replay_delay_seconds:g}) + "
                f"{REBALANCE_MARGIN_SECONDS:g} s = {self.rebalance_timeout_seconds:g} s must be ≤ "
                f"{MAX_POLL_INTERVAL_SECONDS:g} s: a revocation drains a window whose lead call is held by the replay "
                "delay for up to the first two, the consumer polls nothing meanwhile, and aiokafka treats a "
                f"consumer that has not polled for max_poll_interval_ms ({MAX_POLL_INTERVAL_SECONDS:g} s) as stuck "
                "(it puts the rejoin off until the next poll and may leave the group meanwhile): kmsync keeps the "
                "drain below it rather than rely on how that ends; lower "
                "KMSYNC_SINK_DRAIN_TIMEOUT_SECONDS or KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS"
            )
        return self

    @property
    def longest_drain_seconds(self) -> float:
        """How long a revocation or a graceful stop may drain: a window whose lead call the client holds waits
        out the replay delay, then the ordinary drain timeout (worker.py ``InstanceWorker.stop``)."""
        return self.sink_drain_timeout_seconds + self.marketo_ambiguous_replay_delay_seconds

    @property
    def rebalance_timeout_seconds(self) -> float:
        """The group's rebalance timeout: the longest drain and a margin, so the group waits for this replica's
        revocation (its drain and commit) before it hands the partitions to another."""
        return self.longest_drain_seconds + REBALANCE_MARGIN_SECONDS

    @property
    def request_timeout_seconds(self) -> float:
        """The consumer's request timeout: long enough for a JoinGroup answer (``REQUEST_TIMEOUT_SECONDS``)."""
        return max(REQUEST_TIMEOUT_SECONDS, self.rebalance_timeout_seconds + 5.0)
