"""Each event's schedule, stamped on every attendee status ingest pulls (docs/design/granular-statuses.md §2).

Sources (docs/reference/kaltura-api.md §9), per the event's ``schedule_source`` (default ``auto``, in
this order): the Events Platform API where the partner has ``events_api_url`` (§9.1), api_v3's main
schedule event (§9.2), then the tenants file's ``events[].schedule`` (§9.4), which is the fallback of
every setting. Kaltura is read before the first status pull of an event and again every
``refresh_seconds``; a failed read keeps the last schedule it had (logged). No schedule at all:
records go without one, and transform decides ``label_undecided``. Transform decides Pre-event vs
During-event visit from the record alone, so a state rebuild decides the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kmsync_config import EventConfig
from kmsync_contracts import AttendeeStatus
from kmsync_kaltura import KalturaClient
from kmsync_kaltura.errors import KalturaError
from kmsync_kaltura.events_platform import EventSchedule, event_schedule, schedule_event_schedule, tenants_schedule

log = logging.getLogger(__name__)

#: The Kaltura sources each ``schedule_source`` setting reads, in order.
KALTURA_SOURCES: dict[str, tuple[str, ...]] = {
    "auto": ("events_api", "schedule_event"), "events_api": ("events_api",),
    "schedule_event": ("schedule_event",), "tenants": (),
}


class ScheduleCache:
    def __init__(self, client: KalturaClient, refresh_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.refresh_seconds = refresh_seconds
        self._mono = monotonic
        #: virtual event id → (Kaltura's schedule or None, when it was read)
        self._read: dict[int, tuple[EventSchedule | None, float]] = {}

    async def get(self, event: EventConfig) -> EventSchedule | None:
        found = await self._from_kaltura(event, KALTURA_SOURCES[event.schedule_source])
        if found is not None:
            return found
        if event.schedule is not None:
            return tenants_schedule(event.schedule.start, event.schedule.end)
        return None

    async def _from_kaltura(self, event: EventConfig, sources: tuple[str, ...]) -> EventSchedule | None:
        if not sources:
            return None
        known = self._read.get(event.virtual_event_id)
        if known is not None and self._mono() - known[1] < self.refresh_seconds:
            return known[0]
        try:
            found = await self._read_sources(event, sources)
        except KalturaError as exc:
            log.warning("event %s: schedule not read from Kaltura (%s); keeping %s", event.virtual_event_id, exc,
                        "the last one" if known and known[0] else "none")
            found = known[0] if known else None
        self._read[event.virtual_event_id] = (found, self._mono())
        return found

    async def _read_sources(self, event: EventConfig, sources: tuple[str, ...]) -> EventSchedule | None:
        """The first source that gives a schedule; a source that fails is skipped for the next, and when
        none gave one the last failure is raised (the caller keeps the last schedule)."""
        url = self.client.settings.events_api_url
        failed: KalturaError | None = None
        for source in sources:
            try:
                if source == "events_api" and url:
                    found = await event_schedule(self.client, url, event.virtual_event_id)
                elif source == "schedule_event":
                    found = await schedule_event_schedule(self.client, event.virtual_event_id)
                else:
                    continue
            except KalturaError as exc:
                failed = exc
                continue
            if found is not None:
                return found
        if failed is not None:
            raise failed
        return None


def stamp(record: AttendeeStatus, schedule: EventSchedule | None) -> AttendeeStatus:
    """The record with the event's start, end and where they came from (unchanged without a schedule)."""
    if schedule is None:
        return record
    return record.model_copy(update={"event_start": schedule.start, "event_end": schedule.end,
                                     "schedule_source": schedule.source})
