"""What a run is configured with (sizes, shares, sandbox limits); recorded in the report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kmsync_marketo import endpoints as ep
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_marketo.settings import LimiterSettings

#: Munchkin ids of the sandbox instances, one per measurement so counters never mix.
EFFICIENCY_INSTANCE = "111-AAA-111"   # kmsync under the real limits (sections 1-3)
NAIVE_INSTANCE = "222-BBB-222"        # the naive writer, rate limit lifted (section 1)
CAPACITY_INSTANCE = "333-CCC-333"     # every limit lifted (section 4)
BACKFILL_INSTANCE = "444-DDD-444"     # the real rolling limits, a large daily quota (section 5)

#: Marketo's per-instance limits and batch size (docs/reference/marketo-api.md §2.1), as the Marketo client knows them.
INSTANCE_RATE_LIMIT = ep.RATE_LIMIT_CALLS
RATE_WINDOW_SECONDS = ep.RATE_WINDOW_SECONDS
DAILY_QUOTA = ep.DEFAULT_DAILY_QUOTA
REST_BATCH = ep.BATCH_MAX
BACKFILL_TARGET_ROWS = 1_000_000


class BenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["quick", "full"]
    #: Section 1/2: operations in the backlog produced to marketo.ops.v1.
    backlog_ops: int = Field(ge=100)
    #: Section 2: the second backlog, sent while an external client spends external_share.
    shared_backlog_ops: int = Field(ge=100)
    #: kmsync's configured share of the instance (tenants file `share`).
    sink_share: float = Field(gt=0, le=1)
    #: The external client's share of the instance's calls per window.
    external_share: float = Field(gt=0, le=1)
    #: Section 3: live rows per second (at most; never above half the pipeline capacity measured in
    #: section 4, so the stream stays "well under" what the pipeline and the budget can carry) and how long.
    latency_rows_per_second: float = Field(gt=0)
    latency_seconds: float = Field(gt=0)
    #: Section 3: seconds between the attendees' registrations being decided and the stream's start (the
    #: rolling window, so the stream starts with the budget a session has; 0 in quick runs, which check
    #: the mechanics, not the figure).
    latency_quiet_seconds: float = Field(default=RATE_WINDOW_SECONDS, ge=0)
    #: Section 4: engagement rows pushed through ingest → transform → sink, limits lifted.
    capacity_rows: int = Field(ge=10)
    #: Section 5: engagement rows loaded with `kmsync backfill` under the real rolling limits, as one
    #: report 4021 CSV per session: backfill_sessions files of backfill_rows / backfill_sessions
    #: attendees each (the same attendees in every session, as at a real event).
    backfill_rows: int = Field(ge=10)
    backfill_sessions: int = Field(ge=1, le=1000)
    #: Custom objects per window from which the backfill instance imports them in bulk (tenants file
    #: `bulk_min_records` of that instance).
    backfill_bulk_min_records: int = Field(ge=1)
    #: kmsync's share of the backfill instance (tenants file `share`: the live lane may use all of it) ...
    backfill_share: float = Field(gt=0, le=1)
    #: ... and the backfill lane's cap within it (tenants file `backfill_share`, its default 0.3).
    backfill_lane_share: float = Field(default=0.3, gt=0, le=1)
    #: How long any one wait for outcomes may take before the section is reported incomplete.
    section_timeout_seconds: float = Field(gt=0)
    #: The whole run's budget: the backfill (last) stops waiting when it is spent and reports what
    #: arrived as incomplete, so a machine busier than expected still gets its report in time.
    total_seconds: float = Field(gt=0)

    @model_validator(mode="after")
    def _sessions_split_rows(self) -> BenchConfig:
        if self.backfill_rows % self.backfill_sessions:
            raise ValueError(f"backfill_rows {self.backfill_rows:,} does not split into {self.backfill_sessions} "
                             "sessions of equal size")
        return self


def backfill_cap(config: BenchConfig) -> int:
    """The backfill lane's calls per rolling window on the backfill instance, as the sink's limiter computes it."""
    settings = LimiterSettings(share=config.backfill_share, backfill_share=config.backfill_lane_share)
    return InstanceLimiter(BACKFILL_INSTANCE, settings).backfill_window_limit


QUICK = BenchConfig(mode="quick", backlog_ops=3_000, shared_backlog_ops=1_500, sink_share=0.6,
                    external_share=0.4, latency_rows_per_second=10, latency_seconds=8, latency_quiet_seconds=0,
                    capacity_rows=200,
                    backfill_rows=4_000, backfill_sessions=2, backfill_bulk_min_records=1_000, backfill_share=1.0,
                    section_timeout_seconds=150, total_seconds=300)
FULL = BenchConfig(mode="full", backlog_ops=50_000, shared_backlog_ops=40_000, sink_share=0.6,
                   external_share=0.4, latency_rows_per_second=20, latency_seconds=60, capacity_rows=20_000,
                   backfill_rows=BACKFILL_TARGET_ROWS, backfill_sessions=20,
                   backfill_bulk_min_records=5_000, backfill_share=1.0,
                   section_timeout_seconds=600, total_seconds=40 * 60)

