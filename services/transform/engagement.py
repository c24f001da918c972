"""Session engagement → custom object kalturaUserSessionEngagement and activity userSessionEngagement.

Field names, types and order are the seed's (kmsync_contracts.seed). Metrics the snapshot does not
carry (None) are left out of the record, so an upsert never blanks what another report delivered.

Rates are stored as fractions in [0, 1]. Kaltura's reports give some rates as fractions and some as
percentages (kaltura-api.md §8, open question 2), so the scale is decided once per snapshot:
`auto` (default) reads the snapshot's rates as percentages when any of them is above 1, since a
fraction never is, and as fractions otherwise; `fraction` and `percent` force one reading. After
scaling, every rate is clamped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

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
    if scale != "auto":
        return scale == "percent"
    return any(v is not None and v > 1.0 for v in values.values())


def normalise_rates(snapshot: SessionEngagement, scale: RateScale = "auto") -> dict[str, float | None]:
    """Every fraction field of the snapshot as a fraction in [0, 1] (None stays None)."""
    raw: dict[str, float | None] = {name: getattr(snapshot, name) for name in FRACTION_FIELDS}
    divisor = 100.0 if rates_are_percentages(raw, scale) else 1.0
    return {name: None if v is None else clamp_fraction(v / divisor) for name, v in raw.items()}


def _typed(spec: FieldSpec, value: object) -> Scalar:
    if value is None:
        return None
    if spec.data_type == "integer":
        return int(value)  # type: ignore[call-overload]
    if spec.data_type == "float":
        return float(value)  # type: ignore[arg-type]
    return str(value)


@dataclass(frozen=True)
class Channel:
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


def _values(
    snapshot: SessionEngagement, email: str, event: EventConfig, scale: RateScale
) -> dict[str, object]:
    session = session_config(event, snapshot.entry_id)
    channel = resolve_channel(snapshot, session, event.outputs.legacy_activities_only)
    values: dict[str, object] = {
        name: getattr(snapshot, name, None) for name in (f.name for f in ENGAGEMENT_OBJECT_FIELDS)
    }
    values.update(normalise_rates(snapshot, scale))
    values.update(
        entry_id=snapshot.entry_id,
        entry_name=snapshot.entry_name if snapshot.entry_name is not None else (session.name if session else None),
        email=email,
        user=snapshot.user_id,
        channel_id=channel.id,
        channel_name=channel.name,
        personId=None,
    )
    return values


def _record(fields: tuple[FieldSpec, ...], values: Mapping[str, object], skip: set[str]) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for spec in fields:
        if spec.name in skip:
            continue
        typed = _typed(spec, values.get(spec.name))
        if typed is not None:
            out[spec.name] = typed
    return out


def engagement_object_record(
    snapshot: SessionEngagement, email: str, event: EventConfig, scale: RateScale = "auto"
) -> dict[str, Scalar]:
    """The kalturaUserSessionEngagement record: every seed field the snapshot has a value for,
    typed as the seed says, in the seed's order. personId is left to the sink."""
    return _record(ENGAGEMENT_OBJECT_FIELDS, _values(snapshot, email, event, scale), {LINK_FIELD})


def engagement_activity_attributes(
    snapshot: SessionEngagement, email: str, event: EventConfig, scale: RateScale = "auto"
) -> dict[str, Scalar]:
    """The userSessionEngagement secondary attributes (entry_id is the primary attribute)."""
    return _record(ENGAGEMENT_ACTIVITY_FIELDS, _values(snapshot, email, event, scale), {PRIMARY_FIELD})
