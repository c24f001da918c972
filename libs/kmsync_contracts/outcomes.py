"""What became of each operation (topic marketo.results.v1) and dead letters (*.dlq.v1)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, JsonValue

from kmsync_contracts.base import ContractModel, NonEmptyStr
from kmsync_contracts.marketo_ops import OperationKind

OutcomeStatus = Literal["created", "updated", "skipped", "failed"]


class RecordOutcome(ContractModel):
    """One operation's final outcome in Marketo: the audit ledger, one record per op_id."""

    schema_version: Literal[1] = 1
    op_id: NonEmptyStr
    munchkin_id: NonEmptyStr
    kind: OperationKind
    status: OutcomeStatus
    #: Marketo's id of what was written (lead id, marketoGUID, activity id), when it returns one.
    marketo_id: str | None = None
    #: Marketo's reason code (e.g. "1037" for a skipped lower status, "1004" lead not found).
    reason_code: str | None = None
    reason: str | None = None
    api: Literal["rest", "bulk"] = "rest"
    attempts: int = Field(default=1, ge=1)
    source_time: AwareDatetime
    decided_at: AwareDatetime


class ActivityIntent(ContractModel):
    """The sink is about to send this custom activity to Marketo (the sink's compacted
    ``marketo.activity-intents.v1``, key: op_id; a tombstone once its outcome is certain).

    Custom activities are insert-only, so an intent with no certain outcome (a kill, an outage, a
    drain, an ambiguous answer) is verified against the lead's activity log before it is sent again:
    what the sink sent is what it looks for."""

    schema_version: Literal[1] = 1
    op_id: NonEmptyStr
    munchkin_id: NonEmptyStr
    lead_id: int = Field(gt=0)
    activity_type_id: int = Field(gt=0)
    primary_attribute_value: NonEmptyStr
    activity_date: AwareDatetime
    recorded_at: AwareDatetime


Stage = Literal["ingest", "transform", "sink"]


class DeadLetter(ContractModel):
    """A record kmsync could not process, kept with the reason so it can be fixed and replayed."""

    schema_version: Literal[1] = 1
    stage: Stage
    #: Machine-readable: a Marketo code ("1003") or a kmsync reason ("missing_email").
    reason_code: NonEmptyStr
    #: For a person: what is wrong and how to fix it.
    reason: NonEmptyStr
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    source_key: str | None = None
    #: The original record: decoded JSON when it parsed, else the raw text.
    payload: JsonValue
    attempts: int = Field(default=1, ge=1)
    failed_at: AwareDatetime


class SessionTimes(ContractModel):
    """A session's name and times as Kaltura told them (an entry notification's startDate/endDate):
    kept with ingest's watermarks so a restarted ingest still knows which sessions have ended."""

    name: str | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime


class IngestWatermark(ContractModel):
    """How far ingest has pulled one stream of one virtual event (compacted topic)."""

    schema_version: Literal[1] = 1
    partner_id: int = Field(gt=0)
    virtual_event_id: int = Field(gt=0)
    stream: Literal["statuses", "engagement", "polls"]
    #: Empty for event-wide streams, the entry id for per-session streams.
    scope: str = ""
    #: Inclusive: records with exactly this time are re-read and deduplicated by seen_ids.
    watermark: AwareDatetime
    seen_ids: tuple[str, ...] = ()
    recorded_at: AwareDatetime
    #: Only on the engagement stream's ``window:<entry>`` scope: the session's times.
    session: SessionTimes | None = None

    def partition_key(self) -> str:
        return f"{self.partner_id}:{self.virtual_event_id}:{self.stream}:{self.scope}"
