"""Each event's schedule, stamped on every attendee status ingest pulls (docs/design/granular-statuses.md §2).

Sources in order (docs/reference/kaltura-api.md §9): the Events Platform API where the partner has
``events_api_url`` (kmsync_kaltura.events_platform), else the tenants file's ``events[].schedule``
(§9.4). The API is read before the first status pull of an event and again every
``refresh_seconds``; a failed refresh keeps the last schedule it had (logged). No schedule at all:
records go without one, and transform leaves the visit label undecided. Transform decides
Pre-event vs During-event visit from the record alone, so a state rebuild decides the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kmsync_config import EventConfig
from kmsync_contracts import AttendeeStatus
from kmsync_kaltura import KalturaClient
from kmsync_kaltura.errors import KalturaError
from kmsync_kaltura.events_platform import EventSchedule, event_schedule, tenants_schedule

log = logging.getLogger(__name__)


class ScheduleCache:
    def __init__(self, client: KalturaClient, refresh_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.refresh_seconds = refresh_seconds
        self._mono = monotonic
        #: virtual event id → (the API's schedule or None, when it was read)
        self._read: dict[int, tuple[EventSchedule | None, float]] = {}

    async def get(self, event: EventConfig) -> EventSchedule | None:
        url = self.client.settings.events_api_url
        if url:
            known = self._read.get(event.virtual_event_id)
            if known is None or self._mono() - known[1] >= self.refresh_seconds:
                try:
                    found = await event_schedule(self.client, url, event.virtual_event_id)
                except KalturaError as exc:
                    log.warning("event %s: schedule not read from the Events Platform (%s); keeping %s",
                                event.virtual_event_id, exc, "the last one" if known and known[0] else "none")
                    found = known[0] if known else None
                self._read[event.virtual_event_id] = known = (found, self._mono())
            if known[0] is not None:
                return known[0]
        if event.schedule is not None:
            return tenants_schedule(event.schedule.start, event.schedule.end)
        return None


def stamp(record: AttendeeStatus, schedule: EventSchedule | None) -> AttendeeStatus:
    """The record with the event's start, end and where they came from (unchanged without a schedule)."""
    if schedule is None:
        return record
    return record.model_copy(update={"event_start": schedule.start, "event_end": schedule.end,
                                     "schedule_source": schedule.source})
