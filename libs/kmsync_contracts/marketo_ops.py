"""Operations transform asks the sink to perform in Marketo (topic marketo.ops.v1).

Keyed by the Marketo instance (munchkin id) so one instance's operations sit on one partition and
one sink replica owns that instance's API budget (docs/architecture.md, principle 3).
Every operation names its lead by email: the sink upserts leads first and resolves lead ids.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, TypeAdapter, field_validator

from kmsync_contracts.base import ContractModel, NonEmptyStr, Scalar
from kmsync_contracts.seed import GRANULAR_STATUS_LABELS


class OperationBase(ContractModel):
    schema_version: Literal[1] = 1
    #: Deterministic id: the same source fact always yields the same op_id (idempotence key).
    op_id: NonEmptyStr
    munchkin_id: NonEmptyStr
    partner_id: int = Field(gt=0)
    virtual_event_id: int = Field(gt=0)
    #: The lead's email, normalised (trimmed, lower-case): the lead's identity in Marketo.
    email: NonEmptyStr
    #: Kaltura's time for the fact behind this operation (end-to-end latency starts here).
    source_time: AwareDatetime
    emitted_at: AwareDatetime


class LeadUpsert(OperationBase):
    """Create or update the lead (lookup by email) with the given lead fields."""

    kind: Literal["lead_upsert"] = "lead_upsert"
    #: Marketo lead field API names → values (e.g. firstName, lastName). email is implied.
    fields: dict[str, Scalar] = Field(default_factory=dict)


class ProgramMemberStatus(OperationBase):
    """Set the lead's progression status in the event program (one status name per API call)."""

    kind: Literal["program_member_status"] = "program_member_status"
    program_id: int = Field(gt=0)
    status_name: NonEmptyStr
    step: int = Field(ge=0)
    #: The seed's granular label ("Confirmed email", ...), carried for reporting.
    granular_status: str | None = None


class ProgramMemberData(OperationBase):
    """Write the seed's granular label on the lead's program membership (Sync Program Member Data,
    docs/reference/marketo-api.md §13.4). Carries the label, not a Marketo field name: the sink
    resolves the instance's field, so renaming the field changes no operation and no op_id."""

    kind: Literal["program_member_data"] = "program_member_data"
    program_id: int = Field(gt=0)
    granular_status: NonEmptyStr
    #: kmsync_contracts.granular.label_rank: (channel step, sub-rank); the sink keeps the highest per lead.
    label_rank: tuple[int, int]

    @field_validator("granular_status")
    @classmethod
    def _a_seed_label(cls, v: str) -> str:
        if v not in GRANULAR_STATUS_LABELS:
            raise ValueError(f"not one of the seed's granular labels: {', '.join(GRANULAR_STATUS_LABELS)}")
        return v


class CustomObjectUpsert(OperationBase):
    """Upsert one custom object record, deduplicated by the object's dedupe fields."""

    kind: Literal["custom_object_upsert"] = "custom_object_upsert"
    object_name: NonEmptyStr
    dedupe_fields: tuple[NonEmptyStr, ...] = Field(min_length=1)
    #: Field API name → value. A link field to the lead (personId) is filled in by the sink.
    record: dict[str, Scalar]


class CustomActivity(OperationBase):
    """Add one custom activity to the lead. Insert-only in Marketo: op_id is the ledger id."""

    kind: Literal["custom_activity"] = "custom_activity"
    #: The activity type's API name; the sink resolves it to activityTypeId.
    activity_type: NonEmptyStr
    primary_attribute_value: NonEmptyStr
    activity_date: AwareDatetime
    attributes: dict[str, Scalar] = Field(default_factory=dict)


MarketoOperation = Annotated[
    LeadUpsert | ProgramMemberStatus | ProgramMemberData | CustomObjectUpsert | CustomActivity,
    Field(discriminator="kind"),
]
OperationKind = Literal[
    "lead_upsert", "program_member_status", "program_member_data", "custom_object_upsert", "custom_activity"
]
MARKETO_OPERATION_ADAPTER: TypeAdapter[MarketoOperation] = TypeAdapter(MarketoOperation)
