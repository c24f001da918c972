"""`kmsync reconcile --fix`: re-drive only what the reconciliation found missing or wrong (issue #19).

The Kaltura records pulled now (kaltura_now.py) of the people and sessions with a problem go
through transform's own pure steps (kmsync_transform.routing.route, then a Transformer with fresh
state, so forward-only state from the first run does not drop them) and the operations they make
are produced to ``marketo.ops.v1``, keyed by the instance like transform's, for the running sink to
write. What is re-driven, per problem:

- a missing lead, a missing or wrong program member: the person's lead upsert and current status;
- a missing engagement or poll object: that session's object of that person (and the person's lead
  upsert, so the sink knows the lead);
- a missing custom activity: the activity. The sink's activity ledger skips an activity it already
  wrote (insert-only, docs/architecture.md principle 2), so one deleted in Marketo is reported, not
  written twice.

Duplicates and unexpected records are never touched: kmsync does not delete from Marketo.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kmsync_cli.reconcile import Reconciliation
from kmsync_config.tenants import TenantsConfig
from kmsync_contracts import encode
from kmsync_contracts.kaltura_records import AttendeeStatus, KalturaRecord, PollResponse, SessionEngagement
from kmsync_contracts.marketo_ops import MarketoOperation
from kmsync_contracts.seed import ENGAGEMENT_ACTIVITY_API_NAME, ENGAGEMENT_OBJECT_API_NAME, POLLS_OBJECT_API_NAME
from kmsync_contracts.seed import PRIMARY_FIELD as ENTRY_FIELD
from kmsync_contracts.topics import ATTENDEE_STATUS, MARKETO_OPS, POLL_RESPONSES, SESSION_ENGAGEMENT, TopicSpec
from kmsync_kafka.clients import reliable_producer, topic_name
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.routing import route
from kmsync_transform.transformer import Transformer, TransformState

PERSON_KINDS = ("leads", "program members")
OBJECT_KINDS = {f"{ENGAGEMENT_OBJECT_API_NAME} objects": ENGAGEMENT_OBJECT_API_NAME,
                f"{POLLS_OBJECT_API_NAME} objects": POLLS_OBJECT_API_NAME}
ACTIVITY_KIND = f"{ENGAGEMENT_ACTIVITY_API_NAME} activities"


@dataclass
class Fixes:
    """What to re-drive: people (normalised emails), (object, entry, email), (entry, email) activities."""

    people: set[str] = field(default_factory=set)
    objects: set[tuple[str, str, str]] = field(default_factory=set)
    activities: set[tuple[str, str]] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.people or self.objects or self.activities)

    def wants(self, op: MarketoOperation) -> bool:
        if op.kind == "custom_object_upsert":
            return (op.object_name, str(op.record.get(ENTRY_FIELD)), op.email) in self.objects
        if op.kind == "custom_activity":
            return (op.primary_attribute_value, op.email) in self.activities
        if op.kind == "lead_upsert":
            return op.email in self.people or any(e == op.email for _, _, e in self.objects) \
                or any(e == op.email for _, e in self.activities)
        return op.email in self.people


def _session_key(text: str) -> tuple[str, str] | None:
    """A session row's key as the reconciliation lists it: "('1_abc', 'ann@x.com')"."""
    try:
        key = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return (str(key[0]), str(key[1])) if isinstance(key, tuple) and len(key) == 2 else None


def fixes_of(result: Reconciliation) -> Fixes:
    """The missing and wrong records of a reconciliation, as what to re-drive."""
    fixes = Fixes()
    for t in result.tallies:
        if t.kind in PERSON_KINDS:
            fixes.people |= set(t.missing) | {w.split(":", 1)[0] for w in t.wrong}
        elif t.kind in OBJECT_KINDS:
            fixes.objects |= {(OBJECT_KINDS[t.kind], *k) for k in map(_session_key, t.missing) if k}
        elif t.kind == ACTIVITY_KIND:
            fixes.activities |= {k for k in map(_session_key, t.missing) if k}
    return fixes


_SPECS: dict[type[KalturaRecord], TopicSpec] = {
    AttendeeStatus: ATTENDEE_STATUS, SessionEngagement: SESSION_ENGAGEMENT, PollResponse: POLL_RESPONSES}


def operations(records: Iterable[KalturaRecord], tenants: TenantsConfig, fixes: Fixes,
               now: datetime, options: Mapping[str, Any] | None = None) -> list[MarketoOperation]:
    """The operations transform makes of these records (fresh state) that re-drive ``fixes``, once each.
    ``options``: the running transform's (``TransformSettings.transformer_options``: rate scale, dedupe fields,
    poll slots), so the operations are the ones it makes."""
    transformer = Transformer(tenants, TransformState.in_memory(), **(options or {}))
    out: dict[str, MarketoOperation] = {}
    for record in sorted(records, key=lambda r: r.source_time):
        routed = route(_SPECS[type(record)], encode(record), SourceRef(key=record.partition_key()),
                       tenants, now).routed
        if routed is None:
            continue
        for op in transformer.apply(routed).ops:
            if fixes.wants(op):
                out.setdefault(op.op_id, op)
    return sorted(out.values(), key=lambda op: op.kind != "lead_upsert")


async def redrive(bootstrap: str, prefix: str, ops: list[MarketoOperation]) -> None:
    """Produce the operations to marketo.ops.v1 (acks=all, idempotent), keyed by instance like transform."""
    producer = reliable_producer(bootstrap)
    try:  # stopped even when its start fails (Kafka down): an unstopped producer logs an ERROR when collected
        await producer.start()
        topic = topic_name(MARKETO_OPS, prefix)
        for op in ops:
            await producer.send_and_wait(topic, encode(op), key=op.munchkin_id.encode())
    finally:
        await producer.stop()
