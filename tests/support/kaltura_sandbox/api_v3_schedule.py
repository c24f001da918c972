"""api_v3 ``virtualevent_virtualevent.get`` and ``schedule_scheduleevent.get`` (docs/reference/kaltura-api.md §9.2):
the virtual event names its main schedule event, whose ``startDate``/``endDate`` (Unix seconds) are the
scenario's event start and end. ``ScenarioConfig.hide_schedule`` leaves ``mainEventScheduleEventId`` out.
The virtual event also carries its ``registrationFormSchema`` (§10): the scenario's registration form.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kaltura_sandbox.http_common import api_exception
from kaltura_sandbox.sandbox import Sandbox
from kaltura_sandbox.scenario import registration_form_schema


def main_schedule_event_id(sandbox: Sandbox) -> int:
    """The sandbox's id of the event's main schedule event (derived from the virtual event id)."""
    return sandbox.config.virtual_event_id * 10 + 1


def _id(params: dict[str, Any]) -> int | None:
    raw = params.get("id")
    return int(raw) if isinstance(raw, (int, str)) and str(raw).isdigit() else None


async def virtual_event_get(request: web.Request, sandbox: Sandbox, params: dict[str, Any]) -> web.Response:
    if _id(params) != sandbox.config.virtual_event_id:
        return api_exception("VIRTUAL_EVENT_NOT_FOUND", f"Virtual event id [{params.get('id')}] not found")
    body: dict[str, Any] = {"id": sandbox.config.virtual_event_id, "name": sandbox.config.event_name,
                            "partnerId": sandbox.partner_id, "objectType": "KalturaVirtualEvent",
                            "registrationFormSchema": registration_form_schema()}
    if not sandbox.config.hide_schedule:
        body["mainEventScheduleEventId"] = main_schedule_event_id(sandbox)
    return web.json_response(body)


async def schedule_event_get(request: web.Request, sandbox: Sandbox, params: dict[str, Any]) -> web.Response:
    if sandbox.config.hide_schedule or _id(params) != main_schedule_event_id(sandbox):
        return api_exception("SCHEDULE_EVENT_NOT_FOUND", f"Schedule event id [{params.get('id')}] not found")
    start, end = sandbox.scenario.event_start, sandbox.scenario.event_end
    return web.json_response({
        "id": main_schedule_event_id(sandbox), "summary": sandbox.config.event_name,
        "startDate": int(start.timestamp()), "endDate": int(end.timestamp()),
        "duration": int((end - start).total_seconds()), "status": 2, "objectType": "KalturaLiveStreamScheduleEvent",
    })
