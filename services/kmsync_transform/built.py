"""Transform's operations, built without validating again what was validated (issue #22).

Validating the two operations of an engagement row cost about 11 % of transform's engine thread
(pydantic 2.13: 7-8 µs per operation). Each builder is a `kmsync_contracts.trusted.FastPath`: the
operation's values are checked against the checks derived from its contract (a padded name from the
tenants file, an empty email, a clock without a time zone, a label outside the seed's fail them) and
the validating constructor runs when one fails, as it always did. Taken as given (not checked per
value, while the contract's field keeps the very type and constraints vouched for): the fields copied
from the Kaltura record, validated at the input boundary (`kmsync_contracts.codecs.decode`); the op
id transform makes (a kind and a hash); an engagement row's record and attributes, made of the
snapshot's validated values and computed numbers, when the session's names from the tenants file
pass the record's own check (`engagement_builders`; checked value by value otherwise: 2.6 µs for 20
entries, a third of validating the operation). tests/transform/test_built.py compares the
operations with their validated twins.

A lead upsert has no builder here: transform calls the validating constructor `LeadUpsert` itself, since
its few scalar fields and short field dict cost pydantic-core less than the fast path's checks and
instance (session 10: 4.2 against 4.3 µs, validation faster in 38 of 40 alternating measurements); a
status ties (4.6 µs both) and a label builds faster (4.5 against 4.8 µs).
"""

from __future__ import annotations

from functools import lru_cache

from kmsync_config.tenants import SessionConfig
from kmsync_contracts.base import NonEmptyStr, Scalar
from kmsync_contracts.kaltura_records import AttendeeStatus, KalturaRecord, SessionEngagement
from kmsync_contracts.marketo_ops import (
    CustomActivity,
    CustomObjectUpsert,
    ProgramMemberData,
    ProgramMemberStatus,
)
from kmsync_contracts.trusted import FastPath, Source, copied_from

#: Every operation names the record's partner and event (its own, validated when it was read) and has an
#: op id transform made (kmsync_transform.op_ids: a kind and a hash).
_IDS = {**copied_from(KalturaRecord, "partner_id", "virtual_event_id"), "op_id": NonEmptyStr}
#: An engagement row's operations: the snapshot's time and session (entry).
_SNAPSHOT = {**_IDS, "source_time": (SessionEngagement, "source_time")}
#: A status record's operations: their source time is the status time.
_STATUS = {**_IDS, "source_time": (AttendeeStatus, "status_time")}

#: An engagement row's record or attributes: transform made them of the snapshot's values and numbers; the
#: object's and the activity type's names are the seed's (kmsync_contracts.seed).
_MADE: dict[str, Source] = {"record": dict[str, Scalar], "attributes": dict[str, Scalar],
                            "object_name": NonEmptyStr, "activity_type": NonEmptyStr}
_ACTIVITY = {**_SNAPSHOT, "activity_date": (SessionEngagement, "source_time"),
             "primary_attribute_value": (SessionEngagement, "entry_id")}

ENGAGEMENT_OBJECT = FastPath(CustomObjectUpsert, {**_SNAPSHOT, **_MADE})
ENGAGEMENT_ACTIVITY = FastPath(CustomActivity, {**_ACTIVITY, **_MADE})
#: The same with the record and attributes checked value by value (names from the tenants file in them).
NAMED_OBJECT = FastPath(CustomObjectUpsert, _SNAPSHOT)
NAMED_ACTIVITY = FastPath(CustomActivity, _ACTIVITY)


STATUS = FastPath(ProgramMemberStatus, _STATUS)
LABEL = FastPath(ProgramMemberData, _STATUS)


def engagement_builders(
    session: SessionConfig | None,
) -> tuple[FastPath[CustomObjectUpsert], FastPath[CustomActivity]]:
    """The builders of an engagement row's operations: the record and attributes taken as given unless a
    session name or channel name of the tenants file (which may reach them) fails the record's check."""
    if session is None or _names_pass(session.name, session.channel_name):
        return ENGAGEMENT_OBJECT, ENGAGEMENT_ACTIVITY
    return NAMED_OBJECT, NAMED_ACTIVITY


@lru_cache(maxsize=4096, typed=True)
def _names_pass(name: str | None, channel_name: str | None) -> bool:
    """Whether a session's name and channel name pass the engagement record's check: the same few names of
    the tenants file on every row, so checked once per pair (bounded: a tenants file reloaded with other
    names makes new pairs; `typed`: a str subclass equal to a checked str is checked itself)."""
    return NAMED_OBJECT.checks["record"]({"n": name, "c": channel_name})
