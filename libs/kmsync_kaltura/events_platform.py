"""An event's schedule from Kaltura's Events Platform API (docs/reference/kaltura-api.md §9.1), or from
api_v3's schedule event (§9.2).

``POST {events-api}/api/v1/events/list`` with ``{"filter": {"idIn": [id]}}`` gives the event's
``startDate``, ``endDate``, ``doorsOpenDate`` and ``timezone``; ``POST …/sessions/list`` with
``{"eventId": id}`` each session's ``id`` (entry id), ``name``, ``startDate``, ``endDate`` (optional:
an on-demand session may have none). Bearer KS; an answer whose ``status`` is not ``ok`` is an error
even at HTTP 200. That the Events Platform event id is the virtual event id is UNCONFIRMED (§9.1): the
source is used only where the tenants file gives ``events_api_url``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from kmsync_kaltura.client import KalturaClient
from kmsync_kaltura.errors import KalturaResponseError

ScheduleSource = Literal["events_api", "schedule_event", "tenants"]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SessionSchedule(_Loose):
    entry_id: str
    name: str | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None


class EventSchedule(_Loose):
    """When an event (and its sessions) starts and ends; compared in UTC, ``timezone`` is for display."""

    start: AwareDatetime
    end: AwareDatetime
    doors_open: AwareDatetime | None = None
    timezone: str | None = None
    source: ScheduleSource
    sessions: tuple[SessionSchedule, ...] = ()


def _ok(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("status") != "ok":
        status = body.get("status") if isinstance(body, dict) else type(body).__name__
        raise KalturaResponseError(f"Events Platform {what} answered status {status!r} (not ok)")
    return body


async def event_schedule(client: KalturaClient, events_api_url: str, event_id: int) -> EventSchedule | None:
    """The event's schedule, or None when the Events Platform does not list the event (or gives it no
    dates). Raises KalturaError when the API cannot be read or answers an error."""
    events = _ok(await client.microservice(events_api_url, "api/v1/events/list",
                                           {"filter": {"idIn": [event_id]}}), "events/list")
    found = next((e for e in events.get("events") or [] if isinstance(e, dict) and str(e.get("id")) == str(event_id)),
                 None)
    if found is None or not found.get("startDate") or not found.get("endDate"):
        return None
    sessions = _ok(await client.microservice(events_api_url, "api/v1/sessions/list", {"eventId": event_id}),
                   "sessions/list")
    try:
        return EventSchedule(
            start=found["startDate"], end=found["endDate"], doors_open=found.get("doorsOpenDate"),
            timezone=found.get("timezone"), source="events_api",
            sessions=tuple(SessionSchedule(entry_id=str(s["id"]), name=s.get("name"), start=s.get("startDate"),
                                           end=s.get("endDate"))
                           for s in sessions.get("sessions") or [] if isinstance(s, dict) and s.get("id")))
    except ValidationError as exc:
        raise KalturaResponseError(f"Events Platform answer not understood: {exc.errors()[0]['msg']}") from None


async def schedule_event_schedule(client: KalturaClient, virtual_event_id: int) -> EventSchedule | None:
    """The event's start and end from api_v3 (docs/reference/kaltura-api.md §9.2): the virtual event's
    ``mainEventScheduleEventId``, then that schedule event's ``startDate``/``endDate`` (Unix seconds).
    That the main schedule event spans the event is our reading of the name (UNCONFIRMED), so this source
    comes after the Events Platform. None when the virtual event names no main schedule event."""
    event = await client.api_v3("virtualevent_virtualevent", "get", {"id": virtual_event_id})
    main = event.get("mainEventScheduleEventId") if isinstance(event, dict) else None
    if not main:
        return None
    found = await client.api_v3("schedule_scheduleevent", "get", {"id": int(main)})
    start, end = (found.get("startDate"), found.get("endDate")) if isinstance(found, dict) else (None, None)
    if not isinstance(start, int) or not isinstance(end, int) or end <= start:
        return None
    return EventSchedule(start=datetime.fromtimestamp(start, UTC), end=datetime.fromtimestamp(end, UTC),
                         source="schedule_event")


def tenants_schedule(start: datetime, end: datetime) -> EventSchedule:
    """The tenants file's ``events[].schedule`` as a schedule (docs/reference/kaltura-api.md §9.4)."""
    return EventSchedule(start=start, end=end, source="tenants")
