"""Events Platform API: ``POST /api/v1/events/list`` and ``POST /api/v1/sessions/list``
(docs/reference/kaltura-api.md §9.1), from the scenario's schedule.

Bearer KS like the User Profile service. Every answer carries ``status``; anything but ``ok`` is an
error even at HTTP 200 (§9.1). Dates are ISO strings. ``ScenarioConfig.hide_schedule`` answers an
empty list, so a client falls back to the tenants file (§9.4).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from kaltura_sandbox.http_common import sandbox_of
from kaltura_sandbox.ks import KsError
from kaltura_sandbox.sandbox import Sandbox


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _checked(request: web.Request) -> tuple[Sandbox, dict[str, Any]] | web.Response:
    sandbox = sandbox_of(request)
    header = request.headers.get("Authorization", "")
    ks = header[len("Bearer "):].strip() if header.startswith("Bearer ") else None
    try:
        sandbox.ks.check(ks)
    except KsError:
        return web.json_response({"status": "Forbidden", "message": "invalid KS"})
    try:
        body = json.loads(await request.read() or b"{}")
    except json.JSONDecodeError:
        return web.json_response({"status": "InvalidArgument", "message": "body is not JSON"})
    if not isinstance(body, dict):
        return web.json_response({"status": "InvalidArgument", "message": "body must be an object"})
    return sandbox, body


async def list_events(request: web.Request) -> web.Response:
    checked = await _checked(request)
    if isinstance(checked, web.Response):
        return checked
    sandbox, body = checked
    scenario = sandbox.scenario
    wanted = ((body.get("filter") or {}).get("idIn")) or [scenario.config.virtual_event_id]
    events = []
    if scenario.config.virtual_event_id in [int(i) for i in wanted if str(i).isdigit()] \
            and not sandbox.config.hide_schedule:
        events.append({
            "id": scenario.config.virtual_event_id, "name": scenario.config.event_name,
            "startDate": _iso(scenario.event_start), "endDate": _iso(scenario.event_end),
            "doorsOpenDate": _iso(scenario.doors_open), "timezone": "UTC",
        })
    return web.json_response({"events": events, "totalCount": len(events), "status": "ok"})


async def list_sessions(request: web.Request) -> web.Response:
    checked = await _checked(request)
    if isinstance(checked, web.Response):
        return checked
    sandbox, body = checked
    scenario = sandbox.scenario
    if body.get("eventId") != scenario.config.virtual_event_id or sandbox.config.hide_schedule:
        return web.json_response({"sessions": [], "status": "ok"})
    return web.json_response({"status": "ok", "sessions": [
        {"id": s.entry_id, "name": s.name, "type": "LiveWebcast", "startDate": _iso(s.start), "endDate": _iso(s.end)}
        for s in scenario.sessions]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/events/list", list_events)
    app.router.add_post("/api/v1/sessions/list", list_sessions)
