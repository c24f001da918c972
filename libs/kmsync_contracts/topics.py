"""The topic catalogue: every topic kmsync uses, in one place (docs/architecture.md, "Contracts").

Services and tests import these specs; nobody spells a topic name or its settings elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast

from pydantic import AwareDatetime, BaseModel, Field, JsonValue, TypeAdapter

from kmsync_contracts.base import ContractModel
from kmsync_contracts.kaltura_records import AttendeeStatus, PollResponse, SessionEngagement
from kmsync_contracts.marketo_ops import MARKETO_OPERATION_ADAPTER
from kmsync_contracts.outcomes import ActivityIntent, DeadLetter, IngestWatermark, RecordOutcome, TransformDecision

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
#: What transform reads: ingest's three Kaltura topics (transform's routing; ingest's backfill loader
#: paces itself on transform's backlog on them).
TRANSFORM_INPUTS: tuple[TopicSpec, ...] = (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES)
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
#: The backfill lane (architecture.md principle 10): operations of records ingest marked as history. Keyed and
#: partitioned like marketo.ops.v1 (same key, same partition count), so an instance's live and backfill
#: operations have the same partition number and the sink's range assignment gives both to one replica,
#: which owns the instance's budget (docs/decisions.md "Live before backfill").
MARKETO_OPS_BACKFILL = TopicSpec(
    "marketo.ops.backfill.v1", "munchkin id", MARKETO_OPS.partitions, "delete", 7 * DAY_MS,
    cast(TypeAdapter[object], MARKETO_OPERATION_ADAPTER),
    "Operations of backfills (history loads) for Marketo, served after live ones on a capped budget",
)
TRANSFORM_DLQ = TopicSpec(
    "transform.dlq.v1", "source key", 1, "delete", 30 * DAY_MS,
    _adapter(DeadLetter), "Unmappable input with the reason",
)
TRANSFORM_DECISIONS = TopicSpec(
    "transform.decisions.v1", "partner:event:user", 6, "delete", 30 * DAY_MS,
    _adapter(TransformDecision),
    "What transform dropped or changed on the way to Marketo (forward-only skips, truncations, polls past "
    "poll_10, unusable emails, moved polls), with each person's correlation keys",
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



class PullTrigger(ContractModel):
    """A Kaltura notification forwarded by the ingest replica that received it to the replica that
    owns the event's pulls (ingest.pull-owners.v1, keyed and partitioned by the event)."""

    schema_version: Literal[1] = 1
    partner_id: int = Field(gt=0)
    virtual_event_id: int = Field(gt=0)
    #: eventNotificationJobId (or the body's digest), for de-duplication at the owner.
    job_id: str = Field(min_length=1)
    #: What the notification is about: virtual_event, entry, user, user_profile.
    kind: str = Field(min_length=1)
    wants_statuses: bool = False
    app_guid: str | None = None
    entry_id: str | None = None
    #: The notification's object (entry times, profile version), as received.
    fields: dict[str, JsonValue] = Field(default_factory=dict)
    forwarded_at: AwareDatetime

    def partition_key(self) -> str:
        return f"{self.partner_id}:{self.virtual_event_id}"


INGEST_PULL_OWNERS = TopicSpec(
    "ingest.pull-owners.v1", "partner:event", 6, "delete", 7 * DAY_MS,
    _adapter(PullTrigger),
    "Ingest's pull coordination: its partitions are shared by the ingest consumer group (the owner of a "
    "partition runs the pulls of the events that map to it) and carry notifications forwarded to that owner",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES, INGEST_WATERMARKS, INGEST_DLQ,
    MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DLQ, TRANSFORM_DECISIONS, TRANSFORM_STATE, MARKETO_RESULTS,
    MARKETO_DLQ, ACTIVITY_INTENTS,
    INGEST_PULL_OWNERS,
)
TOPICS_BY_NAME: dict[str, TopicSpec] = {t.name: t for t in ALL_TOPICS}

#: Topics that must have the same number of partitions: the sink's range assignment pairs their partition
#: numbers, and an instance's key must land on the same number in each (its live and backfill lanes share
#: one budget on one replica; MARKETO_OPS_BACKFILL above).
CO_PARTITIONED: tuple[tuple[TopicSpec, ...], ...] = ((MARKETO_OPS, MARKETO_OPS_BACKFILL),)


def co_partition_problems(counts: dict[str, int], prefix: str = "") -> list[str]:
    """Why the existing topics (name → partition count; absent: not created yet) break CO_PARTITIONED."""
    problems = []
    for group in CO_PARTITIONED:
        found = {f"{prefix}{t.name}": counts[f"{prefix}{t.name}"] for t in group if f"{prefix}{t.name}" in counts}
        if len(set(found.values())) > 1:
            listed = ", ".join(f"{name} has {n}" for name, n in found.items())
            problems.append(
                f"topics {' and '.join(found)} must have the same number of partitions ({listed}): the sink pairs "
                "their partition numbers so an instance's live and backfill lanes share one budget on one replica; "
                f"add partitions to the smaller topic (kafka-topics.sh --alter --partitions {max(found.values())}) "
                "while transform and the sink are stopped and their topics drained")
    return problems



#: The key of a record that carries nothing (no value): ingest writes one, in a committed transaction, on a
#: kaltura.* or ingest.dlq.v1 partition whose open transaction a broker crash left hanging, so that the commit
#: marker of its producer id ends that transaction committed and its records reach their readers
#: (services/kmsync_ingest/publisher.py ``Publisher.end_left_open``). Every reader of those topics skips it.
LEFT_OPEN_MARKER_KEY = b"kmsync:left-open-marker"


def is_left_open_marker(key: bytes | None, value: bytes | None) -> bool:
    """True for the record ``LEFT_OPEN_MARKER_KEY`` names: nothing to decode, nothing to dead-letter."""
    return not value and key == LEFT_OPEN_MARKER_KEY
