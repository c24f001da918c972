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

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kmsync_common.clock import ManualClock

from .api_activities import activity_json, type_json
from .api_bulk import job_status_json, tick
from .api_customobjects import describe_json
from .api_programs import add_channel, add_program, channel_json, program_json
from .config import FaultConfig, LimitsConfig
from .envelope import iso
from .instance import Instance


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


async def handle_admin(sb: Any, request: web.Request) -> web.StreamResponse:
    from .server import Sandbox

    assert isinstance(sb, Sandbox)
    parts = request.path.rstrip("/").split("/")[2:]
    op = "/".join(parts)
    method = request.method
    try:
        inst = sb.instance(request.query.get("instance"))
    except KeyError as e:
        return web.json_response({"error": str(e)}, status=404)
    now = sb.clock.time()
    try:
        if op == "health":
            return web.json_response({"ok": True})
        if op == "instances":
            return web.json_response([
                {"munchkinId": i.munchkin_id, "pathPrefix": f"/{i.munchkin_id}", "default": i is sb.default,
                 "preset": i.config.preset,
                 "clients": [{"clientId": c.client_id, "clientSecret": c.client_secret, "scope": c.scope}
                             for c in i.config.clients]}
                for i in sb.instances.values()])
        if op == "reset" and method == "POST":
            sb.reset(request.query.get("instance"))
            return web.json_response({"ok": True})
        if op == "dump":
            return web.json_response(dump_instance(inst, now))
        if op == "calls":
            return web.json_response(inst.calls_summary())
        if op == "requests":
            limit = int(request.query.get("limit", "1000"))
            return web.json_response(list(inst.request_log)[-limit:])
        if op == "faults/stats" and method == "GET":
            return web.json_response(inst.faults_summary())
        if op == "faults":
            if method == "PUT" and "instance" in request.query:
                return web.json_response({"error": "the fault plan is shared by all instances: PUT it without "
                                                   "?instance= and give its rules \"instance\": \"<munchkinId>\""},
                                         status=400)
            if method == "PUT":
                sb.set_faults(FaultConfig.model_validate(await request.json()))
            return web.json_response(sb.faults.config.model_dump())
        if op == "limits":
            if method == "PUT":
                sb.set_limits(LimitsConfig.model_validate(await request.json()), request.query.get("instance"))
                inst = sb.instance(request.query.get("instance"))
            return web.json_response(inst.limits.model_dump())
        if op == "channels" and method == "POST":
            spec = ChannelSpec.model_validate(await request.json())
            ch = add_channel(inst, spec.name, [(s.name, s.step, s.success) for s in spec.statuses],
                             spec.applicable_program_type, now)
            return web.json_response(channel_json(ch))
        if op == "programs" and method == "POST":
            pspec = ProgramSpec.model_validate(await request.json())
            prog = add_program(inst, pspec.name, pspec.channel, pspec.type, now, pspec.description, pspec.id)
            return web.json_response(program_json(prog))
        if op == "shape" and method == "POST":
            from .shape import InstanceShape, apply_shape

            return web.json_response(apply_shape(inst, InstanceShape.model_validate(await request.json()), now))
        if op == "permissions" and method == "PUT":
            body = PermissionsSpec.model_validate(await request.json())
            set_permissions(inst, request.query.get("client_id"), body.permissions)
            return web.json_response({"clientId": request.query.get("client_id"), "permissions": body.permissions})
        if op == "tokens/expire" and method == "POST":
            return web.json_response({"expired": inst.tokens.expire_all(now)})
        if op == "clock":
            clock = sb.clock
            if method == "POST":
                if not isinstance(clock, ManualClock):
                    return web.json_response({"error": "the clock is not manual (start with --manual-clock)"},
                                             status=409)
                body = await request.json()
                if "advance" in body:
                    clock.advance(float(body["advance"]))
                if "set" in body:
                    clock.set(float(body["set"]))
            return web.json_response({"now": sb.clock.time(), "iso": iso(sb.clock.time()),
                                      "manual": isinstance(clock, ManualClock)})
    except ValidationError as e:
        # without ctx: a validator's ValueError object is not JSON; its text is already in "msg"
        details = e.errors(include_url=False, include_context=False)
        return web.json_response({"error": "invalid body", "details": details}, status=400)
    except ValueError as e:
        return web.json_response({"error": str(e)}, status=400)
    return web.json_response({"error": f"unknown admin operation {method} /_sandbox/{op}"}, status=404)
