"""Admin API under /_sandbox/ — not a Marketo path, never limited or authenticated.

GET  /_sandbox/health                      → {"ok": true}
GET  /_sandbox/instances                   → instances with their credentials and path prefixes
POST /_sandbox/reset[?instance=ID]         → forget all records/tokens/counters; re-provision presets
GET  /_sandbox/dump[?instance=ID]          → every stored record
GET  /_sandbox/calls[?instance=ID]         → call counts by endpoint and code, and per client id
GET  /_sandbox/requests[?instance=ID&limit=N] → the request log (newest last)
GET  /_sandbox/faults, PUT /_sandbox/faults → read / replace the fault plan (FaultConfig JSON; one plan for all
     instances, scope rules with "instance"); replacing it keeps every counter
GET  /_sandbox/faults/stats[?instance=ID]  → faults injected into that instance, cumulative, by kind and endpoint
GET  /_sandbox/limits?instance=ID, PUT /_sandbox/limits?instance=ID → read / replace LimitsConfig
POST /_sandbox/channels {name, applicableProgramType, statuses:[{name, step, success}]} → seed a channel
POST /_sandbox/programs {name, channel, type, description, id?} → create a program
POST /_sandbox/tokens/expire[?instance=ID] → expire every issued token now
POST /_sandbox/shape[?instance=ID] {channels, programs, customObjects, activityTypes} → build what an admin makes in
     the UI (shape.py: approved, UI-style ``_c`` object names, chosen fields and lengths)
PUT  /_sandbox/permissions?client_id=C[&instance=ID] {"permissions": [...] | null} → the API user's role (603)
GET  /_sandbox/clock, POST /_sandbox/clock {"advance": s} | {"set": epoch} (manual clock only)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .api_activities import activity_json, type_json
from .api_bulk import job_status_json, tick
from .api_customobjects import describe_json
from .api_programs import add_channel, add_program, channel_json, program_json
from .clock import Clock, ManualTime
from .config import FaultConfig, LimitsConfig
from .envelope import iso
from .faults import FaultInjector
from .instance import Instance
from .shape import InstanceShape, apply_shape


class StatusSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    step: int = Field(ge=0)
    success: bool = False


class ChannelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1)
    applicable_program_type: str = Field("event", alias="applicableProgramType")
    statuses: list[StatusSpec] = Field(min_length=1)


class ProgramSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    type: str = "Event"
    description: str = ""
    id: int | None = Field(None, ge=1)


class PermissionsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    permissions: list[str] | None


def set_permissions(inst: Instance, client_id: str | None, permissions: list[str] | None) -> None:
    """Replace the role of one client's API user (None: every permission), for the life of the process."""
    cid = client_id or inst.config.clients[0].client_id
    if cid not in inst.clients:
        raise ValueError(f"no client {cid!r} on instance {inst.munchkin_id}")
    updated = inst.clients[cid].model_copy(update={"permissions": permissions})
    type(updated).model_validate(updated.model_dump())  # field-level check of the names
    inst.clients[cid] = updated


def dump_instance(inst: Instance, now: float) -> dict[str, Any]:
    """Everything the instance stores, in Marketo's field names."""
    tick(inst, now)
    return {
        "munchkinId": inst.munchkin_id,
        "leads": [{"id": ld.id, "createdAt": iso(ld.created), "updatedAt": iso(ld.updated), **ld.values}
                  for ld in sorted(inst.leads.values(), key=lambda x: x.id)],
        "channels": [channel_json(c) for c in inst.channels.values()],
        "programs": [program_json(p) for p in inst.programs.values()],
        "programMembers": [
            {"programId": m.program_id, "leadId": m.lead_id, "statusName": m.status_name, "step": m.step,
             "reachedSuccess": m.reached_success, "membershipDate": iso(m.membership_date),
             "updatedAt": iso(m.updated), **m.data}
            for m in sorted(inst.members.values(), key=lambda m: (m.program_id, m.lead_id))
        ],
        "statusChanges": list(inst.status_changes),
        "activityTypes": [type_json(t) for t in inst.activity_types.values() if not t.deleted],
        "activities": [activity_json(inst, a) for a in sorted(inst.activities, key=lambda a: a.id)],
        "customObjectTypes": [describe_json(c, c.approved or c.draft, with_state=True)  # type: ignore[arg-type]
                              for c in inst.co_types.values()],
        "customObjects": {
            name: [{"marketoGUID": r.guid, "createdAt": iso(r.created), "updatedAt": iso(r.updated), **r.values}
                   for r in recs.values()]
            for name, recs in inst.co_records.items()
        },
        "importJobs": [job_status_json(j) for j in inst.jobs.values()],
    }


class AdminTarget(Protocol):
    """What the admin API needs of the sandbox (``server.Sandbox``; the server imports this module)."""

    clock: Clock
    default: Instance
    instances: dict[str, Instance]
    faults: FaultInjector

    def instance(self, munchkin_id: str | None = None) -> Instance: ...

    def reset(self, munchkin_id: str | None = None) -> None: ...

    def set_faults(self, faults: FaultConfig) -> None: ...

    def set_limits(self, limits: LimitsConfig, munchkin_id: str | None = None) -> None: ...


@dataclass
class AdminCall:
    """One admin request: the sandbox, the request, the instance it names and the time it arrived."""

    sb: AdminTarget
    request: web.Request
    inst: Instance
    now: float

    @property
    def instance_id(self) -> str | None:
        return self.request.query.get("instance")


_Handler = Callable[[AdminCall], Awaitable[web.StreamResponse]]


async def handle_admin(sb: AdminTarget, request: web.Request) -> web.StreamResponse:
    op = "/".join(request.path.rstrip("/").split("/")[2:])
    try:
        inst = sb.instance(request.query.get("instance"))
    except KeyError as e:
        return web.json_response({"error": str(e)}, status=404)
    entry = ADMIN_OPERATIONS.get(op)
    if entry is None or (entry[0] is not None and request.method != entry[0]):
        return web.json_response({"error": f"unknown admin operation {request.method} /_sandbox/{op}"}, status=404)
    try:
        return await entry[1](AdminCall(sb, request, inst, sb.clock.time()))
    except ValidationError as e:
        # without ctx: a validator's ValueError object is not JSON; its text is already in "msg"
        details = e.errors(include_url=False, include_context=False)
        return web.json_response({"error": "invalid body", "details": details}, status=400)
    except ValueError as e:
        return web.json_response({"error": str(e)}, status=400)


async def _health(call: AdminCall) -> web.StreamResponse:
    return web.json_response({"ok": True})


async def _instances(call: AdminCall) -> web.StreamResponse:
    return web.json_response([
        {"munchkinId": i.munchkin_id, "pathPrefix": f"/{i.munchkin_id}", "default": i is call.sb.default,
         "preset": i.config.preset,
         "clients": [{"clientId": c.client_id, "clientSecret": c.client_secret, "scope": c.scope}
                     for c in i.config.clients]}
        for i in call.sb.instances.values()])


async def _reset(call: AdminCall) -> web.StreamResponse:
    call.sb.reset(call.instance_id)
    return web.json_response({"ok": True})


async def _dump(call: AdminCall) -> web.StreamResponse:
    return web.json_response(dump_instance(call.inst, call.now))


async def _calls(call: AdminCall) -> web.StreamResponse:
    return web.json_response(call.inst.calls_summary())


async def _requests(call: AdminCall) -> web.StreamResponse:
    limit = int(call.request.query.get("limit", "1000"))
    return web.json_response(list(call.inst.request_log)[-limit:])


async def _fault_stats(call: AdminCall) -> web.StreamResponse:
    return web.json_response(call.inst.faults_summary())


async def _faults(call: AdminCall) -> web.StreamResponse:
    if call.request.method == "PUT" and call.instance_id is not None:
        return web.json_response({"error": "the fault plan is shared by all instances: PUT it without "
                                           "?instance= and give its rules \"instance\": \"<munchkinId>\""},
                                 status=400)
    if call.request.method == "PUT":
        call.sb.set_faults(FaultConfig.model_validate(await call.request.json()))
    return web.json_response(call.sb.faults.config.model_dump())


async def _limits(call: AdminCall) -> web.StreamResponse:
    inst = call.inst
    if call.request.method == "PUT":
        call.sb.set_limits(LimitsConfig.model_validate(await call.request.json()), call.instance_id)
        inst = call.sb.instance(call.instance_id)
    return web.json_response(inst.limits.model_dump())


async def _channels(call: AdminCall) -> web.StreamResponse:
    spec = ChannelSpec.model_validate(await call.request.json())
    ch = add_channel(call.inst, spec.name, [(s.name, s.step, s.success) for s in spec.statuses],
                     spec.applicable_program_type, call.now)
    return web.json_response(channel_json(ch))


async def _programs(call: AdminCall) -> web.StreamResponse:
    spec = ProgramSpec.model_validate(await call.request.json())
    prog = add_program(call.inst, spec.name, spec.channel, spec.type, call.now, spec.description, spec.id)
    return web.json_response(program_json(prog))


async def _shape(call: AdminCall) -> web.StreamResponse:
    shape = InstanceShape.model_validate(await call.request.json())
    return web.json_response(apply_shape(call.inst, shape, call.now))


async def _permissions(call: AdminCall) -> web.StreamResponse:
    body = PermissionsSpec.model_validate(await call.request.json())
    client_id = call.request.query.get("client_id")
    set_permissions(call.inst, client_id, body.permissions)
    return web.json_response({"clientId": client_id, "permissions": body.permissions})


async def _expire_tokens(call: AdminCall) -> web.StreamResponse:
    return web.json_response({"expired": call.inst.tokens.expire_all(call.now)})


async def _clock(call: AdminCall) -> web.StreamResponse:
    clock = call.sb.clock
    if call.request.method == "POST":
        if not isinstance(clock, ManualTime):
            return web.json_response({"error": "the clock is not manual (start with --manual-clock)"}, status=409)
        body = await call.request.json()
        if "advance" in body:
            clock.advance(float(body["advance"]))
        if "set" in body:
            clock.set(float(body["set"]))
    return web.json_response({"now": clock.time(), "iso": iso(clock.time()), "manual": isinstance(clock, ManualTime)})


#: operation (the path after /_sandbox/) → (the one method it answers, or None for any; its handler)
ADMIN_OPERATIONS: dict[str, tuple[str | None, _Handler]] = {
    "health": (None, _health),
    "instances": (None, _instances),
    "reset": ("POST", _reset),
    "dump": (None, _dump),
    "calls": (None, _calls),
    "requests": (None, _requests),
    "faults/stats": ("GET", _fault_stats),
    "faults": (None, _faults),
    "limits": (None, _limits),
    "channels": ("POST", _channels),
    "programs": ("POST", _programs),
    "shape": ("POST", _shape),
    "permissions": ("PUT", _permissions),
    "tokens/expire": ("POST", _expire_tokens),
    "clock": (None, _clock),
}
