"""The topic catalogue: every topic kmsync uses, in one place (../shared/architecture.md).

Services and tests import these specs; nobody spells a topic name or its settings elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast

from pydantic import BaseModel, JsonValue, TypeAdapter

from kmsync_contracts.kaltura_records import AttendeeStatus, PollResponse, SessionEngagement
from kmsync_contracts.marketo_ops import MARKETO_OPERATION_ADAPTER
from kmsync_contracts.outcomes import ActivityIntent, DeadLetter, IngestWatermark, RecordOutcome

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    #: What the record key is, in words (and how to build it: see each model's partition_key()).
    key: str
    partitions: int
    cleanup_policy: Literal["delete", "compact"]
    #: -1 keeps records forever.
    retention_ms: int
    value: TypeAdapter[object] = field(repr=False, compare=False)
    description: str = ""

    def config(self) -> dict[str, str]:
        """Topic-level configs for an admin create_topics call."""
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


def _adapter(model: type[BaseModel]) -> TypeAdapter[object]:
    return cast(TypeAdapter[object], TypeAdapter(model))


ATTENDEE_STATUS = TopicSpec(
    "kaltura.attendee-status.v1", "partner:event:user", 6, "delete", 14 * DAY_MS,
    _adapter(AttendeeStatus), "Registration and attendance statuses from Kaltura",
)
SESSION_ENGAGEMENT = TopicSpec(
    "kaltura.session-engagement.v1", "partner:event:user", 6, "delete", 14 * DAY_MS,
    _adapter(SessionEngagement), "Per-session engagement snapshots from Kaltura",
)
POLL_RESPONSES = TopicSpec(
    "kaltura.poll-responses.v1", "partner:event:user", 6, "delete", 14 * DAY_MS,
    _adapter(PollResponse), "Poll answers from Kaltura",
)
INGEST_WATERMARKS = TopicSpec(
    "ingest.watermarks.v1", "partner:event:stream:scope", 1, "compact", -1,
    _adapter(IngestWatermark), "How far each pull has read (compacted; last value wins)",
)
INGEST_DLQ = TopicSpec(
    "ingest.dlq.v1", "source reference", 1, "delete", 30 * DAY_MS,
    _adapter(DeadLetter), "Kaltura rows ingest could not read, with line numbers and reasons",
)
MARKETO_OPS = TopicSpec(
    "marketo.ops.v1", "munchkin id", 12, "delete", 7 * DAY_MS,
    cast(TypeAdapter[object], MARKETO_OPERATION_ADAPTER),
    "Operations for Marketo, one instance per partition",
)
TRANSFORM_DLQ = TopicSpec(
    "transform.dlq.v1", "source key", 1, "delete", 30 * DAY_MS,
    _adapter(DeadLetter), "Unmappable input with the reason",
)
MARKETO_RESULTS = TopicSpec(
    "marketo.results.v1", "munchkin id", 6, "delete", 30 * DAY_MS,
    _adapter(RecordOutcome), "One outcome per operation (audit ledger)",
)
MARKETO_DLQ = TopicSpec(
    "marketo.dlq.v1", "munchkin id", 1, "delete", 30 * DAY_MS,
    _adapter(DeadLetter), "Permanent Marketo failures with Marketo's reason code",
)
ACTIVITY_INTENTS = TopicSpec(
    "marketo.activity-intents.v1", "op id", 6, "compact", -1,
    _adapter(ActivityIntent),
    "Custom activities the sink is about to send; tombstoned once their outcome is certain (sink-private)",
)
TRANSFORM_STATE = TopicSpec(
    "transform.state.v1", "table:state key", 6, "compact", -1,
    cast(TypeAdapter[object], TypeAdapter(JsonValue)),
    "Transform's tables (status steps, activity ledger, poll slots and answers); transform-private values",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES, INGEST_WATERMARKS, INGEST_DLQ,
    MARKETO_OPS, TRANSFORM_DLQ, TRANSFORM_STATE, MARKETO_RESULTS, MARKETO_DLQ, ACTIVITY_INTENTS,
)
TOPICS_BY_NAME: dict[str, TopicSpec] = {t.name: t for t in ALL_TOPICS}
