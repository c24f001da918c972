"""What a Marketo instance must contain for kmsync, as Marketo API shapes.

Names, steps, field types and the custom objects' dedupe keys come from the contracts
(kmsync_contracts.seed, itself the seed's "How to set up Marketo" plus kmsync's dedupe keys); this
module only adds what the seed leaves to the implementer: display names, trigger/filter names and the
lead link.
"""

from __future__ import annotations

from dataclasses import dataclass

from kmsync_contracts import seed
from kmsync_marketo import endpoints as ep


@dataclass(frozen=True)
class ExpectedField:
    name: str
    data_type: str
    description: str
    dedupe: bool = False
    #: (object, field) for a link field.
    related_to: tuple[str, str] | None = None


@dataclass(frozen=True)
class ExpectedObject:
    api_name: str
    display_name: str
    plural_name: str
    description: str
    fields: tuple[ExpectedField, ...]

    @property
    def dedupe_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.dedupe)


@dataclass(frozen=True)
class ExpectedActivityType:
    api_name: str
    name: str
    description: str
    trigger_name: str
    filter_name: str
    primary: ExpectedField
    attributes: tuple[ExpectedField, ...]


CHANNEL_STATUSES = seed.CHANNEL_STATUSES
#: Program type the seed asks for ("Make sure to use event type").
PROGRAM_TYPE = "Event"


def _fields(specs: tuple[seed.FieldSpec, ...], dedupe: tuple[str, ...]) -> tuple[ExpectedField, ...]:
    return tuple(
        ExpectedField(
            s.name,
            s.data_type,
            s.description,
            s.name in dedupe,
            ("Lead", "id") if s.data_type == "link" else None,
        )
        for s in specs
    )


ENGAGEMENT_OBJECT = ExpectedObject(
    api_name=seed.ENGAGEMENT_OBJECT_API_NAME,
    display_name="Kaltura User Session Engagement",
    plural_name="Kaltura User Session Engagements",
    description="Kaltura Virtual Events engagement per user and entry",
    fields=_fields(seed.ENGAGEMENT_OBJECT_FIELDS, seed.ENGAGEMENT_OBJECT_DEDUPE_FIELDS),
)
POLLS_OBJECT = ExpectedObject(
    api_name=seed.POLLS_OBJECT_API_NAME,
    display_name="Kaltura User Polls",
    plural_name="Kaltura User Polls",
    description="Kaltura Virtual Events poll answers per user and entry",
    fields=_fields(seed.POLLS_OBJECT_FIELDS, seed.POLLS_OBJECT_DEDUPE_FIELDS),
)
CUSTOM_OBJECTS: tuple[ExpectedObject, ...] = (ENGAGEMENT_OBJECT, POLLS_OBJECT)

_activity_fields = _fields(seed.ENGAGEMENT_ACTIVITY_FIELDS, ())
ENGAGEMENT_ACTIVITY = ExpectedActivityType(
    api_name=seed.ENGAGEMENT_ACTIVITY_API_NAME,
    name=seed.ENGAGEMENT_ACTIVITY_API_NAME,
    description="Kaltura Virtual Events user session engagement",
    trigger_name="Has Kaltura session engagement",
    filter_name="Had Kaltura session engagement",
    primary=next(f for f in _activity_fields if f.name == seed.PRIMARY_FIELD),
    attributes=tuple(f for f in _activity_fields if f.name != seed.PRIMARY_FIELD),
)

#: The seed's API permissions ("The API user will need to have access to the following
#: permissions"), each with one harmless read that needs it (docs/reference/marketo-api.md §5–8), plus the custom
#: object permission the two custom objects need.
PERMISSION_PROBES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("Read-Write Person", ep.LEADS_DESCRIBE, {}),
    ("Read-Write Activity", ep.ACTIVITY_TYPES, {}),
    ("Read-Write Activity Metadata", ep.CUSTOM_ACTIVITY_TYPES, {}),
    ("Read-Write Assets", ep.CHANNELS, {"maxReturn": "1"}),
    ("Read-Write Campaigns", ep.CAMPAIGNS, {"batchSize": "1"}),
    ("Read-Write Custom Object", ep.CUSTOM_OBJECTS, {}),
)
