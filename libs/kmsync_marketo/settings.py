"""What is configurable about the client, validated at the boundary (pydantic v2).

Defaults follow docs/reference/marketo-api.md §2 and Adobe's advice; every UNCONFIRMED behaviour has a knob.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kmsync_marketo import endpoints as ep


class LimiterSettings(BaseModel):
    """The per-instance budget this process may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fraction of the instance's limits this integration may use (other integrations share them).
    share: float = Field(default=1.0, gt=0.0, le=1.0)
    rate_limit_calls: int = Field(default=ep.RATE_LIMIT_CALLS, ge=1)
    rate_window_seconds: float = Field(default=ep.RATE_WINDOW_SECONDS, gt=0)
    #: Calls per window kept free under the share (clock skew, Identity-free calls, others' bursts).
    rate_headroom_calls: int = Field(default=10, ge=0)
    #: Extra seconds a call stays in the local window: the server counts arrival, we count start.
    window_margin_seconds: float = Field(default=0.25, ge=0)
    #: Calls in flight at once (Adobe: ≤ 5 of the instance's 10).
    max_concurrency: int = Field(default=ep.RECOMMENDED_CONCURRENCY, ge=1, le=ep.CONCURRENCY_LIMIT)
    #: The instance's daily quota (50,000 typical, ≥ 10,000; UNCONFIRMED per subscription).
    daily_quota: int = Field(default=ep.DEFAULT_DAILY_QUOTA, ge=1)
    #: Calls per day kept free under share × quota.
    daily_headroom_calls: int = Field(default=500, ge=0)
    #: Slow-down on 606/615 (AIMD, README "Limiter design" 4). A throttle lowers the rate only as
    #: evidence of a competitor: at least throttle_min_count throttles, more than
    #: throttle_tolerance of the answers to the calls sent since the last decrease (last window).
    #: 0.25 lets 10 % random 606s (a chaos plan, Marketo's own noise) through without a decrease
    #: (25 % of ~45–90 answers is 3.5–5 standard deviations above 10 %), while a competitor that
    #: fills the window throttles most of our calls and trips it at once.
    throttle_tolerance: float = Field(default=0.25, ge=0, lt=1)
    throttle_min_count: int = Field(default=3, ge=1)
    #: ... or this many throttled answers in a row: a full window rejects every call until a place
    #: frees, random 606s at 10 % make a run of 3 once in ~1,000 answers.
    throttle_run: int = Field(default=3, ge=1)
    #: A decrease multiplies the rate by this factor, at most once per episode (calls sent before
    #: it do not decrease again) ...
    throttle_decrease_factor: float = Field(default=0.5, gt=0, lt=1)
    #: ... never below this fraction of the configured rate ...
    throttle_min_fraction: float = Field(default=0.1, gt=0, le=1)
    #: ... and a pause of base × 2^(n−1) seconds (n = decreases in a row), equal jitter, capped.
    throttle_pause_base_seconds: float = Field(default=2.0, ge=0)
    throttle_pause_max_seconds: float = Field(default=30.0, ge=0)
    #: Recovery (additive increase): every this many seconds without a decrease the rate grows by
    #: recover_step and one concurrency slot comes back; tolerated throttles do not restart it.
    #: 10 s × 10 % brings the floor back to full in 90 s (it was 20 s, and every 606 restarted the
    #: wait, so under steady random 606s the rate never came back — issue #13). Shorter probes
    #: faster but wastes more calls on 606 next to a real competitor (5 s: ~40 % with one that
    #: spends 85 of the 100 calls, against ~32 % at 10 s; the simulation in tests/marketo_client).
    recover_interval_seconds: float = Field(default=10.0, gt=0)
    recover_step_fraction: float = Field(default=0.1, gt=0, le=1)
    #: On 607, park until the next midnight US Central (plus this many seconds).
    quota_reset_slack_seconds: float = Field(default=5.0, ge=0)
    #: Every this many calls, read the instance-wide usage (GET stats/usage.json) so other
    #: integrations' calls count against the daily quota too (tap-marketo polls every 250). None: off.
    reconcile_every_calls: int | None = Field(default=None, ge=1)
    #: The backfill lane's cap (lanes.py, architecture.md principle 10): fraction of this integration's rolling
    #: window (and of its concurrency) backfill calls may use at most, and only while no live call waits.
    backfill_share: float = Field(default=0.3, gt=0.0, le=1.0)

    @property
    def window_limit(self) -> int:
        """Calls allowed in any rolling window at full speed: floor(100 × share) − headroom, ≥ 1."""
        return max(1, int(self.rate_limit_calls * self.share) - self.rate_headroom_calls)

    @property
    def backfill_concurrency(self) -> int:
        """Backfill calls in flight at once: backfill_share of max_concurrency rounded up (0.3 of 5: 2)."""
        return max(1, math.ceil(self.max_concurrency * self.backfill_share))

    @property
    def daily_budget(self) -> int:
        return max(1, int(self.daily_quota * self.share) - self.daily_headroom_calls)


class ReplayEnvironment(BaseSettings):
    """The defaults of RetrySettings an operator sets in the environment of any process that writes to Marketo
    (``KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS``), since the services build their client settings from the
    tenants file."""

    model_config = SettingsConfigDict(env_prefix="KMSYNC_MARKETO_", extra="ignore", frozen=True)

    ambiguous_replay_delay_seconds: float = Field(default=90.0, ge=0)


def _replay_delay_default() -> float:
    return ReplayEnvironment().ambiguous_replay_delay_seconds


class RetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Attempts for retry-soon errors (502, 604, 606, 608, 611, 615, 713, HTTP 5xx, timeouts).
    max_attempts: int = Field(default=6, ge=1)
    backoff_base_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=60.0, ge=0)
    #: 607 (daily quota) delays data, never fails it: the call parks until the next reset and
    #: replays, as often as it meets 607 (a long backlog on a small quota may take several days).
    #: None (default) = no bound; a number is an opt-in for callers that would rather fail the call
    #: after that many parks (the records come back failed with code 607, retryable).
    max_quota_parks: int | None = Field(default=None, ge=0)
    #: 1016 (import queue full): wait this long between tries, at most this many times.
    import_queue_wait_seconds: float = Field(default=30.0, ge=0)
    import_queue_max_waits: int = Field(default=20, ge=0)
    #: A lead write (Sync Leads) whose attempt Marketo may still be processing (no answer after it was sent, an
    #: HTTP 5xx, or a code of ``in_process_codes``) is replayed, or that failure returned, no earlier than this many
    #: seconds after that attempt was sent: a second upsert of the same email while the first still runs can create
    #: a duplicate lead (docs/reference/marketo-api.md §5.1). Whether Marketo keeps processing after such an
    #: answer, and for how long, is UNCONFIRMED; Sync Leads' server timeout is 90 s (§10.4), the default.
    #: 0: replay after the ordinary backoff. Env: KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS.
    ambiguous_replay_delay_seconds: float = Field(default_factory=_replay_delay_default, ge=0)
    #: Response-level codes after which the request may still be in process (a timeout: 604, 502 "likely a
    #: timeout", §3.2). Other ambiguous codes (500, 608, 611, 713, 719) are answers of a request that has ended:
    #: replayed after the ordinary backoff.
    in_process_codes: frozenset[str] = frozenset({"502", "604"})


class BulkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Split CSVs below this many bytes (Marketo: < 10 MB; a margin for multipart framing).
    max_file_bytes: int = Field(default=ep.BULK_FILE_MAX_BYTES - 100_000, ge=1_000)
    #: Own jobs submitted but not finished, per instance (Marketo: 10 queued including running).
    max_outstanding_jobs: int = Field(default=ep.BULK_IMPORT_QUEUED_MAX, ge=1, le=ep.BULK_IMPORT_QUEUED_MAX)
    #: Status polling: first wait, growth factor, cap (Adobe: poll every 5–30 s), overall deadline.
    poll_initial_seconds: float = Field(default=5.0, ge=0)
    poll_factor: float = Field(default=1.5, ge=1)
    poll_max_seconds: float = Field(default=30.0, ge=0)
    poll_timeout_seconds: float = Field(default=6 * 3600.0, gt=0)


class MarketoSettings(BaseModel):
    """One Marketo instance as this client talks to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The REST endpoint domain, https, without /rest or /identity (seed: "How to get the API
    #: endpoint domain"); a trailing /rest is removed.
    endpoint: str = Field(min_length=8)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    munchkin_id: str | None = None
    limits: LimiterSettings = LimiterSettings()
    #: Built per settings object (its replay delay's default is read from the environment then).
    retry: RetrySettings = Field(default_factory=RetrySettings)
    bulk: BulkSettings = BulkSettings()
    http_timeout_seconds: float = Field(default=ep.DEFAULT_HTTP_TIMEOUT_SECONDS, gt=0)
    #: Refresh a token this many seconds before Marketo says it expires.
    token_refresh_margin_seconds: float = Field(default=60.0, ge=0)
    #: Plain http is accepted only for loopback test servers.
    allow_insecure_http: bool = False

    @field_validator("endpoint")
    @classmethod
    def _normalise_endpoint(cls, value: str) -> str:
        return ep.base_url(value)

    @model_validator(mode="after")
    def _check_scheme(self) -> MarketoSettings:
        if self.endpoint.startswith("https://"):
            return self
        if self.endpoint.startswith("http://") and self.allow_insecure_http:
            return self
        raise ValueError(
            f"endpoint must start with https:// (got {self.endpoint!r}); the seed requires the "
            "https:// prefix on the API endpoint domain"
        )

    @property
    def instance_key(self) -> str:
        """Identifies the Marketo instance whose limits this client shares."""
        return self.munchkin_id or self.endpoint
