"""api_v3: ``session.start``, ``user.list``, ``report.getTable`` (60013), ``report.getCsvFromStringParams``
(4021) and its serve URL. Every answer is JSON (the client asks ``format=1``); errors are
KalturaAPIException bodies at HTTP 200 (docs/reference/kaltura-api.md §1.1, §7.1, §7.5).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from kaltura_sandbox.api_v3_schedule import schedule_event_get, virtual_event_get
from kaltura_sandbox.formats import (
    REPORT_4021_COLUMNS,
    REPORT_60013_COLUMNS,
    render_csv,
    render_table,
    row_4021,
    row_60013,
)
from kaltura_sandbox.http_common import BadRequest, api_exception, read_api_v3_params, sandbox_of
from kaltura_sandbox.ks import SESSION_TYPE_ADMIN, KsError, KsInfo
from kaltura_sandbox.sandbox import Sandbox

EP_WEBCAST_VOD_LIVE_USERS_ENGAGEMENT = 60013
USER_REACTIONS_CSV_REPORT = 4021
DEFAULT_PAGE_SIZE = 30  # KalturaFilterPager default
MAX_LIST_PAGE_SIZE = 500

Handler = Callable[[web.Request, Sandbox, dict[str, Any]], Awaitable[web.Response]]


def _int(params: dict[str, Any], key: str, default: int | None = None) -> int:
    value = params.get(key, default)
    if value is None or value == "":
        if default is None:
            raise BadRequest(f"MISSING_MANDATORY_PARAMETER:{key}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"INVALID_PARAMETER:{key}") from exc


def _sub(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = params.get(key) or {}
    if not isinstance(value, dict):
        raise BadRequest(f"INVALID_PARAMETER:{key}")
    return value


def _check_ks(sandbox: Sandbox, params: dict[str, Any]) -> KsInfo | web.Response:
    ks = params.get("ks")
    try:
        info = sandbox.ks.check(ks if isinstance(ks, str) else None)
    except KsError as exc:
        if str(exc) == "MISSING_KS":
            return api_exception("MISSING_KS", "Missing KS, session not established")
        return api_exception(
            "INVALID_KS", f'Invalid KS "{ks}" Error: "-1,{exc}"', {"KSID": str(ks), "ERR_DESC": str(exc)}
        )
    if info.session_type != SESSION_TYPE_ADMIN:
        return api_exception("SERVICE_FORBIDDEN", "The access to this service is forbidden")
    return info


async def session_start(request: web.Request, sandbox: Sandbox, params: dict[str, Any]) -> web.Response:
    partner = _int(params, "partnerId", sandbox.partner_id)
    secret = params.get("secret")
    if not secret:
        raise BadRequest("MISSING_MANDATORY_PARAMETER:secret")
    if partner != sandbox.partner_id or secret != sandbox.admin_secret:
        return api_exception(
            "START_SESSION_ERROR", f"Error while starting session for partner [{partner}]",
            {"PARTNER_ID": str(partner)},
        )
    ks = sandbox.ks.issue(
        str(params.get("userId") or ""), _int(params, "type", 0),
        _int(params, "expiry", sandbox.config.default_ks_expiry_seconds), str(params.get("privileges") or ""),
    )
    return web.json_response(ks)


async def user_list(request: web.Request, sandbox: Sandbox, params: dict[str, Any]) -> web.Response:
    flt, pager = _sub(params, "filter"), _sub(params, "pager")
    size = min(_int(pager, "pageSize", DEFAULT_PAGE_SIZE), MAX_LIST_PAGE_SIZE)
    index = max(_int(pager, "pageIndex", 1), 1)
    now = sandbox.now()
    id_in = flt.get("idIn")
    if id_in:
        wanted = [i for i in str(id_in).split(",") if i]
        users = [u for u in (sandbox.view.user(i, now) for i in wanted) if u is not None]
    else:
        users = [u for u in (sandbox.view.user(r.user_id, now) for r in sandbox.scenario.registrants) if u]
    page = users[(index - 1) * size : index * size]
    return web.json_response(
        {"objects": page, "totalCount": len(users), "objectType": "KalturaUserListResponse"}
    )


def _unix_param(flt: dict[str, Any], key: str) -> datetime | None:
    if flt.get(key) in (None, ""):
        return None
    return datetime.fromtimestamp(_int(flt, key), tz=UTC)


async def report_get_table(request: web.Request, sandbox: Sandbox, params: dict[str, Any]) -> web.Response:
    report_type = _int(params, "reportType")
    if report_type != EP_WEBCAST_VOD_LIVE_USERS_ENGAGEMENT:
        return api_exception(
            "INVALID_ENUM_VALUE",
            f"Invalid enumeration value [{report_type}] for parameter [reportType]: the sandbox serves "
            f"only {EP_WEBCAST_VOD_LIVE_USERS_ENGAGEMENT}",
        )
    flt, pager = _sub(params, "reportInputFilter"), _sub(params, "pager")
    options = _sub(params, "responseOptions")
    delimiter = str(options.get("delimiter") or ",")
    # Multi-value filters are split with the response delimiter (docs/reference/kaltura-api.md §3.2).
    ve_ids = [v for v in str(flt.get("virtualEventIdIn") or "").split(delimiter) if v]
    if ve_ids and str(sandbox.config.virtual_event_id) not in ve_ids:
        rows = []
    else:
        entry_ids = [v for v in str(flt.get("entryIdIn") or "").split(delimiter) if v] or None
        rows = sandbox.view.engagement(
            sandbox.now(), entry_ids, _unix_param(flt, "fromDate"), _unix_param(flt, "toDate")
        )
    size = _int(pager, "pageSize", DEFAULT_PAGE_SIZE)
    index = max(_int(pager, "pageIndex", 1), 1)
    if size <= 0:
        raise BadRequest("INVALID_PARAMETER:pager.pageSize")
    cap = sandbox.config.report_row_cap
    if index * size > cap:  # docs/reference/kaltura-api.md §3.3: first page clamped, later pages refused
        if index > 1:
            return api_exception("SEARCH_TOO_GENERAL", f"result limit is {cap} rows")
        size = cap
    page = rows[(index - 1) * size : index * size]
    header, data = render_table(REPORT_60013_COLUMNS, (row_60013(e) for e in page), delimiter)
    return web.json_response(
        {"header": header, "data": data, "totalCount": len(rows), "objectType": "KalturaReportTable"}
    )


def _string_params(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip()] = value.strip()
    return out


async def report_get_csv(request: web.Request, sandbox: Sandbox, params: dict[str, Any]) -> web.Response:
    report_id = _int(params, "id")
    if report_id != USER_REACTIONS_CSV_REPORT:
        return api_exception("REPORT_NOT_FOUND", f"Report id [{report_id}] not found")
    sp = _string_params(str(params.get("params") or ""))
    entry_ids = sp.get("entry_ids", "")
    token_data = {"id": report_id, "entry_ids": entry_ids, "virtualeventid": sp.get("virtualeventid", "")}
    token = base64.urlsafe_b64encode(json.dumps(token_data).encode()).decode().rstrip("=")
    entry = entry_ids.replace(",", "_") or "all"
    name = f"Report_{report_id}_{sandbox.partner_id}_{entry}.csv"
    ks = quote(str(params["ks"]), safe="")
    url = f"{request.url.origin()}/api_v3/service/report/action/serve/id/{token}/name/{name}?ks={ks}"
    return web.json_response(url)


async def report_serve(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    checked = _check_ks(sandbox, dict(request.query))
    if isinstance(checked, web.Response):
        return checked
    token = request.match_info["token"]
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise web.HTTPNotFound(text="unknown report file") from None
    ve = str(data.get("virtualeventid") or "")
    entry_ids = [e for e in str(data.get("entry_ids") or "").split(",") if e] or None
    rows = [] if ve and ve != str(sandbox.config.virtual_event_id) else sandbox.view.engagement(
        sandbox.now(), entry_ids)
    body = render_csv(REPORT_4021_COLUMNS, (row_4021(e) for e in rows))
    return web.Response(
        body=body, content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{request.match_info["name"]}"'},
    )


_ACTIONS: dict[tuple[str, str], tuple[Handler, bool]] = {
    ("session", "start"): (session_start, False),
    ("user", "list"): (user_list, True),
    ("report", "gettable"): (report_get_table, True),
    ("report", "getcsvfromstringparams"): (report_get_csv, True),
    # The event's schedule, api_v3's way (docs/reference/kaltura-api.md §9.2; api_v3_schedule.py).
    ("virtualevent_virtualevent", "get"): (virtual_event_get, True),
    ("schedule_scheduleevent", "get"): (schedule_event_get, True),
}


async def dispatch(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    service = request.match_info["service"].lower()
    action = request.match_info["action"].lower()
    try:
        params = await read_api_v3_params(request)
    except BadRequest as exc:
        return api_exception("INVALID_REQUEST", str(exc))
    found = _ACTIONS.get((service, action))
    if found is None:
        if not any(s == service for s, _ in _ACTIONS):
            return api_exception("SERVICE_DOES_NOT_EXISTS", f'Service "{service}" does not exists')
        return api_exception("ACTION_DOES_NOT_EXISTS", f'Action "{action}" does not exists for service "{service}"')
    handler, needs_ks = found
    if needs_ks:
        checked = _check_ks(sandbox, params)
        if isinstance(checked, web.Response):
            return checked
    try:
        return await handler(request, sandbox, params)
    except BadRequest as exc:
        code, _, name = str(exc).partition(":")
        return api_exception(code, f"{code.replace('_', ' ').capitalize()} [{name}]", {"PARAM_NAME": name})


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", "/api_v3/service/{service}/action/{action}", dispatch)
    app.router.add_get("/api_v3/service/report/action/serve/id/{token}/name/{name}", report_serve)
