"""`kmsync trace --event NAME|ID (--email E | --lead-id N) [--since T] [--json]`: what happened to one
person in one virtual event (issue #19).

Reads, to their ends as they are when it starts and from ``--since`` on, ``marketo.results.v1`` (each
Marketo outcome), the ``kaltura.*`` topics (what Kaltura said) and ``transform.decisions.v1`` (what
transform dropped or changed), printing its progress on stderr; then reads what Marketo holds now
for the person with one REST call (the program membership, or the lead by email when no lead id is
known) at a small share of the instance's rate. The email is hashed with the deployment's key
(KMSYNC_EMAIL_HASH_SECRET, as the services) before anything is searched; the story (trace_story.py)
prints nothing raw the operator did not type. How long the topics must keep records for a trace to
find them: README.md, "Operations".

Settings: KMSYNC_KAFKA_BOOTSTRAP, KMSYNC_TOPIC_PREFIX, KMSYNC_TENANTS_FILE (the event, its Marketo
instance and the secret references), KMSYNC_EMAIL_HASH_SECRET.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord

from kmsync_cli.reconcile_rest import READBACK_SHARE
from kmsync_cli.trace_story import Event, Person, Step, Story, decision_step, kaltura_step, outcome_step
from kmsync_common.email_hash import key_is_ephemeral
from kmsync_config.settings import CommonSettings, load_settings
from kmsync_config.tenants import EventConfig, TenantsConfig, load_tenants
from kmsync_contracts import ContractError, decode
from kmsync_contracts.kaltura_records import KalturaRecord
from kmsync_contracts.outcomes import RecordOutcome, TransformDecision
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    MARKETO_RESULTS,
    POLL_RESPONSES,
    SESSION_ENGAGEMENT,
    TRANSFORM_DECISIONS,
    TopicSpec,
)
from kmsync_kafka.clients import topic_name
from kmsync_kafka.reading import scan
from kmsync_marketo import readback as rb
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.errors import MarketoError
from kmsync_marketo.from_config import settings_from_instance
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import MarketoSettings

#: How long reading one topic may take at most (a large topic over a slow link).
READ_WITHIN_SECONDS = 1800.0
KALTURA_TOPICS = (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES)
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

Say = Callable[[str], None]


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """``--since``: an ISO time with a zone, or a look-back such as 90m, 36h, 7d; None reads everything."""
    if not text:
        return None
    match = _RELATIVE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: give an ISO time (2026-06-16T09:00:00Z) or a look-back (90m, 36h, 7d)"
                         ) from None
    if when.tzinfo is None:
        raise ValueError(f"--since {text!r}: give the time zone (Z or +02:00)")
    return when


def find_event(tenants: TenantsConfig, wanted: str) -> EventConfig:
    """The event named ``wanted``, or whose virtual event id it is; ValueError listing the known ones."""
    for ev in tenants.events:
        if ev.name == wanted or (wanted.isdigit() and ev.virtual_event_id == int(wanted)):
            return ev
    known = ", ".join(f"{ev.name} ({ev.virtual_event_id})" for ev in tenants.events) or "none"
    raise ValueError(f"--event {wanted!r} is not in the tenants file (events: {known})")


class ProgressLine:
    """``topic: read/total`` on stderr, at most twice a second, and once at the end of each topic."""

    def __init__(self, say: Say, topic: str) -> None:
        self.say, self.topic, self._last = say, topic, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= 0.5:
            self._last = now
            self.say(f"reading {self.topic}: {done}/{total} records")


def _outcome_needles(person: Person) -> list[bytes]:
    """Byte strings one of which an outcome of the person contains (a cheap filter before decoding)."""
    return ([k.encode() for k in person.person_keys]
            + [f'"lead_id":{i}'.encode() for i in person.lead_ids])


async def _read(settings: CommonSettings, spec: TopicSpec, since: datetime | None, say: Say,
                keep: Callable[[ConsumerRecord[bytes, bytes]], bool]) -> list[Any]:
    """The decoded records of one topic that ``keep`` accepts (undecodable ones counted and said)."""
    topic = topic_name(spec, settings.topic_prefix)
    since_ms = int(since.timestamp() * 1000) if since else None
    raw = await scan(settings.kafka_bootstrap, topic, within=READ_WITHIN_SECONDS, since_ms=since_ms, keep=keep,
                     progress=ProgressLine(say, topic))
    out, bad = [], 0
    for m in raw:
        try:
            out.append(decode(spec, m.value or b""))
        except ContractError:
            bad += 1
    if bad:
        say(f"{topic}: {bad} record(s) that do not match the contract were left out")
    return out


async def read_outcomes(settings: CommonSettings, event: Event, person: Person, since: datetime | None,
                        say: Say) -> list[RecordOutcome]:
    """The event's outcomes that carry the person (its person key, or a lead id given or learnt)."""
    needles = _outcome_needles(person)
    found: list[RecordOutcome] = await _read(settings, MARKETO_RESULTS, since, say,
                                             lambda m: any(n in (m.value or b"") for n in needles))
    person.learn(found, event)
    person.learn(found, event)  # a lead id → its person key → that key's other lead ids
    return [o for o in found if event.holds(o.partner_id, o.virtual_event_id) and person.is_in_outcome(o)]


async def read_kaltura(settings: CommonSettings, event: Event, person: Person, since: datetime | None,
                       say: Say) -> list[Step]:
    """What Kaltura said about the person: the event's records whose email hashes to the person's key."""
    prefix = f"{event.partner_id}:{event.virtual_event_id}:".encode()
    steps: list[Step] = []
    for spec in KALTURA_TOPICS:
        records: list[KalturaRecord] = await _read(settings, spec, since, say,
                                                   lambda m: (m.key or b"").startswith(prefix))
        steps += [kaltura_step(spec.name, r) for r in records if person.is_in_record(r)]
    return steps


async def read_decisions(settings: CommonSettings, event: Event, person: Person, since: datetime | None,
                         say: Say) -> list[Step]:
    """What transform dropped or changed for the person in the event."""
    prefix = f"{event.partner_id}:{event.virtual_event_id}:".encode()
    found: list[TransformDecision] = await _read(settings, TRANSFORM_DECISIONS, since, say,
                                                 lambda m: (m.key or b"").startswith(prefix))
    return [decision_step(d, person.typed_email) for d in found if d.person_key in person.person_keys]


def readback_settings(tenants: TenantsConfig, ev: EventConfig, share: float = READBACK_SHARE) -> MarketoSettings:
    """The event's instance at a small share of its rate (the sink keeps the rest), no usage calls."""
    settings = settings_from_instance(tenants.instance_for(ev))
    limits = settings.limits.model_copy(update={"share": min(share, settings.limits.share),
                                                "reconcile_every_calls": None})
    return settings.model_copy(update={"limits": limits})


async def marketo_now(settings: MarketoSettings, event: Event, person: Person) -> dict[str, Any]:
    """One REST call: the person's membership of the event's program (by lead id), or, with no lead id
    known, the lead by the email the operator typed (docs/reference/marketo-api.md §5.2, §6.3)."""
    budget = rb.ReadBudget(1)
    async with MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry()) as client:
        if person.lead_ids:
            lead_id = min(person.lead_ids)
            members = await rb.program_members(client, event.program_id, [lead_id], budget)
            if not members:
                return {"lead_id": lead_id, "program_id": event.program_id, "member": False, "calls": budget.used}
            m = members[0]
            return {"lead_id": lead_id, "program_id": event.program_id, "member": True,
                    "status": m.get("statusName"), "reached_success": m.get("reachedSuccess"), "calls": budget.used}
        if person.typed_email is None:
            return {"calls": 0, "why": "no lead id and no email to look the person up by"}
        leads = await rb.leads_by_email(client, [person.typed_email.strip().lower()], budget)
        return {"lead_ids": sorted(int(lead["id"]) for lead in leads), "program_id": event.program_id,
                "calls": budget.used}


async def trace(settings: CommonSettings, tenants: TenantsConfig, args: argparse.Namespace, say: Say) -> Story:
    ev = find_event(tenants, args.event)
    event = Event(ev.name, ev.partner_id, ev.virtual_event_id, ev.program_id)
    person = Person.from_email(args.email) if args.email else Person(lead_ids={args.lead_id})
    since = parse_since(args.since, datetime.now(UTC))
    story = Story(event, person)
    outcomes = await read_outcomes(settings, event, person, since, say)
    story.steps += [outcome_step(o, person.typed_email) for o in outcomes]
    if not person.person_keys:
        story.notes.append("no outcome carries this lead id with a person key, so Kaltura's records and "
                           "transform's decisions cannot be matched (outcomes written before issue #19 carry none)")
    story.steps += await read_kaltura(settings, event, person, since, say)
    story.steps += await read_decisions(settings, event, person, since, say)
    if args.no_marketo:
        story.notes.append("Marketo not read (--no-marketo)")
        return story
    try:
        story.marketo_now = await marketo_now(readback_settings(tenants, ev), event, person)
    except (MarketoError, rb.ReadBudgetExceeded) as exc:
        story.notes.append(f"Marketo not read: {type(exc).__name__}: {exc}")
    return story


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmsync trace", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--event", required=True, help="the event's name in the tenants file, or its virtual event id")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="the person's email (hashed before searching; printed back only as typed)")
    who.add_argument("--lead-id", type=int, help="the person's Marketo lead id")
    parser.add_argument("--since", help="read records from this time on: ISO time, or a look-back such as 36h, 7d "
                                        "(default: all the topics keep)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--no-marketo", action="store_true", help="do not read what Marketo holds now")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.lead_id is not None and args.lead_id <= 0:
        raise ValueError("--lead-id must be a Marketo lead id (a positive number)")
    settings = load_settings(CommonSettings)
    tenants = load_tenants(settings.tenants_file, check_secrets=False)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if key_is_ephemeral():
        say("warning: KMSYNC_EMAIL_HASH_SECRET is not set: the email cannot be matched to what the services "
            "recorded; set it to the services' key reference")
    story = asyncio.run(trace(settings, tenants, args, say))
    print(json.dumps(story.to_json(), indent=2, default=str) if args.json else "\n".join(story.lines()))
    return 0 if story.steps else 1
