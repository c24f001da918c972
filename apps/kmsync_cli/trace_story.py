"""One person's story in one virtual event, from what the pipeline wrote to Kafka (pure; `kmsync trace`).

The person is found by the keyed email hash (kmsync_common.email_hash, the same key as the
services): an email the operator typed is hashed before anything is searched, Kaltura's records are
matched by the hash of their email, transform's decisions and Marketo's outcomes by the
``person_key`` they carry (or, from ``--lead-id``, by the lead id on the outcomes). Nothing raw is
printed that the operator did not type: Kaltura's user ids and names are left out, and an email in
a reason text is replaced by its hash (``redact``).

The story is told in the pipeline's order — what Kaltura said, what transform decided, each Marketo
call that carried the person, the state Marketo holds now — each part in time order. The parts are
not interleaved by time: Kaltura's times are the event's, the other parts' are kmsync's clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kmsync_common.email_hash import hash_email
from kmsync_contracts.kaltura_records import AttendeeStatus, KalturaRecord, PollResponse, SessionEngagement
from kmsync_contracts.outcomes import RecordOutcome, TransformDecision
from kmsync_marketo.endpoints import write_endpoint
from kmsync_transform.emails import normalise_email

Stage = Literal["kaltura", "transform", "marketo"]
STAGES: tuple[Stage, ...] = ("kaltura", "transform", "marketo")
_EMAIL_LIKE = re.compile(r"[^@\s,;:()<>\"']+@[^@\s,;:()<>\"']+\.[A-Za-z]{2,}")


def person_key_of(email: str | None) -> str | None:
    """The hash a person is found by: of the email normalised as transform does, or, for an email
    Marketo cannot take, of the email as Kaltura gave it (as transform's unusable_email decision
    records it); None without an email."""
    if not (email or "").strip():
        return None
    return hash_email(normalise_email(email) or email)


def redact(text: str, typed_email: str | None = None) -> str:
    """``text`` with every email in it replaced by its hash, except the one the operator typed."""
    typed = normalise_email(typed_email)
    return _EMAIL_LIKE.sub(lambda m: m.group(0) if normalise_email(m.group(0)) == typed
                           else hash_email(m.group(0)), text)


@dataclass(frozen=True)
class Event:
    """The virtual event traced (from the tenants file)."""

    name: str
    partner_id: int
    virtual_event_id: int
    program_id: int

    def holds(self, partner_id: int | None, virtual_event_id: int | None) -> bool:
        return (partner_id, virtual_event_id) == (self.partner_id, self.virtual_event_id)


@dataclass
class Person:
    """Who is traced: the hashes found for them, the lead ids, and what the operator typed."""

    person_keys: set[str] = field(default_factory=set)
    lead_ids: set[int] = field(default_factory=set)
    typed_email: str | None = None

    @classmethod
    def from_email(cls, email: str) -> Person:
        """The person an operator typed; an unusable email is still searched (transform says why it stopped)."""
        key = person_key_of(email)
        if key is None:
            raise ValueError("--email is empty")
        return cls({key}, set(), email)

    def learn(self, outcomes: Iterable[RecordOutcome], event: Event) -> None:
        """Add the person keys and lead ids the event's outcomes tie to what is known."""
        for o in outcomes:
            if not event.holds(o.partner_id, o.virtual_event_id):
                continue
            if o.person_key in self.person_keys and o.lead_id is not None:
                self.lead_ids.add(o.lead_id)
            if o.lead_id in self.lead_ids and o.person_key is not None:
                self.person_keys.add(o.person_key)

    def is_in_outcome(self, o: RecordOutcome) -> bool:
        return o.person_key in self.person_keys or (o.lead_id is not None and o.lead_id in self.lead_ids)

    def is_in_record(self, r: KalturaRecord) -> bool:
        return person_key_of(r.email) in self.person_keys


@dataclass(frozen=True)
class Step:
    stage: Stage
    #: Kaltura's time for Kaltura's records; kmsync's decision time for the others.
    time: datetime
    what: str
    data: dict[str, Any]


def kaltura_step(topic: str, r: KalturaRecord) -> Step:
    """What one Kaltura record said (no user id, no names: only what the trace needs)."""
    data: dict[str, Any] = {"topic": topic, "source": r.source, "source_ref": r.source_ref,
                            "source_time": r.source_time.isoformat()}
    if isinstance(r, AttendeeStatus):
        data.update(status=r.status.value, previous_status=r.previous_status and r.previous_status.value,
                    status_time=r.status_time.isoformat())
        before = f"{r.previous_status.value} -> " if r.previous_status else ""
        what = f"status {before}{r.status.value}"
        time = r.status_time
    elif isinstance(r, SessionEngagement):
        data.update(entry_id=r.entry_id, is_final=r.is_final, plays=r.plays,
                    live_minutes_viewed=r.live_minutes_viewed, vod_minutes_viewed=r.vod_minutes_viewed)
        what = (f"engagement in session {r.entry_id}{' (final)' if r.is_final else ''}: "
                f"plays {r.plays}, live minutes {r.live_minutes_viewed}, vod minutes {r.vod_minutes_viewed}")
        time = r.source_time
    elif isinstance(r, PollResponse):
        data.update(entry_id=r.entry_id, poll_id=r.poll_id)
        what, time = f"answered poll {r.poll_id} in session {r.entry_id}", r.answered_at or r.source_time
    else:
        what, time = type(r).__name__, r.source_time
    return Step("kaltura", time, f"{what} (from {r.source} {r.source_ref})".replace(" )", ")"), data)


def decision_step(d: TransformDecision, typed_email: str | None = None) -> Step:
    """What transform dropped or changed, and why (emails in the reason hashed)."""
    reason = redact(d.reason, typed_email)
    data: dict[str, Any] = {"decision": d.decision, "reason_code": str(d.reason_code), "reason": reason,
                            "session_id": d.session_id, "op_id": d.op_id, "detail": d.detail,
                            "source_time": d.source_time.isoformat(), "decided_at": d.decided_at.isoformat()}
    session = f" in session {d.session_id}" if d.session_id else ""
    return Step("transform", d.decided_at, f"{d.decision}{session}: {reason} [{d.reason_code}]", data)


def outcome_step(o: RecordOutcome, typed_email: str | None = None) -> Step:
    """One Marketo outcome: the call, its status, Marketo's code, the request id and the lead id."""
    endpoint = write_endpoint(o.kind, o.api)
    data: dict[str, Any] = {
        "kind": o.kind, "status": o.status, "endpoint": endpoint, "api": o.api, "marketo_code": o.reason_code,
        "reason": redact(o.reason, typed_email) if o.reason else None, "request_id": o.request_id,
        "lead_id": o.lead_id, "marketo_id": o.marketo_id, "session_id": o.session_id, "op_id": o.op_id,
        "attempts": o.attempts, "source_time": o.source_time.isoformat(), "decided_at": o.decided_at.isoformat(),
    }
    parts = [f"{o.kind} {o.status}", endpoint]
    parts += [f"{k} {v}" for k, v in (("code", o.reason_code), ("request", o.request_id), ("lead", o.lead_id),
                                      ("session", o.session_id)) if v is not None]
    if o.attempts > 1:
        parts.append(f"{o.attempts} attempts")
    if data["reason"] and o.status in ("skipped", "failed"):
        parts.append(f"why: {data['reason']}")
    return Step("marketo", o.decided_at, " | ".join(parts), data)


@dataclass
class Story:
    event: Event
    person: Person
    steps: list[Step] = field(default_factory=list)
    #: What Marketo holds now (one REST call), or None when it was not read.
    marketo_now: dict[str, Any] | None = None
    #: Things the reader must know (a topic not there, outcomes without keys, a read not made).
    notes: list[str] = field(default_factory=list)

    def ordered(self) -> list[Step]:
        """Kaltura, then transform, then Marketo; each part in time order."""
        return sorted(self.steps, key=lambda s: (STAGES.index(s.stage), s.time))

    def lines(self) -> list[str]:
        who = self.person.typed_email or ", ".join(f"lead {i}" for i in sorted(self.person.lead_ids)) or "?"
        keys = ", ".join(sorted(self.person.person_keys)) or "no person key found"
        out = [f"{who} in {self.event.name} (partner {self.event.partner_id}, virtual event "
               f"{self.event.virtual_event_id}); person key {keys}"]
        titles = {"kaltura": "what Kaltura said", "transform": "what transform decided",
                  "marketo": "Marketo calls that carried the person"}
        steps = self.ordered()
        for stage in STAGES:
            mine = [s for s in steps if s.stage == stage]
            out.append(f"{titles[stage]} ({len(mine)}):")
            out += [f"  {s.time.isoformat(timespec='seconds')}  {s.what}" for s in mine] or ["  (nothing)"]
        out.append("what Marketo holds now:")
        out += [f"  {k}: {v}" for k, v in (self.marketo_now or {}).items()] or ["  (not read)"]
        out += [f"note: {n}" for n in self.notes]
        return out

    def to_json(self) -> dict[str, Any]:
        steps = self.ordered()
        return {
            "event": {"name": self.event.name, "partner_id": self.event.partner_id,
                      "virtual_event_id": self.event.virtual_event_id, "program_id": self.event.program_id},
            "person": {"email": self.person.typed_email, "person_keys": sorted(self.person.person_keys),
                       "lead_ids": sorted(self.person.lead_ids)},
            **{stage: [{"time": s.time.isoformat(), **s.data} for s in steps if s.stage == stage]
               for stage in STAGES},
            "marketo_now": self.marketo_now, "notes": self.notes,
        }
