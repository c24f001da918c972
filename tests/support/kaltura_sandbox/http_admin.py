"""The sandbox's own admin API under ``/_sandbox/`` - not Kaltura's; for tests and demos.

GET  /_sandbox/status                      clock, speed, scenario summary, notification counters
POST /_sandbox/advance  {"seconds": N} | {"to": "<ISO>" | "end" | "event_start" | "event_end"}
POST /_sandbox/play     {"speed": X}       play at X× real time (0 pauses)
POST /_sandbox/pause
POST /_sandbox/reset                       back to scenario time zero, notifications rescheduled
GET  /_sandbox/credentials                 partner id, admin secret, app GUID, base URLs (sandbox only!)
GET  /_sandbox/truth[?as_of=now|<ISO>]     ground truth (statuses, engagement rows, poll answers)
POST /_sandbox/ks/revoke                   every KS issued so far becomes INVALID_KS
POST /_sandbox/ks/reject {"enabled": bool} while enabled, every KS (even a fresh one) is INVALID_KS
GET  /_sandbox/notifications               delivery log
POST /_sandbox/notifications/target {"url": ..., "secret": ...}
GET  /_sandbox/exports/engagement/{entry_id}.csv   report 4021 CSV for one session (as of now)
GET  /_sandbox/exports/polls/{entry_id}.csv        poll answers CSV (OUR ASSUMED layout)
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from kaltura_sandbox.formats import (
    POLL_ANSWER_COLUMNS,
    REPORT_4021_COLUMNS,
    render_csv,
    row_4021,
    row_poll_answer,
)
from kaltura_sandbox.http_common import sandbox_of
from kaltura_sandbox.sandbox import Sandbox


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _status(sandbox: Sandbox) -> dict[str, Any]:
    s = sandbox.scenario
    log = sandbox.dispatcher.log
    return {
        "now": _iso(sandbox.now()), "speed": sandbox.clock.speed, "seed": sandbox.seed,
        "partner_id": sandbox.partner_id, "virtual_event_id": sandbox.config.virtual_event_id,
        "app_guid": s.app_guid, "origin": _iso(s.origin), "event_start": _iso(s.event_start),
        "event_end": _iso(s.event_end), "end": _iso(s.end), "finished": sandbox.now() >= s.end,
        "sessions": [{"entry_id": x.entry_id, "name": x.name, "start": _iso(x.start), "end": _iso(x.end)}
                     for x in s.sessions],
        "registrants": len(s.registrants),
        "notifications": {"target": sandbox.dispatcher.url, "pending": sandbox.dispatcher.pending,
                          "delivered": len(log.delivered), "gave_up": len(log.gave_up)},
    }


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"body is not valid JSON: {exc.msg}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def _parse_time(sandbox: Sandbox, value: str) -> datetime:
    named = {"end": sandbox.scenario.end, "event_start": sandbox.scenario.event_start,
             "event_end": sandbox.scenario.event_end}
    if value in named:
        return named[value]
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"to: not an ISO 8601 time or one of {sorted(named)}") from exc
    if when.tzinfo is None:
        raise web.HTTPBadRequest(text="to: needs a timezone")
    return when


async def status(request: web.Request) -> web.Response:
    return web.json_response(_status(sandbox_of(request)))


async def advance(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    body = await _json(request)
    if "seconds" in body:
        try:
            seconds = float(body["seconds"])
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text="seconds: must be a number") from exc
        if seconds < 0:
            raise web.HTTPBadRequest(text="seconds: the clock only moves forward")
        sandbox.advance(seconds)
    elif "to" in body:
        sandbox.advance_to(_parse_time(sandbox, str(body["to"])))
    else:
        raise web.HTTPBadRequest(text='give "seconds" or "to"')
    return web.json_response(_status(sandbox))


async def play(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    body = await _json(request)
    try:
        speed = float(body.get("speed", 1.0))
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text="speed: must be a number") from exc
    if speed < 0:
        raise web.HTTPBadRequest(text="speed: must be >= 0")
    sandbox.clock.set_speed(speed)
    sandbox.dispatcher.wake()
    return web.json_response(_status(sandbox))


async def pause(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    sandbox.clock.set_speed(0.0)
    return web.json_response(_status(sandbox))


async def reset(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    sandbox.reset()
    return web.json_response(_status(sandbox))


async def credentials(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    base = str(request.url.origin())
    return web.json_response({
        "partner_id": sandbox.partner_id, "admin_secret": sandbox.admin_secret,
        "virtual_event_id": sandbox.config.virtual_event_id, "app_guid": sandbox.scenario.app_guid,
        "service_url": base, "user_profile_url": f"{base}/api/v1", "reports_url": f"{base}/api/v1",
        "events_api_url": base,
        "session_entry_ids": [s.entry_id for s in sandbox.scenario.sessions],
    })


async def truth(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    as_of = request.query.get("as_of")
    when = None if as_of is None else sandbox.now() if as_of == "now" else _parse_time(sandbox, as_of)
    return web.json_response(sandbox.view.truth(when))


async def revoke(request: web.Request) -> web.Response:
    return web.json_response({"revoked": sandbox_of(request).ks.revoke_all()})


async def reject_ks(request: web.Request) -> web.Response:
    body = await _json(request)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise web.HTTPBadRequest(text="enabled: must be true or false")
    sandbox_of(request).ks.reject_all = enabled
    return web.json_response({"reject_all": enabled})


async def notifications(request: web.Request) -> web.Response:
    log = sandbox_of(request).dispatcher.log
    return web.json_response({
        "attempts": log.attempts, "delivered": {str(k): v for k, v in log.delivered.items()},
        "gave_up": log.gave_up, "pending": sandbox_of(request).dispatcher.pending,
    })


async def notification_target(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    body = await _json(request)
    url = body.get("url")
    if url is not None and not isinstance(url, str):
        raise web.HTTPBadRequest(text="url: must be a string or null")
    secret = body.get("secret")
    sandbox.dispatcher.configure(url, secret if isinstance(secret, str) else None)
    return web.json_response(_status(sandbox))


def _csv(body: bytes, name: str) -> web.Response:
    return web.Response(body=body, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _session_to_export(request: web.Request) -> tuple[Sandbox, str]:
    """The sandbox and the path's ``entry_id``; 404 unless the scenario has that session."""
    sandbox = sandbox_of(request)
    entry = request.match_info["entry_id"]
    if sandbox.scenario.session(entry) is None:
        raise web.HTTPNotFound(text=f"no session {entry}")
    return sandbox, entry


async def export_engagement(request: web.Request) -> web.Response:
    sandbox, entry = _session_to_export(request)
    rows = sandbox.view.engagement(sandbox.now(), [entry])
    return _csv(render_csv(REPORT_4021_COLUMNS, (row_4021(e) for e in rows)),
                f"Report_4021_{sandbox.partner_id}_{entry}.csv")


async def export_polls(request: web.Request) -> web.Response:
    sandbox, entry = _session_to_export(request)
    rows = sandbox.view.poll_answers(sandbox.now(), [entry])
    return _csv(render_csv(POLL_ANSWER_COLUMNS, (row_poll_answer(a) for a in rows)),
                f"pollsActivity_{sandbox.partner_id}_{entry}.csv")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sandbox/status", status)
    r.add_post("/_sandbox/advance", advance)
    r.add_post("/_sandbox/play", play)
    r.add_post("/_sandbox/pause", pause)
    r.add_post("/_sandbox/reset", reset)
    r.add_get("/_sandbox/credentials", credentials)
    r.add_get("/_sandbox/truth", truth)
    r.add_post("/_sandbox/ks/revoke", revoke)
    r.add_post("/_sandbox/ks/reject", reject_ks)
    r.add_get("/_sandbox/notifications", notifications)
    r.add_post("/_sandbox/notifications/target", notification_target)
    r.add_get("/_sandbox/exports/engagement/{entry_id}.csv", export_engagement)
    r.add_get("/_sandbox/exports/polls/{entry_id}.csv", export_polls)
