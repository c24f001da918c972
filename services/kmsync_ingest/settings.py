"""Ingest's process settings (environment, prefix KMSYNC_) on top of the shared CommonSettings.

Knobs that exist because Kaltura behaviour is UNCONFIRMED (docs/reference/kaltura-api.md §2.4, §2.5, §7.5) are
here so an operator can match a real account without a code change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from kmsync_config import CommonSettings
from kmsync_config.references import SecretRefsSetting
from kmsync_config.urls import https_problem
from kmsync_contracts.groups import TRANSFORM_APP_ID
from kmsync_ingest.poll_order import PollOrder

HashAlgo = Literal["sha1", "sha256", "sha512"]


class IngestSettings(CommonSettings):
    #: Seconds between scheduled pulls of every configured event (statuses, ended sessions).
    pull_interval_seconds: float = Field(default=60.0, gt=0)
    #: `kmsync backfill` loads its next chunk only while transform's backlog on the Kaltura topics is at most
    #: this many records, so live rows never queue behind a history load (backfill_pace.py); 0: no pacing.
    backfill_max_transform_lag: int = Field(default=3_000, ge=0)
    #: Transform's consumer group (its KMSYNC_TRANSFORM_APP_ID, before the topic prefix), whose backlog paces it.
    backfill_transform_group: str = Field(default=TRANSFORM_APP_ID, min_length=1)
    #: Set false to run push and file modes only (no scheduled pulls).
    pull_enabled: bool = True
    #: Ended sessions are re-pulled for late analytics rows this long after they end
    #: (analytics ingestion delay is UNCONFIRMED, docs/reference/kaltura-api.md §7.5: 5-60 min observed).
    late_data_window_seconds: float = Field(default=24 * 3600.0, ge=0)
    #: Each statuses pull starts this many seconds before the watermark, in case Kaltura makes a profile version
    #: visible only after a newer updatedAt was served (replica lag: UNCONFIRMED, docs/reference/kaltura-api.md
    #: §7.1.1); re-read versions already produced are skipped, so nothing is produced twice. 0: no overlap.
    #: Cost and default: docs/decisions.md "Statuses pulls re-read a window before the watermark".
    statuses_overlap_seconds: float = Field(default=120.0, ge=0)
    #: At most this many (profile, updatedAt) versions of the overlap window are remembered (one watermark record of
    #: ~55 bytes each: 10,000 ≈ 550 KB, under Kafka's 1 MB record); above it the window is cut short (a warning).
    statuses_overlap_max_ids: int = Field(default=10_000, ge=1)
    #: Minimum seconds between two pulls of the same ended session's engagement and polls.
    session_repull_seconds: float = Field(default=600.0, ge=0)
    #: Page size for user-profile/list and report.getTable (docs/reference/kaltura-api.md §7.1: 500).
    page_size: int = Field(default=500, ge=1, le=500)
    #: Engagement reports pulled per ended session: 60013 (report.getTable: view times, completion)
    #: and/or 4021 ("User Reactions" CSV: reactions, mic/cam, calendar). Each is its own record.
    engagement_reports: tuple[Literal[60013, 4021], ...] = (60013, 4021)
    #: Where poll answers are fetched per session, as a URL template with {service_url},
    #: {partner_id}, {virtual_event_id}, {entry_id}. Kaltura's pollsActivity report (reports
    #: microservice) has no documented layout or retrieval contract (docs/reference/kaltura-api.md §3.6, §7.1:
    #: UNCONFIRMED), so this is configurable; empty disables the poll pull.
    polls_csv_url: str = ""
    #: How a poll's position in its session (its poll_N slot) is derived from a session's pull, since
    #: Kaltura gives no position (docs/reference/kaltura-api.md §11, UNCONFIRMED): first_answer (each
    #: poll's earliest answer), report_row (first row it appears in) or poll_id (kmsync_ingest.poll_order).
    poll_order: PollOrder = "first_answer"
    #: Check email syntax in report rows (rows identified by email alone are dead-lettered if not).
    validate_report_emails: bool = True
    #: Timeout of one Kaltura call, seconds.
    kaltura_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Hash algorithms accepted in X-KALTURA-HASH-ALGO (docs/reference/kaltura-api.md §2.4; SHA-1 is the default).
    accepted_hash_algos: tuple[HashAlgo, ...] = ("sha1", "sha256", "sha512")
    #: Algorithm assumed when a notification carries no X-KALTURA-HASH-ALGO header.
    default_hash_algo: HashAlgo = "sha1"
    #: Reject unsigned notifications. Turning this off is for a trusted network only.
    require_signature: bool = True
    #: How many eventNotificationJobIds are remembered for de-duplication (Kaltura retries, §2.5).
    notification_dedupe_capacity: int = Field(default=100_000, ge=1)
    #: How long a webhook waits for the pull it triggered before answering 503 (Kaltura retries).
    notification_pull_timeout_seconds: float = Field(default=20.0, gt=0)
    #: Largest notification body accepted, bytes.
    max_notification_bytes: int = Field(default=1_048_576, gt=0)
    #: Largest CSV upload accepted, bytes (413 above it, checked while the body arrives).
    max_upload_bytes: int = Field(default=200 * 1_048_576, gt=0)
    #: Uploads processed at once; one more is answered 503 with Retry-After (each is spooled to a
    #: temporary file and read a chunk at a time, so memory does not grow with the file size).
    max_concurrent_uploads: int = Field(default=4, ge=1)
    #: Longest line of an uploaded CSV, bytes; a longer line is a bad row (a report row is < 2 KB).
    max_csv_line_bytes: int = Field(default=65_536, ge=1024)
    #: Where uploads are spooled while they are read (default: the system's temporary directory).
    upload_spool_dir: Path | None = None
    #: Bearer tokens accepted on the upload endpoint (and on unsigned notifications), by reference:
    #: [{"env": "NAME"}, {"file": "/run/secrets/ingest-tokens"}]. Several are valid at once (rotation);
    #: a file may hold several, one per line. None configured: every upload is refused (401).
    upload_tokens: SecretRefsSetting = ()
    #: "disabled" accepts uploads without a token: local demos on a loopback port only.
    upload_auth: Literal["required", "disabled"] = "required"
    #: How long a produce may wait for Kafka's acknowledgement before the request fails with 503.
    kafka_ack_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Retry-After (seconds) sent with 503 when Kafka is unavailable.
    retry_after_seconds: int = Field(default=5, ge=1)
    #: Kafka transactional id of the pull (a page's records and its watermark are committed
    #: together; with the topic prefix appended). One pulling ingest per id: a second one fences
    #: the first. Empty: no transactions (records, then the watermark, each acknowledged).
    transactional_id: str = "kmsync-ingest"
    #: Above this many row digests a session's de-duplication set is spread over 16 watermark
    #: records (a Kafka record is at most ~1 MB by default).
    watermark_max_ids: int = Field(default=20_000, ge=1)
    #: Kafka consumer group of the replicas that share the pulls (with the topic prefix appended).
    #: Each configured event belongs to one partition of ingest.pull-owners.v1; the replica the group
    #: assigns that partition to runs the event's pulls. Empty: this replica owns no pulls (it
    #: forwards notifications to the owners and takes uploads).
    ingest_group: str = "kmsync-ingest"
    #: Partitions of ingest.pull-owners.v1 when ingest creates it: at most this many replicas share
    #: the pulls. Changing it on an existing topic has no effect (the topic's count is used).
    ingest_coordination_partitions: int = Field(default=6, ge=1, le=1000)
    #: A replica that stops heartbeating for this long is out of the group and its events move.
    ingest_session_timeout_seconds: float = Field(default=10.0, ge=1.0, le=300.0)
    #: How long a rebalance waits for a replica to finish its pages in flight and release its events.
    ingest_handover_timeout_seconds: float = Field(default=60.0, ge=1.0)
    #: A notification for an event another replica owns: "forward" it through the coordination
    #: topic (answered 200 once Kafka acknowledged the trigger; the owner runs the pull) or answer
    #: "retry" (503 + Retry-After, hoping Kaltura's retry reaches the owner: its retry count is
    #: UNCONFIRMED, docs/reference/kaltura-api.md §2.5).
    not_owner_notifications: Literal["forward", "retry"] = "forward"
    #: Records produced per batch (one ack wait per batch; an upload holds one batch in memory). librdkafka sends
    #: one produce request per partition of a batch (docs/reference/streaming.md §3.1), so a batch of N records
    #: over the six Kaltura-topic partitions costs the broker six requests however small N is. Measured (issue
    #: #22, session 8): 500 -> 2,000 cut ingest's produce requests from 126 to 47 per 10,000 rows; 4 x 50 MB
    #: uploads took 79 s instead of 145 s, peak RSS 87 -> 106 MiB.
    produce_batch_size: int = Field(default=2000, ge=1)

    @field_validator("polls_csv_url")
    @classmethod
    def _polls_url_secure(cls, v: str) -> str:
        # A template starting with {service_url} inherits the partner URL's https check.
        if v and not v.startswith("{service_url}"):
            problem = https_problem(v.replace("{", "").replace("}", ""))
            if problem is not None:
                raise ValueError(f"the poll answers URL {problem}")
        return v
