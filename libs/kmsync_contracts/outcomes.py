"""What became of each operation (topic marketo.results.v1), dead letters (*.dlq.v1) and what transform
decided to drop or change (transform.decisions.v1)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, JsonValue, model_validator

from kmsync_contracts.base import ContractModel, NonEmptyStr, Scalar
from kmsync_contracts.kaltura_records import kaltura_key
from kmsync_contracts.marketo_ops import OperationKind
from kmsync_contracts.reasons import ReasonCode

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
    # Correlation keys (issue #19; docs/architecture.md principle 9): who and what this outcome is
    # about, so `kmsync trace` finds one person's story without the operation. Optional: outcomes
    # written before they existed still decode, and a key the sink did not know stays None.
    partner_id: int | None = Field(default=None, gt=0)
    virtual_event_id: int | None = Field(default=None, gt=0)
    #: The session (Kaltura entry id) of a custom object or activity; None for lead and program writes.
    session_id: str | None = None
    #: The person: kmsync_common.email_hash.hash_email of the lead's email under the deployment's key.
    person_key: str | None = Field(default=None, pattern=r"^email#[0-9a-f]+$")
    #: Marketo's lead id of the person, when the sink knew it.
    lead_id: int | None = Field(default=None, gt=0)
    #: Marketo's requestId of the call that carried the record (docs/reference/marketo-api.md §4.1).
    request_id: str | None = None


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


#: What transform decided to drop or change (docs/design/granular-statuses.md §4).
DecisionKind = Literal[
    "forward_only_skip", "truncated", "too_many_polls", "unusable_email", "label_undecided", "poll_moved",
    "activity_once",
]

#: The keys `TransformDecision.detail` must hold, per decision: any one of the alternatives, in full.
#: Other keys may be added (e.g. `from_step`/`to_step`); a reader must ignore keys it does not know.
DECISION_DETAIL_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    # a status (or granular label) lower than the member already has: not written
    "forward_only_skip": (("from_status", "to_status"), ("from_label", "to_label")),
    # a value cut to the seed field's length: written cut
    "truncated": (("field", "original_length", "kept_length"),),
    # the poll's position in its session is past poll_10: not written
    "too_many_polls": (("poll_id", "position"),),
    # Marketo identifies leads by email: nothing of this person written (the dead letter has the record)
    "unusable_email": (("email_problem",),),
    # no schedule known for the event: no granular label written
    "label_undecided": ((),),
    # a known poll arrived with another position: its answer moved to the new slot
    "poll_moved": (("poll_id", "from_position", "to_position"),),
    # another final snapshot of a session whose activity was already emitted: the activity is not sent again
    "activity_once": (("activity_op_id",),),
}


class TransformDecision(ContractModel):
    """A transform decision that dropped or changed data on its way to Marketo
    (topic transform.decisions.v1, key ``partner:event:user``, the input's key).

    One topic answers "what did kmsync not write, or write changed, and why": every record carries
    the keys an operator (and ``kmsync trace``) finds one person in one event by, named as on
    RecordOutcome — ``partner_id``, ``virtual_event_id``, ``session_id`` (the Kaltura entry id, where
    there is one), ``person_key`` (the keyed email hash, as in every log line) — plus Kaltura's
    ``user_id`` and ``op_id`` (the operation that carries the changed data; None when nothing was
    written). ``detail`` holds the documented keys of each decision (DECISION_DETAIL_KEYS); the
    decisions and their keys are listed in README.md, "Operations"."""

    schema_version: Literal[1] = 1
    decision: DecisionKind
    #: kmsync's own reason code (ReasonCode), e.g. kmsync.forward_only_skip.
    reason_code: ReasonCode
    #: For a person: what was dropped or changed, and why.
    reason: NonEmptyStr
    partner_id: int = Field(gt=0)
    virtual_event_id: int = Field(gt=0)
    user_id: NonEmptyStr
    #: The session (Kaltura entry id) for engagement and poll records; None for statuses.
    session_id: str | None = None
    #: kmsync_common.email_hash.hash_email of the email as Kaltura gave it, under the deployment's key
    #: ("email#" + 16 hex of a keyed HMAC); "email#none" when the record has no email.
    person_key: str = Field(pattern=r"^email#([0-9a-f]+|none)$")
    #: The normalised email Marketo knows the lead by; None when it is unusable.
    email: str | None = None
    #: The Marketo instance and program of the event (None when the event is not configured).
    munchkin_id: str | None = None
    program_id: int | None = Field(default=None, gt=0)
    #: The operation written with the changed data (a truncation); None when nothing was written.
    op_id: str | None = None
    #: Where the input record was read, as on a dead letter, and Kaltura's own reference (source_ref).
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    source_ref: str = ""
    #: When Kaltura says the record happened (the input's source_time).
    source_time: AwareDatetime
    decided_at: AwareDatetime
    detail: dict[str, Scalar] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _detail_has_the_documented_keys(self) -> TransformDecision:
        alternatives = DECISION_DETAIL_KEYS[self.decision]
        if not any(all(k in self.detail for k in keys) for keys in alternatives):
            wanted = " or ".join("+".join(keys) for keys in alternatives)
            raise ValueError(f"detail: a {self.decision} decision needs {wanted} (got {sorted(self.detail)})")
        return self

    def partition_key(self) -> str:
        return kaltura_key(self.partner_id, self.virtual_event_id, self.user_id)
