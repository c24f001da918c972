"""Shape an instance the way a Marketo admin does in the UI (issue #17).

The seed tells the admin to create the channel, the Event program, the custom activity type and the
custom objects, adding their fields "as desired". A real instance therefore has some of the seed's
fields, its own lengths, its own dedupe fields, and, for custom objects made in the UI, an API name
ending in ``_c`` (the seed names one object ``kalturaUserPolls_c``; docs/reference/marketo-api.md §9.2 shows
``car_c``). ``apply_shape`` creates such an instance's schema directly (approved), as the UI would;
``POST /_sandbox/shape`` and ``marketo-sandbox --shape FILE|kaltura-partial`` call it.

Whether the UI also adds ``_c`` to custom activity type API names is UNCONFIRMED: ``uiSuffix``
(default false for activity types, true for custom objects) chooses.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kmsync_contracts import seed
from kmsync_contracts.granular import GRANULAR_STATUS_DISPLAY_NAME, GRANULAR_STATUS_FIELD

from .api_programs import add_channel, add_program
from .instance import Instance
from .member_field_defs import add_member_field
from .model import ActivityType, ActivityTypeVersion, Attribute, COField, COType, COVersion

UI_SUFFIX = "_c"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StatusShape(_Spec):
    name: str = Field(min_length=1)
    step: int = Field(ge=0)
    success: bool = False


class ChannelShape(_Spec):
    name: str = Field(min_length=1)
    applicable_program_type: str = Field("event", alias="applicableProgramType")
    statuses: list[StatusShape] = Field(min_length=1)


class ProgramShape(_Spec):
    name: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    type: str = "Event"
    id: int | None = Field(None, ge=1)


class RelatedTo(_Spec):
    name: str = "Lead"
    field: str = "id"


class FieldShape(_Spec):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    data_type: str = Field("string", alias="dataType")
    #: Characters (string types); None: Marketo's 255 (docs/reference/marketo-api.md §5.3).
    length: int | None = Field(None, ge=1, le=255)
    dedupe: bool = False
    related_to: RelatedTo | None = Field(None, alias="relatedTo")


class CustomObjectShape(_Spec):
    #: The API name the admin typed; the UI adds ``_c`` when ``ui_suffix``.
    api_name: str = Field(alias="apiName", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    display_name: str = Field(alias="displayName", min_length=1)
    fields: list[FieldShape] = Field(min_length=1)
    ui_suffix: bool = Field(True, alias="uiSuffix")


class AttributeShape(_Spec):
    api_name: str = Field(alias="apiName", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    name: str | None = None
    data_type: str = Field("string", alias="dataType")
    length: int | None = Field(None, ge=1, le=255)


class ActivityTypeShape(_Spec):
    api_name: str = Field(alias="apiName", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    name: str = Field(min_length=1)
    primary: AttributeShape
    attributes: list[AttributeShape] = Field(default_factory=list, max_length=20)
    ui_suffix: bool = Field(False, alias="uiSuffix")


class MemberFieldShape(_Spec):
    """A program member custom field the admin created (docs/reference/marketo-api.md §13.2)."""

    name: str = Field(min_length=1)
    display_name: str = Field(min_length=1, alias="displayName")
    data_type: str = Field("string", alias="dataType")
    length: int | None = None


class InstanceShape(_Spec):
    channels: list[ChannelShape] = Field(default_factory=list)
    member_fields: list[MemberFieldShape] = Field(default_factory=list, alias="memberFields")
    programs: list[ProgramShape] = Field(default_factory=list)
    custom_objects: list[CustomObjectShape] = Field(default_factory=list, alias="customObjects")
    activity_types: list[ActivityTypeShape] = Field(default_factory=list, alias="activityTypes")


def ui_api_name(typed: str, suffix: bool) -> str:
    return typed if not suffix or typed.endswith(UI_SUFFIX) else typed + UI_SUFFIX


def apply_shape(inst: Instance, shape: InstanceShape, now: float) -> dict[str, Any]:
    """Create everything in ``shape`` on ``inst`` (approved, as the UI leaves it). ValueError when
    something already exists or is invalid. Returns the API names Marketo gave them."""
    for ch in shape.channels:
        add_channel(inst, ch.name, [(s.name, s.step, s.success) for s in ch.statuses], ch.applicable_program_type,
                    now)
    program_ids = [add_program(inst, p.name, p.channel, p.type, now, "", p.id).id for p in shape.programs]
    objects = [_object(inst, o, now) for o in shape.custom_objects]
    types = [_activity_type(inst, t, now) for t in shape.activity_types]
    for mf in shape.member_fields:
        add_member_field(inst.member_fields, mf.name, mf.display_name, mf.data_type, mf.length)
    return {"programIds": program_ids, "customObjects": objects, "activityTypes": types}


def _object(inst: Instance, spec: CustomObjectShape, now: float) -> str:
    api_name = ui_api_name(spec.api_name, spec.ui_suffix)
    if api_name in inst.co_types:
        raise ValueError(f"custom object {api_name!r} already exists")
    dedupe = [f for f in spec.fields if f.dedupe]
    if not 1 <= len(dedupe) <= 3:
        raise ValueError(f"custom object {api_name!r} needs 1 to 3 dedupe fields (docs/reference/marketo-api.md §2.2)")
    if sum(1 for f in spec.fields if f.data_type == "link") > 1:
        raise ValueError(f"custom object {api_name!r}: at most one link field")
    fields = []
    for f in spec.fields:
        related = (f.related_to.name.capitalize() if f.related_to.name.lower() == "lead" else f.related_to.name,
                   f.related_to.field) if f.related_to else None
        if f.data_type == "link" and related is None:
            related = ("Lead", "id")
        fields.append(COField(name=f.name, display_name=f.name, data_type=f.data_type, is_dedupe=f.dedupe,
                              related_to=related, length=f.length, updateable=not f.dedupe))
    version = COVersion(display_name=spec.display_name, plural_name=spec.display_name + "s", description=None,
                        show_in_lead_detail=True, fields=fields)
    inst.co_types[api_name] = COType(api_name=api_name, created=now, updated=now, approved=version)
    inst.co_records[api_name] = {}
    return api_name


def _attribute(spec: AttributeShape, primary: bool) -> Attribute:
    return Attribute(api_name=spec.api_name, name=spec.name or spec.api_name, data_type=spec.data_type,
                     is_primary=primary, length=spec.length)


def _activity_type(inst: Instance, spec: ActivityTypeShape, now: float) -> str:
    api_name = ui_api_name(spec.api_name, spec.ui_suffix)
    if api_name in inst.activity_types and not inst.activity_types[api_name].deleted:
        raise ValueError(f"activity type {api_name!r} already exists")
    version = ActivityTypeVersion(name=spec.name, description=None, trigger_name=f"Has {spec.name}",
                                  filter_name=f"Had {spec.name}", primary=_attribute(spec.primary, True),
                                  attributes=[_attribute(a, False) for a in spec.attributes])
    inst.activity_types[api_name] = ActivityType(id=inst.next_id("activity_type"), api_name=api_name, created=now,
                                                 updated=now, approved=version)
    return api_name


# ------------------------------------------------------------------ the "admin as desired" instance
#: Program id of the shaped Event program.
PARTIAL_PROGRAM_ID = 1001
#: A third of the engagement object's 30 seed fields (entry_name shortened to 40 characters).
PARTIAL_ENGAGEMENT_FIELDS = ("entry_id", "personId", "email", "user", "entry_name", "plays", "vod_minutes_viewed",
                             "live_minutes_viewed", "answered_polls", "total_reactions_activity")
#: Half of the activity type's 20 seed fields (entry_id primary and 9 attributes).
PARTIAL_ACTIVITY_FIELDS = ("entry_id", "entry_name", "email", "user", "plays", "vod_minutes_viewed",
                           "live_minutes_viewed", "total_vod_completion_rate", "clap_clicked_count",
                           "heart_clicked_count")
#: Polls object with poll_1..3 only.
PARTIAL_POLL_SLOTS = 3
ENTRY_NAME_LENGTH = 40


def kaltura_partial_shape() -> InstanceShape:
    """What an admin following the seed "as desired" might build on an empty instance: the channel
    and Event program, ``kalturaUserSessionEngagement_c`` (UI-created) with a third of the fields,
    the activity type with half of its fields, the polls object with poll_1..3 only."""
    types = {f.name: f.data_type for f in seed.ENGAGEMENT_OBJECT_FIELDS}
    engagement = [FieldShape(name=n, data_type=types[n], dedupe=n in seed.ENGAGEMENT_OBJECT_DEDUPE_FIELDS,
                             length=ENTRY_NAME_LENGTH if n == "entry_name" else None)
                  for n in PARTIAL_ENGAGEMENT_FIELDS]
    polls = [FieldShape(name=f.name, data_type=f.data_type, dedupe=f.name in seed.POLLS_OBJECT_DEDUPE_FIELDS)
             for f in seed.POLLS_OBJECT_FIELDS[:3 + 3 * PARTIAL_POLL_SLOTS]]
    act_types = {f.name: f.data_type for f in seed.ENGAGEMENT_ACTIVITY_FIELDS}
    return InstanceShape(
        channels=[ChannelShape(name="Kaltura Virtual Event", statuses=[
            StatusShape(name=s.name, step=s.step, success=s.success) for s in seed.CHANNEL_STATUSES])],
        programs=[ProgramShape(name="Kaltura Event (admin)", channel="Kaltura Virtual Event",
                               id=PARTIAL_PROGRAM_ID)],
        custom_objects=[
            CustomObjectShape(api_name=seed.ENGAGEMENT_OBJECT_API_NAME, display_name="Kaltura User Session Engagement",
                              fields=engagement),
            CustomObjectShape(api_name="kalturaUserPolls", display_name="Kaltura User Polls", fields=polls),
        ],
        activity_types=[ActivityTypeShape(
            api_name=seed.ENGAGEMENT_ACTIVITY_API_NAME, name="Kaltura Session Engagement",
            primary=AttributeShape(api_name="entry_id", data_type="string"),
            attributes=[AttributeShape(api_name=n, data_type=act_types[n],
                                       length=ENTRY_NAME_LENGTH if n == "entry_name" else None)
                        for n in PARTIAL_ACTIVITY_FIELDS[1:]])],
        # The program member field for granular statuses, as the check's UI instruction says (issue #16).
        member_fields=[MemberFieldShape(name=GRANULAR_STATUS_FIELD, display_name=GRANULAR_STATUS_DISPLAY_NAME)],
    )


BUILTIN_SHAPES = {"kaltura-partial": kaltura_partial_shape}
