"""Session engagement → custom object kalturaUserSessionEngagement and activity userSessionEngagement.

Field names, types and order are the seed's (kmsync_contracts.seed). Metrics the snapshot does not
carry (None) are left out of the record, so an upsert never blanks what another report delivered.

Rates are stored as fractions in [0, 1]. Kaltura's reports give some rates as fractions and some as
percentages (docs/reference/kaltura-api.md §8, open question 2), so the scale is decided once per snapshot:
`auto` (default) reads the snapshot's rates as percentages when any of them is above 1, since a
fraction never is, and as fractions otherwise; `fraction` and `percent` force one reading. After
scaling, every rate is clamped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from operator import attrgetter, lt
from typing import Annotated, Any, Literal, NamedTuple, get_args, get_origin

from kmsync_config.tenants import EventConfig, SessionConfig
from kmsync_contracts.base import Scalar
from kmsync_contracts.kaltura_records import SessionEngagement
from kmsync_contracts.seed import (
    ENGAGEMENT_ACTIVITY_FIELDS,
    ENGAGEMENT_OBJECT_FIELDS,
    PRIMARY_FIELD,
    RATE_FIELD_NAMES,
    FieldSpec,
)

RateScale = Literal["auto", "fraction", "percent"]

#: Fields read as fractions: the seed's rates plus the combined play-time ratio (also a share of time).
FRACTION_FIELDS: tuple[str, ...] = (*RATE_FIELD_NAMES, "combined_live_engaged_users_play_time_ratio")
#: The lead link; transform does not know lead ids, the sink fills it in (marketo_ops.CustomObjectUpsert).
LINK_FIELD = "personId"
LEGACY_CHANNEL_ID = 0
LEGACY_CHANNEL_NAME = ""


def clamp_fraction(value: float) -> float:
    return min(1.0, max(0.0, value))


def rates_are_percentages(values: Mapping[str, float | None], scale: RateScale = "auto") -> bool:
    return _percentages(tuple(values.values()), scale)


#: ``_above_one(v)`` is ``1.0 < v``.
_above_one = partial(lt, 1.0)


def _percentages(values: Sequence[float | None], scale: RateScale) -> bool:
    """Whether any value is above 1 (None and 0 are not): in C, a generator cost twice as much (issue #22)."""
    if scale != "auto":
        return scale == "percent"
    return any(map(_above_one, filter(None, values)))


#: The snapshot's fraction fields in one C call (a getattr per name cost more: issue #22).
_FRACTIONS = attrgetter(*FRACTION_FIELDS)


def _fractions(snapshot: SessionEngagement, scale: RateScale) -> list[float | None]:
    """The FRACTION_FIELDS' values as fractions in [0, 1], in that order (None stays None)."""
    raw: tuple[float | None, ...] = _FRACTIONS(snapshot)
    divisor = 100.0 if _percentages(raw, scale) else 1.0
    return [None if v is None else min(1.0, max(0.0, v / divisor)) for v in raw]


def normalise_rates(snapshot: SessionEngagement, scale: RateScale = "auto") -> dict[str, float | None]:
    """Every fraction field of the snapshot as a fraction in [0, 1] (None stays None)."""
    return dict(zip(FRACTION_FIELDS, _fractions(snapshot, scale), strict=True))


#: How a seed data type is written; every other type (string, text, link, ...) as text.
_CASTS: dict[str, Callable[[Any], Scalar]] = {"integer": int, "float": float}
#: A record's fields, in the seed's order, each with its cast (None: the value has the seed's type already).
RecordPlan = tuple[tuple[str, Callable[[Any], Scalar] | None], ...]


def record_plan(fields: tuple[FieldSpec, ...], skip: set[str], typed: frozenset[str] = frozenset()) -> RecordPlan:
    """The plan of `fields` without `skip`; the fields in `typed` are taken as they are (not cast)."""
    return tuple((spec.name, None if spec.name in typed else _CASTS.get(spec.data_type, str))
                 for spec in fields if spec.name not in skip)


class Channel(NamedTuple):
    id: int | None
    name: str | None


def resolve_channel(snapshot: SessionEngagement, session: SessionConfig | None, legacy: bool) -> Channel:
    """Legacy tenants get channel_id 0 and an empty channel_name (the seed's note on existing users)."""
    if legacy:
        return Channel(LEGACY_CHANNEL_ID, LEGACY_CHANNEL_NAME)
    return Channel(
        snapshot.channel_id if snapshot.channel_id is not None else (session.channel_id if session else None),
        snapshot.channel_name if snapshot.channel_name is not None else (session.channel_name if session else None),
    )


def session_config(event: EventConfig, entry_id: str) -> SessionConfig | None:
    for session in event.sessions:
        if session.entry_id == entry_id:
            return session
    return None


def _declared(name: str) -> set[Any]:
    """The types a SessionEngagement field's annotation names (Annotated and Optional unwrapped)."""
    found: set[Any] = set()
    stack = [SessionEngagement.model_fields[name].annotation]
    while stack:
        tp = stack.pop()
        args = get_args(tp)
        if get_origin(tp) is Annotated:
            stack.append(args[0])  # the type; the rest is its constraints
        elif args:
            stack.extend(args)
        else:
            found.add(tp)
    return found - {type(None)}


#: The identity fields engagement_values() sets itself.
_IDENTITY_FIELDS = frozenset({"entry_id", "entry_name", "email", "user", "channel_id", "channel_name", LINK_FIELD})
#: The seed's fields a validated snapshot holds with the seed's type already (an integer field as int, a
#: float field as float: pydantic made them so), and the rates, floats once normalised: not cast again.
_TYPED = frozenset(
    {spec.name for spec in ENGAGEMENT_OBJECT_FIELDS if spec.name in SessionEngagement.model_fields
     and spec.name not in _IDENTITY_FIELDS and _declared(spec.name) == {_CASTS.get(spec.data_type)}}
    | set(FRACTION_FIELDS))
_OBJECT_PLAN = record_plan(ENGAGEMENT_OBJECT_FIELDS, {LINK_FIELD}, _TYPED)
_ACTIVITY_PLAN = record_plan(ENGAGEMENT_ACTIVITY_FIELDS, {PRIMARY_FIELD}, _TYPED)


def engagement_values(
    snapshot: SessionEngagement, email: str, event: EventConfig, scale: RateScale = "auto"
) -> dict[str, object]:
    """Every seed field's value for this snapshot (None where it has none), untyped, among the snapshot's
    other fields: computed once and shared by the object record and the activity attributes. Built from
    the snapshot's __dict__ (a getattr per field cost twice as much: issue #22)."""
    session = session_config(event, snapshot.entry_id)
    channel = resolve_channel(snapshot, session, event.outputs.legacy_activities_only)
    values: dict[str, object] = snapshot.__dict__.copy()  # a copy updated in place: 25 % less than {**a, **b, ...}
    values.update(zip(FRACTION_FIELDS, _fractions(snapshot, scale), strict=True))
    values["entry_id"] = snapshot.entry_id
    values["entry_name"] = snapshot.entry_name if snapshot.entry_name is not None else (
        session.name if session else None)
    values["email"], values["user"] = email, snapshot.user_id
    values["channel_id"], values["channel_name"] = channel
    values[LINK_FIELD] = None
    return values


def _record(plan: RecordPlan, values: Mapping[str, object]) -> dict[str, Scalar]:
    """The plan's fields that have a value, typed, in the plan's (the seed's) order (every plan field
    is one of engagement_values()' keys)."""
    return {name: value if cast is None else cast(value)  # type: ignore[misc]
            for name, cast in plan if (value := values[name]) is not None}


def object_record(values: Mapping[str, object]) -> dict[str, Scalar]:
    """The kalturaUserSessionEngagement record of engagement_values(): every seed field with a value,
    typed as the seed says, in the seed's order. personId is left to the sink."""
    return _record(_OBJECT_PLAN, values)


def activity_attributes(values: Mapping[str, object]) -> dict[str, Scalar]:
    """The userSessionEngagement secondary attributes of engagement_values() (entry_id is the primary)."""
    return _record(_ACTIVITY_PLAN, values)


def engagement_object_record(
    snapshot: SessionEngagement, email: str, event: EventConfig, scale: RateScale = "auto"
) -> dict[str, Scalar]:
    return object_record(engagement_values(snapshot, email, event, scale))


def engagement_activity_attributes(
    snapshot: SessionEngagement, email: str, event: EventConfig, scale: RateScale = "auto"
) -> dict[str, Scalar]:
    return activity_attributes(engagement_values(snapshot, email, event, scale))
