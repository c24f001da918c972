"""What Kaltura holds for one virtual event now, pulled through the ingest service's Kaltura source
(libs/kmsync_kaltura underneath), in the shape the reconciliation reads (reconcile.py) — the same
shape as the Kaltura sandbox's ground truth, without status histories (Kaltura keeps only the
current status; reconcile.py then accepts any Marketo status at least as far).

- attendees: every User Profile of the event's app joined with its user (email), its current
  attendance status, and whether the profile is deleted (kmsync may have synced it before);
- engagement: one row per (session, email) of the event's sessions' engagement reports;
- poll answers: one row per (session, email) of the poll answers (KMSYNC_POLLS_CSV_URL, as ingest);
- origin: the earliest status time (custom activities are read back from a day before it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kmsync_config.tenants import EventConfig, TenantsConfig
from kmsync_contracts.kaltura_records import AttendeeStatus, KalturaRecord, PollResponse, SessionEngagement
from kmsync_ingest.kaltura_source import KalturaPullSource, client_for
from kmsync_ingest.settings import IngestSettings
from kmsync_ingest.source import Item
from kmsync_kaltura.models import Attendee

Say = Callable[[str], None]


def attendee_truth(att: Attendee) -> dict[str, Any]:
    """One registrant as the reconciliation reads them (``transitions`` None: history unknown)."""
    p = att.profile
    return {"email": att.email, "final_status": p.event_data.attendance_status.value, "transitions": None,
            "deleted": p.status == "deleted" or p.deleted_at is not None,
            "status_time": (p.event_data.status_update_time or p.updated_at).isoformat()}


async def _nothing() -> AsyncIterator[list[Item[AttendeeStatus]]]:
    return
    yield


def origin_of(attendees: list[dict[str, Any]], now: datetime) -> str:
    """The earliest status time of the event's registrants (now when there are none)."""
    times = [datetime.fromisoformat(a["status_time"]) for a in attendees]
    return min(times, default=now).isoformat()


@dataclass
class KalturaNow:
    #: The reconciliation's shape (the module's docstring).
    truth: dict[str, Any]
    #: The records ingest would make of what was pulled (reconcile_fix.py re-drives some of them).
    records: list[KalturaRecord] = field(default_factory=list)


async def pull_event(tenants: TenantsConfig, event: EventConfig, settings: IngestSettings, say: Say, *,
                     statuses: bool = False) -> KalturaNow:
    """Kaltura's registrants, engagement rows and poll answers of the event, pulled now; with ``statuses``
    also the registrants' status records (a second walk of the profiles, for ``--fix``)."""
    partner = tenants.kaltura_partners.get(event.partner_id)
    if partner is None:
        raise ValueError(f"kaltura_partners has no partner {event.partner_id} (event {event.name})")
    if not event.app_guid:
        raise ValueError(f"events[{event.name}].app_guid is empty: the registrants cannot be listed")
    source = KalturaPullSource(client_for(event.partner_id, partner, settings), settings)
    try:
        attendees: list[dict[str, Any]] = []
        records: list[KalturaRecord] = []
        async for items in (source.statuses(event, None) if statuses else _nothing()):
            records += [i.record for i in items if i.record is not None]
        async for page in source.client.iter_attendees(event.app_guid):
            attendees += [attendee_truth(att) for att in page.attendees]
        say(f"Kaltura: {len(attendees)} registrant profiles")
        sessions: list[Any] = []
        for session in await source.sessions(event):
            sessions += [i.record for i in await source.engagement(event, session) if i.record is not None]
            sessions += [i.record for i in await source.poll_answers(event, session) if i.record is not None]
    finally:
        await source.close()
    engagement = [{"entry_id": r.entry_id, "email": r.email} for r in sessions if isinstance(r, SessionEngagement)]
    polls = [{"entry_id": r.entry_id, "email": r.email} for r in sessions if isinstance(r, PollResponse)]
    say(f"Kaltura: {len(engagement)} engagement rows, {len(polls)} poll answers in {len(event.sessions)} sessions")
    truth = {"attendees": attendees, "engagement": engagement, "poll_answers": polls,
             "origin": origin_of(attendees, datetime.now(UTC))}
    return KalturaNow(truth, records + sessions)
