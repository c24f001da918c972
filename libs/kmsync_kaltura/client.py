"""Async Kaltura client (httpx) for exactly what kmsync ingest pulls (docs/reference/kaltura-api.md §7.1).

* KS: ``session.start`` with the partner admin secret (ADMIN type); renewed before it expires and,
  on ``INVALID_KS``, once more with the call retried - a second ``INVALID_KS`` raises
  :class:`InvalidKSError`.
* Statuses: ``POST {user_profile_url}/user-profile/list`` filtered by ``appGuidIn`` and an
  inclusive ``updatedAtGreaterThanOrEqual`` watermark, ordered by ``updatedAt``, every page; then
  joined with api_v3 ``user.list`` (``filter[idIn]``) for email and names.
* Engagement: ``report.getTable`` 60013 for one session (``entryIdIn``), page by page, parsed by
  header name with the chosen delimiter; the 12,000-row cap is respected (§3.3).
* Report CSV: ``report.getCsvFromStringParams`` 4021 for one session, then GET its serve URL.
* Poll answers: reports microservice ``pollsActivity`` (generate → serve ``statusOnly`` until
  ``completed`` → serve the CSV, §3.6); the CSV layout is OUR ASSUMPTION (models.PollAnswerRow).

Paging the profile list walks a keyset: each page asks again from the newest ``updatedAt`` seen and
drops (id, updatedAt) pairs already returned, so a profile updated mid-walk is neither skipped nor
lost; offsets are used only inside a run of identical timestamps longer than a page, and such a run is
walked again until a pass finds no member the earlier ones skipped (``iter_user_profiles``).
The watermark a page reports is inclusive: persist it, start the next pull from it, and dedupe on
(profile id, updatedAt) downstream.

Transport failures raise :class:`KalturaTransportError` (retry policy is the caller's). The admin
secret and KS never appear in exceptions or logs.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from kmsync_common.clock import SYSTEM_CLOCK
from kmsync_kaltura.csv_reports import parse_engagement_csv, parse_poll_answers_csv
from kmsync_kaltura.errors import (
    InvalidKSError,
    KalturaRequestRejected,
    KalturaResponseError,
    KalturaTransportError,
    ReportNotReadyError,
    api_error,
)
from kmsync_kaltura.models import (
    Attendee,
    EngagementCsvRow,
    EngagementRow,
    KalturaUser,
    PollAnswerRow,
    UserProfile,
)
from kmsync_kaltura.report_table import parse_engagement_table
from kmsync_kaltura.rows import Located, ParseResult, RowError, describe_validation_error
from kmsync_kaltura.urls import check_entry_id, insecure_reason, require_secure

log = logging.getLogger(__name__)

SESSION_TYPE_ADMIN = 2
EP_WEBCAST_VOD_LIVE_USERS_ENGAGEMENT = 60013
USER_REACTIONS_REPORT = 4021
REPORT_ROW_CAP = 12_000  # docs/reference/kaltura-api.md §3.3 MAX_RESULT_SIZE
USER_LIST_MAX_PAGE = 500

_T = TypeVar("_T")
#: Kaltura echoes the KS in INVALID_KS messages ('Invalid KS "<ks>" Error: ...'); never keep it.
_KS_IN_MESSAGE = re.compile(r'KS "[^"]*"')


class KalturaSettings(BaseModel):
    """Where and how to reach one Kaltura partner."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: api_v3 host, e.g. https://www.kaltura.com (EU: https://api.eu.kaltura.com), no /api_v3 suffix.
    service_url: str = Field(min_length=1)
    #: User Profile service base, e.g. https://user.nvp1.ovp.kaltura.com/api/v1.
    user_profile_url: str = Field(min_length=1)
    partner_id: int = Field(gt=0)
    admin_secret: SecretStr
    #: The KS user; Events Platform calls want an Events team member (docs/reference/kaltura-api.md §1.2).
    user_id: str = "kmsync-ingest"
    ks_expiry_seconds: int = Field(default=86_400, ge=60)
    #: Renew the KS this long before it expires.
    ks_renew_margin_seconds: int = Field(default=300, ge=0)
    privileges: str = "disableentitlement"
    timeout_seconds: float = Field(default=30.0, gt=0)
    profile_page_size: int = Field(default=500, ge=1, le=500)
    report_page_size: int = Field(default=500, ge=1, le=REPORT_ROW_CAP)
    #: Response delimiter for report.getTable; also splits multi-value filters (§3.2).
    report_delimiter: str = Field(default="|", min_length=1)
    #: Reports microservice base, e.g. https://reports.nvp1.ovp.kaltura.com/api/v1 (poll answers).
    reports_url: str | None = None
    #: Events Platform API host (docs/reference/kaltura-api.md §9.1), e.g. https://events-api.nvp1.ovp.kaltura.com;
    #: None: the event's schedule is not read from Kaltura (events_platform.py).
    events_api_url: str | None = None
    #: Wait between status checks of a generated report, and how many checks before giving up.
    report_poll_interval_seconds: float = Field(default=2.0, ge=0)
    report_poll_max_checks: int = Field(default=60, ge=1)
    #: Check email syntax in report rows (60013/4021 rows are identified by email alone).
    validate_email: bool = True

    @field_validator("service_url", "user_profile_url", "reports_url", "events_api_url")
    @classmethod
    def _secure(cls, v: str | None) -> str | None:
        # The admin secret (session.start) and the KS travel to these hosts (docs/reference/kaltura-api.md §1.2).
        return None if v is None else require_secure(v, "the URL")


@dataclass(frozen=True, slots=True)
class ObjectError:
    """A list item Kaltura returned that does not validate (the rest of the page still counts)."""

    index: int
    message: str
    raw: Any
    #: The newest valid ``updatedAt`` the walk read before this object (the one before the walk started
    #: included), None if none: where the object sits in the walk's order when it gives no usable time.
    walked_to: datetime | None = None


@dataclass(slots=True)
class UserProfilePage:
    profiles: list[UserProfile] = field(default_factory=list)
    errors: list[ObjectError] = field(default_factory=list)
    #: Highest updatedAt seen so far in this walk (inclusive watermark to persist), None if nothing.
    watermark: datetime | None = None


def _profiles_page(objects: list[Any], offset: int, watermark: datetime | None, cursor: datetime | None,
                   seen_at_cursor: set[str]) -> tuple[UserProfilePage, datetime | None]:
    """One ``user-profile/list`` page read: its profiles (less those at ``cursor`` already returned) and what did
    not validate; and its newest updatedAt (None if nothing validated)."""
    page = UserProfilePage(watermark=watermark)
    stamps: list[datetime] = []
    walked_to = watermark
    for i, raw in enumerate(objects):
        try:
            profile = UserProfile.model_validate(raw)
        except ValidationError as exc:
            page.errors.append(ObjectError(offset + i, describe_validation_error(exc), raw, walked_to))
            continue
        stamps.append(profile.updated_at)
        walked_to = profile.updated_at if walked_to is None else max(walked_to, profile.updated_at)
        if profile.updated_at == cursor and profile.id in seen_at_cursor:
            continue
        page.profiles.append(profile)
    return page, max(stamps) if stamps else None


#: Passes over one run of identical updatedAt at most (the first, and those that found a member the one before
#: had skipped); past it the walk goes on and says so.
RUN_PASSES = 5


@dataclass(slots=True)
class _RunWalk:
    """The walk at one cursor of the ``UserProfile`` listing: a run of identical updatedAt walked by offset, pass
    by pass (``walked``), and the unreadable objects returned at the cursor."""

    walked: bool = False
    passes: int = 0
    #: This pass returned a member of the run that no earlier pass had.
    new_in_pass: bool = False
    #: What could not be read in the run, by its text: an unreadable object is returned once, not once a pass.
    errors: set[str] = field(default_factory=set)

    def found(self, new: bool) -> None:
        self.new_in_pass = self.new_in_pass or new

    def first_sight(self, error: ObjectError) -> bool:
        key = repr(error.raw)
        if key in self.errors:
            return False
        self.errors.add(key)
        return True

    def needs_another_pass(self, log_what: str) -> bool:
        """At the end of a pass: walk the run again (the first pass, or one that found a member the one before
        it skipped), unless RUN_PASSES were walked."""
        again = self.passes == 0 or self.new_in_pass
        self.passes += 1
        self.new_in_pass = False
        if again and self.passes >= RUN_PASSES:
            log.warning("%s: still changing after %d passes; going on (a member skipped meanwhile is read only "
                        "if it changes again)", log_what, self.passes)
            return False
        return again


@dataclass(slots=True)
class AttendeePage:
    attendees: list[Attendee] = field(default_factory=list)
    errors: list[ObjectError] = field(default_factory=list)
    watermark: datetime | None = None


@dataclass(slots=True)
class EngagementPage:
    entry_id: str
    page_index: int
    page_size: int
    total_count: int
    result: ParseResult[EngagementRow]

    @property
    def rows(self) -> list[Located[EngagementRow]]:
        return self.result.rows

    @property
    def errors(self) -> list[RowError]:
        return self.result.errors

    @property
    def capped(self) -> bool:
        """Kaltura has more rows than report.getTable will ever return (12,000-row cap)."""
        return self.total_count > REPORT_ROW_CAP


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("watermarks must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class KalturaClient:
    """One partner's Kaltura client. Use as ``async with KalturaClient(settings) as kaltura:``."""

    def __init__(
        self, settings: KalturaSettings, *, http: httpx.AsyncClient | None = None,
        wall: Callable[[], float] = SYSTEM_CLOCK.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._http = http or httpx.AsyncClient(timeout=settings.timeout_seconds)
        self._owns_http = http is None
        self._wall = wall
        self._sleep = sleep
        self._ks: str | None = None
        self._ks_expires = 0.0
        self.sessions_started = 0

    async def __aenter__(self) -> KalturaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------------------ transport
    async def _post(self, url: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.post(url, **kwargs)
        except httpx.HTTPError as exc:
            raise KalturaTransportError(f"{type(exc).__name__} calling {_redact(url)}") from exc
        return self._decode(response)

    def _decode(self, response: httpx.Response) -> Any:
        where = _redact(str(response.request.url))
        if response.status_code >= 500:
            raise KalturaTransportError(f"HTTP {response.status_code} from {where}", status=response.status_code)
        try:
            body = response.json()
        except ValueError:
            if response.status_code >= 400:
                raise KalturaRequestRejected(
                    f"HTTP {response.status_code} from {where}: {response.text[:300]}",
                    status=response.status_code) from None
            raise KalturaTransportError(f"non-JSON answer from {where}", status=response.status_code) from None
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else None
            raise KalturaRequestRejected(
                f"HTTP {response.status_code} from {where}: {message or body}",
                status=response.status_code, body=body)
        if isinstance(body, dict) and body.get("objectType") == "KalturaAPIException":
            args = body.get("args")
            if isinstance(args, dict):
                args = {k: v for k, v in args.items() if k.upper() not in ("KSID", "KS")}
            message = _KS_IN_MESSAGE.sub('KS "<redacted>"', str(body.get("message") or ""))
            raise api_error(str(body.get("code") or "UNKNOWN"), message, args, where=where)
        return body

    # ------------------------------------------------------------------------------------- KS
    async def start_session(self) -> str:
        """A fresh ADMIN KS from session.start (docs/reference/kaltura-api.md §1.2)."""
        s = self.settings
        body = await self._post(
            f"{s.service_url.rstrip('/')}/api_v3/service/session/action/start",
            json={"format": 1, "secret": s.admin_secret.get_secret_value(), "userId": s.user_id,
                  "type": SESSION_TYPE_ADMIN, "partnerId": s.partner_id, "expiry": s.ks_expiry_seconds,
                  "privileges": s.privileges},
        )
        if not isinstance(body, str) or not body:
            raise KalturaResponseError("session.start did not return a KS string")
        self._ks = body
        self._ks_expires = self._wall() + s.ks_expiry_seconds
        self.sessions_started += 1
        return body

    async def ks(self) -> str:
        """The current KS, started or renewed when missing or close to expiry."""
        if self._ks is None or self._wall() >= self._ks_expires - self.settings.ks_renew_margin_seconds:
            return await self.start_session()
        return self._ks

    async def _with_ks(self, call: Callable[[str], Awaitable[_T]]) -> _T:
        try:
            return await call(await self.ks())
        except InvalidKSError:
            log.info("Kaltura answered INVALID_KS; starting a new session and retrying once")
            self._ks = None
            return await call(await self.start_session())

    async def api_v3(self, service: str, action: str, params: dict[str, Any]) -> Any:
        """Call an api_v3 action with the KS (JSON in, ``format=1`` JSON out)."""
        url = f"{self.settings.service_url.rstrip('/')}/api_v3/service/{service}/action/{action}"

        async def call(ks: str) -> Any:
            return await self._post(url, json={**params, "format": 1, "ks": ks})

        return await self._with_ks(call)

    async def user_profile(self, path: str, body: dict[str, Any]) -> Any:
        """Call a User Profile service endpoint (Bearer KS)."""
        return await self._microservice(self.settings.user_profile_url, path, body)

    async def microservice(self, base: str, path: str, body: dict[str, Any]) -> Any:
        """Call a Kaltura microservice endpoint (Bearer KS), e.g. the Events Platform API (events_platform.py)."""
        return await self._microservice(base, path, body)

    async def _microservice(self, base: str, path: str, body: dict[str, Any]) -> Any:
        url = f"{base.rstrip('/')}/{path.lstrip('/')}"

        async def call(ks: str) -> Any:
            return await self._post(url, json=body, headers={"Authorization": f"Bearer {ks}"})

        return await self._with_ks(call)

    # ------------------------------------------------------------------------------ statuses
    async def list_user_profiles_page(
        self, app_guid: str, *, since: datetime | None = None, until: datetime | None = None,
        offset: int = 0, limit: int | None = None,
    ) -> tuple[list[Any], int]:
        """One raw ``user-profile/list`` page ordered by updatedAt: (objects, totalCount)."""
        flt: dict[str, Any] = {"appGuidIn": [app_guid]}
        if since is not None:
            flt["updatedAtGreaterThanOrEqual"] = _iso(since)
        if until is not None:
            flt["updatedAtLessThanOrEqual"] = _iso(until)
        body = await self.user_profile("user-profile/list", {
            "filter": flt, "pager": {"offset": offset, "limit": limit or self.settings.profile_page_size},
            "orderBy": "updatedAt", "includeTotalCount": True,
        })
        if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
            raise KalturaResponseError("user-profile/list answer has no objects list")
        return body["objects"], int(body.get("totalCount") or 0)

    async def iter_user_profiles(
        self, app_guid: str, *, since: datetime | None = None, until: datetime | None = None,
    ) -> AsyncIterator[UserProfilePage]:
        """Every profile of the app updated at or after ``since``, page by page (keyset walk).

        Inside a run of identical ``updatedAt`` longer than a page the walk pages by offset, and a member of the
        run updated meanwhile leaves it: every later position shifts back by one, so the member that moves into
        the page already read is skipped, and it is never read again if it does not change again (an invite
        batch shares one timestamp; session 12's ingest crash bench lost such registrants). So a run walked by
        offset is walked again from its start until a pass returns none of its members it had not returned
        (``RUN_PASSES`` at most), and what follows the run is returned only then: a pull that stops meanwhile
        has moved its watermark no further than the run."""
        limit = self.settings.profile_page_size
        cursor, offset = since, 0
        seen_at_cursor: set[str] = set()
        watermark = since
        run = _RunWalk()
        while True:
            objects, _ = await self.list_user_profiles_page(app_guid, since=cursor, until=until,
                                                            offset=offset, limit=limit)
            page, newest = _profiles_page(objects, offset, watermark, cursor, seen_at_cursor)
            ended = len(objects) < limit
            run.found(any(p.updated_at == cursor for p in page.profiles))  # a member no earlier pass returned
            if run.walked and (ended or (newest is not None and cursor is not None and newest > cursor)):
                # A pass over a run walked by offset is complete on this page.
                if run.needs_another_pass(log_what=f"user-profile/list run at {cursor}"):
                    # Return only the run's members now (and what could not be read among them); what follows
                    # the run is read again after the next pass.
                    page.profiles = [p for p in page.profiles if p.updated_at == cursor]
                    page.errors = [e for e in page.errors if (e.walked_to is None or e.walked_to == cursor)
                                   and run.first_sight(e)]
                    seen_at_cursor.update(p.id for p in page.profiles)
                    if page.profiles or page.errors:
                        yield page
                    offset = 0
                    continue
                errors_seen = run.errors
                run = _RunWalk()
                run.errors = errors_seen  # the verified pass's page still reads the run's unreadable objects
            page.errors = [e for e in page.errors if run.first_sight(e)]  # once at this cursor, not once a pass
            if newest is not None:
                watermark = newest if watermark is None else max(watermark, newest)
                page.watermark = watermark
            if page.profiles or page.errors:
                yield page
            if ended:
                return
            if newest is None:
                offset += limit  # a whole page of unparseable objects: step over it
                continue
            if cursor is not None and newest == cursor:
                offset += limit  # a run of identical timestamps longer than a page
                run.walked = True
                seen_at_cursor.update(p.id for p in page.profiles)
            else:
                cursor, offset, run = newest, 0, _RunWalk()
                seen_at_cursor = {p.id for p in page.profiles if p.updated_at == newest}

    async def list_users(self, user_ids: Sequence[str]) -> dict[str, KalturaUser]:
        """api_v3 user.list ``filter[idIn]`` → users keyed by id lower-cased (ids match case-insensitively)."""
        found: dict[str, KalturaUser] = {}
        unique = list(dict.fromkeys(u for u in user_ids if u))
        for start in range(0, len(unique), USER_LIST_MAX_PAGE):
            chunk = unique[start : start + USER_LIST_MAX_PAGE]
            body = await self.api_v3("user", "list", {
                "filter": {"objectType": "KalturaUserFilter", "idIn": ",".join(chunk)},
                "pager": {"objectType": "KalturaFilterPager", "pageSize": USER_LIST_MAX_PAGE, "pageIndex": 1},
            })
            if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
                raise KalturaResponseError("user.list answer has no objects list")
            for raw in body["objects"]:
                try:
                    user = KalturaUser.model_validate(raw)
                except ValidationError as exc:
                    log.warning("user.list returned an invalid user: %s", describe_validation_error(exc))
                    continue
                found[user.id.lower()] = user
        return found

    async def iter_attendees(
        self, app_guid: str, *, since: datetime | None = None, until: datetime | None = None,
    ) -> AsyncIterator[AttendeePage]:
        """Profiles since the watermark joined with their users (email, names), page by page."""
        async for page in self.iter_user_profiles(app_guid, since=since, until=until):
            users = await self.list_users([p.user_id for p in page.profiles])
            yield AttendeePage(
                attendees=[Attendee(profile=p, user=users.get(p.user_id.lower())) for p in page.profiles],
                errors=page.errors, watermark=page.watermark,
            )

    # ---------------------------------------------------------------------------- engagement
    async def get_engagement_page(
        self, virtual_event_id: int, entry_id: str, *, page_index: int = 1, page_size: int | None = None,
        from_date: datetime | None = None, to_date: datetime | None = None,
    ) -> EngagementPage:
        """One page of report 60013 for one session (``pageIndex`` is 1-based)."""
        s = self.settings
        size = page_size or s.report_page_size
        flt: dict[str, Any] = {
            "objectType": "KalturaEndUserReportInputFilter",
            "virtualEventIdIn": str(virtual_event_id),
            "entryIdIn": check_entry_id(entry_id),
        }
        if from_date is not None:
            flt["fromDate"] = int(from_date.timestamp())
        if to_date is not None:
            flt["toDate"] = int(to_date.timestamp())
        body = await self.api_v3("report", "getTable", {
            "reportType": EP_WEBCAST_VOD_LIVE_USERS_ENGAGEMENT,
            "reportInputFilter": flt,
            "pager": {"objectType": "KalturaFilterPager", "pageSize": size, "pageIndex": page_index},
            "responseOptions": {"objectType": "KalturaReportResponseOptions", "delimiter": s.report_delimiter},
        })
        if not isinstance(body, dict):
            raise KalturaResponseError("report.getTable answer is not an object")
        header, data = body.get("header") or "", body.get("data") or ""
        if not isinstance(header, str) or not isinstance(data, str):
            raise KalturaResponseError("report.getTable header/data are not strings")
        result = parse_engagement_table(
            header, data, s.report_delimiter, entry_id=entry_id,
            first_row_number=(page_index - 1) * size + 1, validate_email=s.validate_email,
        )
        return EngagementPage(entry_id, page_index, size, int(body.get("totalCount") or 0), result)

    async def iter_engagement(
        self, virtual_event_id: int, entry_id: str, *, from_date: datetime | None = None,
        to_date: datetime | None = None,
    ) -> AsyncIterator[EngagementPage]:
        """All pages of report 60013 for one session, up to totalCount or the 12,000-row cap.

        Kaltura refuses a page whose ``pageIndex * pageSize`` passes the cap, so the last page
        before the cap is fetched with a smaller page size that still lines up with the rows
        already read: every reachable row is read exactly once.
        """
        size = self.settings.report_page_size
        offset = 0
        while True:
            index = offset // size + 1
            page = await self.get_engagement_page(virtual_event_id, entry_id, page_index=index, page_size=size,
                                                  from_date=from_date, to_date=to_date)
            yield page
            offset += size
            reachable = min(page.total_count, REPORT_ROW_CAP)
            if offset >= reachable:
                if page.capped:
                    log.warning("session %s has %d engagement rows; report.getTable stops at %d",
                                entry_id, page.total_count, REPORT_ROW_CAP)
                return
            if offset + size > REPORT_ROW_CAP:
                size = _aligned_page_size(offset, REPORT_ROW_CAP - offset)

    async def get_engagement_csv(
        self, virtual_event_id: int, entry_id: str, *, from_date: datetime | None = None,
        to_date: datetime | None = None,
    ) -> ParseResult[EngagementCsvRow]:
        """Report 4021 CSV for one session (getCsvFromStringParams → serve URL → parse)."""
        params = [f"entry_ids={check_entry_id(entry_id)}", f"virtualeventid={int(virtual_event_id)}"]
        if from_date is not None:
            params.append(f"from_date={int(from_date.timestamp())}")
        if to_date is not None:
            params.append(f"to_date={int(to_date.timestamp())}")
        url = await self.api_v3("report", "getCsvFromStringParams",
                                {"id": USER_REACTIONS_REPORT, "params": ";".join(params)})
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise KalturaResponseError("getCsvFromStringParams did not return a URL")
        if insecure_reason(url) is not None:  # a serve URL carries a KS: never over plain http
            raise KalturaResponseError(f"getCsvFromStringParams returned an insecure URL ({_redact(url)})")
        try:
            response = await self._http.get(url)
        except httpx.HTTPError as exc:
            raise KalturaTransportError(f"{type(exc).__name__} downloading report {USER_REACTIONS_REPORT}") from exc
        if response.status_code != 200:
            self._decode(response)  # raises the precise error (5xx / 4xx / API exception)
            raise KalturaTransportError(f"HTTP {response.status_code} downloading report", status=response.status_code)
        if response.headers.get("content-type", "").startswith("application/json"):
            self._decode(response)  # a KalturaAPIException instead of the file
            raise KalturaResponseError("report serve URL answered JSON instead of CSV")
        return parse_engagement_csv(response.content, entry_id=entry_id,
                                    validate_email=self.settings.validate_email)

    # --------------------------------------------------------------------------------- polls
    async def get_poll_answers(
        self, virtual_event_id: int, entry_id: str, *, from_date: datetime | None = None,
        to_date: datetime | None = None,
    ) -> ParseResult[PollAnswerRow]:
        """One session's poll answers via the reports microservice ``pollsActivity`` report."""
        s = self.settings
        if not s.reports_url:
            raise ValueError("KalturaSettings.reports_url is not configured")
        params: dict[str, Any] = {"entries_ids": [entry_id], "virtual_event_ids": [str(virtual_event_id)]}
        if from_date is not None:
            params["from_date_id"] = from_date.astimezone(UTC).strftime("%Y-%m-%d")
        if to_date is not None:
            params["to_date_id"] = to_date.astimezone(UTC).strftime("%Y-%m-%d")
        started = await self._microservice(s.reports_url, "report/generate",
                                           {"reportName": "pollsActivity", "reportParameters": params})
        session_id = started.get("sessionId") if isinstance(started, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise KalturaResponseError("report/generate did not return a sessionId")
        for check in range(s.report_poll_max_checks):
            status = await self._microservice(s.reports_url, "report/serve",
                                              {"sessionId": session_id, "statusOnly": True})
            if isinstance(status, dict) and status.get("status") == "completed":
                break
            if check + 1 < s.report_poll_max_checks:
                await self._sleep(s.report_poll_interval_seconds)
        else:
            raise ReportNotReadyError(
                f"pollsActivity report not completed after {s.report_poll_max_checks} checks")
        csv_bytes = await self._download_report(session_id)
        return parse_poll_answers_csv(csv_bytes, validate_email=s.validate_email)

    async def _download_report(self, session_id: str) -> bytes:
        url = f"{(self.settings.reports_url or '').rstrip('/')}/report/serve"

        async def call(ks: str) -> bytes:
            try:
                response = await self._http.post(url, json={"sessionId": session_id},
                                                 headers={"Authorization": f"Bearer {ks}"})
            except httpx.HTTPError as exc:
                raise KalturaTransportError(f"{type(exc).__name__} downloading pollsActivity") from exc
            if response.status_code != 200 or response.headers.get("content-type", "").startswith(
                    "application/json"):
                self._decode(response)  # raises the precise error
                raise KalturaResponseError("report/serve answered JSON instead of CSV")
            return response.content

        return await self._with_ks(call)


def _aligned_page_size(offset: int, room: int) -> int:
    """Largest page size <= room such that page boundaries fall on ``offset``."""
    for size in range(min(room, offset), 0, -1):
        if offset % size == 0:
            return size
    return 1


def _redact(url: str) -> str:
    """Drop the query string (it may hold a KS)."""
    return url.split("?", 1)[0]
