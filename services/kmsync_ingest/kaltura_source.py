"""The pull's Kaltura side, through kmsync_kaltura's client, mapped to contracts (mapping.py).

* statuses: user-profile/list since the watermark joined with user.list (docs/reference/kaltura-api.md §7.1.1);
* engagement: report 60013 pages and/or the 4021 CSV of one session (§7.1.2);
* polls: a CSV of poll answers per session from a configured URL (§7.1.3, UNCONFIRMED);
* sessions: the tenants file's sessions (times come from entry notifications, puller.py);
* now: an injectable clock (the sandbox's scenario clock in tests, the wall clock otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from kmsync_common.clock import SystemClock
from kmsync_config import EventConfig, KalturaPartner
from kmsync_contracts import AttendeeStatus, PollResponse, SessionEngagement
from kmsync_contracts.codecs import describe_validation_error
from kmsync_contracts.reasons import ReasonCode
from kmsync_ingest.files import row_problems
from kmsync_ingest.mapping import (
    RecordContext,
    attendee_status,
    engagement_from_csv,
    engagement_from_table,
    poll_response,
)
from kmsync_ingest.poll_order import poll_positions
from kmsync_ingest.schedule import ScheduleCache, stamp
from kmsync_ingest.settings import IngestSettings
from kmsync_ingest.source import Item, Problem, SessionWindow
from kmsync_ingest.times import iso_time
from kmsync_kaltura import KalturaClient, KalturaSettings, KalturaTransportError, parse_poll_answers_csv
from kmsync_kaltura.rows import Located, RowError
from kmsync_kaltura.urls import path_segment

log = logging.getLogger(__name__)


def user_profile_base(url: str) -> str:
    """The User Profile API base the client appends ``user-profile/list`` to. The tenants file may
    give the service host (https://user.us.ovp.kaltura.com, docs/configuration.md) or the API base
    (…/api/v1, docs/reference/kaltura-api.md §4.2); both work."""
    url = url.rstrip("/")
    return url if "/api/" in f"{url}/" else f"{url}/api/v1"


def client_for(partner_id: int, partner: KalturaPartner, settings: IngestSettings) -> KalturaClient:
    return KalturaClient(KalturaSettings(
        service_url=partner.service_url, user_profile_url=user_profile_base(partner.user_profile_url),
        partner_id=partner_id,
        admin_secret=partner.admin_secret.resolve(), timeout_seconds=settings.kaltura_timeout_seconds,
        profile_page_size=settings.page_size, report_page_size=settings.page_size,
        validate_email=settings.validate_report_emails, events_api_url=partner.events_api_url,
    ))


def polls_url(template: str, service_url: str, event: EventConfig, entry_id: str) -> str:
    """KMSYNC_POLLS_CSV_URL filled in; the entry id (from a notification) is one escaped path segment."""
    return template.format(
        service_url=service_url.rstrip("/"), partner_id=int(event.partner_id),
        virtual_event_id=int(event.virtual_event_id), entry_id=path_segment(entry_id),
    )


#: The time of an invalid profile that says none, when nothing before it on the walk did either: the
#: oldest instant there is, so it can never move the watermark past a profile not yet read.
NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def own_time(raw: Any) -> datetime | None:
    """An invalid profile's own updatedAt, if it has a readable one."""
    return iso_time(raw.get("updatedAt")) if isinstance(raw, dict) else None


def problem_time(raw: Any, walked_to: datetime | None, since: datetime | None) -> datetime:
    """When an invalid profile (dead-lettered) counts as changed, for the watermark: its own updatedAt if it
    has a readable one, else the newest time the walk read before it (``ObjectError.walked_to``: its place in
    the walk's updatedAt order, so the next pull, which starts at the boundary, does not read it again), else
    where the walk started, else ``NO_TIME``. Never the clock: on an event's first pull, a page of invalid
    profiles stamped "now" would set the boundary to now, and every valid profile after it would be skipped
    as already produced (a silent loss). Without its own time the puller stamps it again
    (``puller.place_unstamped``): with an overlap, where the walk started moves with every pull."""
    return own_time(raw) or walked_to or since or NO_TIME


class KalturaPullSource:
    def __init__(
        self,
        client: KalturaClient,
        settings: IngestSettings,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        #: The source's time (records' source_time, what has ended): a scenario clock in tests.
        self._wall = SystemClock()
        self.clock = clock or self._wall.now
        self._http = httpx.AsyncClient(timeout=settings.kaltura_timeout_seconds)
        #: Each event's start and end, stamped on its statuses (schedule.py).
        self.schedules = ScheduleCache(client, settings.pull_interval_seconds)

    def _ctx(self, event: EventConfig, session: SessionWindow | None = None, final: bool = True) -> RecordContext:
        configured = next((s for s in event.sessions if session and s.entry_id == session.entry_id), None)
        now = self._wall.now()
        return RecordContext(
            partner_id=event.partner_id, virtual_event_id=event.virtual_event_id, source="pull",
            source_time=self.clock(), ingested_at=now,
            entry_name=(configured.name if configured and configured.name else session.name if session else None),
            channel_id=configured.channel_id if configured else None,
            channel_name=configured.channel_name if configured else None, is_final=final,
        )

    # --------------------------------------------------------------------------------- statuses
    async def statuses(
        self, event: EventConfig, since: datetime | None
    ) -> AsyncIterator[list[Item[AttendeeStatus]]]:
        if not event.app_guid:
            log.warning("event %s has no app_guid in the tenants file: statuses are not pulled",
                        event.virtual_event_id)
            return
        ctx = self._ctx(event)
        schedule = await self.schedules.get(event)
        async for page in self.client.iter_attendees(event.app_guid, since=since):
            items: list[Item[AttendeeStatus]] = []
            for att in page.attendees:
                p = att.profile
                ref = f"user-profile:{p.id}@{p.updated_at.isoformat()}"
                try:
                    record = stamp(attendee_status(att, ctx, ref), schedule)
                except ValidationError as exc:
                    problem = Problem(ReasonCode.INVALID_PROFILE, "; ".join(describe_validation_error(exc)), ref,
                                      p.model_dump(mode="json", by_alias=True))
                    items.append(Item(p.updated_at, p.id, problem=problem))
                    continue
                items.append(Item(p.updated_at, p.id, record=record))
            for err in page.errors:
                raw: Any = err.raw
                ident = str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") else f"index:{err.index}"
                when = problem_time(raw, err.walked_to, since)
                items.append(Item(when, ident, problem=Problem(
                    ReasonCode.INVALID_PROFILE, err.message, f"user-profile/list item {err.index}", raw),
                    time_unknown=own_time(raw) is None))
            yield items

    # ------------------------------------------------------------------------------- engagement
    async def engagement(self, event: EventConfig, session: SessionWindow) -> list[Item[SessionEngagement]]:
        now = self.clock()
        ctx = self._ctx(event, session, final=session.end is not None and session.end <= now)
        items: list[Item[SessionEngagement]] = []
        vid, entry = event.virtual_event_id, session.entry_id
        if 60013 in self.settings.engagement_reports:
            async for page in self.client.iter_engagement(vid, entry):
                for located in page.rows:
                    ref = f"report 60013 {entry} row {located.line}"
                    items.append(self._engagement_item("60013", located, ctx, ref, table=True))
                for err in page.errors:
                    items.append(self._error_item("60013", entry, err, "report 60013"))
        if 4021 in self.settings.engagement_reports:
            result = await self.client.get_engagement_csv(vid, entry)
            for csv_row in result.rows:
                ref = f"report 4021 {entry} line {csv_row.line}"
                items.append(self._engagement_item("4021", csv_row, ctx, ref, table=False))
            for err in result.errors:
                items.append(self._error_item("4021", entry, err, "report 4021"))
        return items

    def _engagement_item(
        self, report: str, located: Located[Any], ctx: RecordContext, ref: str, *, table: bool
    ) -> Item[SessionEngagement]:
        row = located.row
        ident = f"{report}:{row.entry_id}:{row.email}"
        # A session's figures become final once it has ended: the final snapshot is a new record.
        content = {"report": report, "final": ctx.is_final, **row.model_dump(mode="json")}
        try:
            record = engagement_from_table(row, ctx, ref) if table else engagement_from_csv(row, ctx, ref)
        except ValidationError as exc:
            problem = Problem(ReasonCode.BAD_ROW, "; ".join(describe_validation_error(exc)), ref, content)
            return Item(ctx.source_time, ident, problem=problem, content=content)
        return Item(ctx.source_time, ident, record=record, content=content)

    def _error_item(self, report: str, entry: str, err: RowError, where: str) -> Item[Any]:
        ref = f"{where} {entry} line {err.line}"
        problem = Problem(ReasonCode.BAD_ROW, f"{ref}: " + "; ".join(row_problems(err.message)), ref, err.raw)
        # Identified by content: the same bad row is dead-lettered once, not on every re-pull.
        return Item(self.clock(), f"{report}:{entry}:bad", problem=problem,
                    content={"report": report, "raw": err.raw, "message": err.message})

    # ------------------------------------------------------------------------------------ polls
    async def poll_answers(self, event: EventConfig, session: SessionWindow) -> list[Item[PollResponse]]:
        template = self.settings.polls_csv_url
        if not template:
            return []
        url = polls_url(template, self.client.settings.service_url, event, session.entry_id)
        try:
            response = await self._http.get(url)
        except httpx.HTTPError as exc:
            raise KalturaTransportError(f"{type(exc).__name__} fetching poll answers") from exc
        if response.status_code != 200:
            raise KalturaTransportError(f"HTTP {response.status_code} fetching poll answers",
                                        status=response.status_code)
        result = parse_poll_answers_csv(response.content, validate_email=self.settings.validate_report_emails)
        ctx = self._ctx(event, session)
        # docs/reference/kaltura-api.md §11: positions from the whole pull; a changed position is new content
        positions = poll_positions(((r.row.entry_id, r.row.poll_id, r.row.answered_at) for r in result.rows),
                                   self.settings.poll_order)
        items: list[Item[PollResponse]] = []
        for located in result.rows:
            row = located.row
            ref = f"poll answers {session.entry_id} line {located.line}"
            ident = f"poll:{row.entry_id}:{row.poll_id}:{row.user_id}"
            position = positions[(row.entry_id, row.poll_id)]
            content = {**row.model_dump(mode="json"), "poll_position": position}
            try:
                record = poll_response(row, ctx, ref).model_copy(update={"poll_position": position})
                items.append(Item(row.answered_at, ident, record=record, content=content))
            except ValidationError as exc:
                items.append(Item(row.answered_at, ident, content=content, problem=Problem(
                    ReasonCode.BAD_ROW, "; ".join(describe_validation_error(exc)), ref, content)))
        for err in result.errors:
            items.append(self._error_item("polls", session.entry_id, err, "poll answers"))
        return items

    # --------------------------------------------------------------------------------- sessions
    async def sessions(self, event: EventConfig) -> list[SessionWindow]:
        return [SessionWindow(s.entry_id, s.name, None, None) for s in event.sessions]

    async def now(self) -> datetime:
        return self.clock()

    async def close(self) -> None:
        await self._http.aclose()
        await self.client.aclose()
