"""User Profile service: ``POST /api/v1/user-profile/list`` (docs/reference/kaltura-api.md §4.2, §7.1).

Auth is ``Authorization: Bearer <KS>`` (or ``KS <KS>``). Application errors, including a bad KS, come
back as a KalturaAPIException body at HTTP 200 (Kaltura's User Profile guide, "Error Handling");
the exact code the real service uses for a bad KS is UNCONFIRMED - the sandbox says ``INVALID_KS``.
Malformed requests (not JSON, wrong types, bad dates) get HTTP 400 with field-level messages.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from kaltura_sandbox.http_common import api_exception, sandbox_of
from kaltura_sandbox.ks import SESSION_TYPE_ADMIN, KsError
from kaltura_sandbox.scenario import Registrant, Transition

MAX_LIMIT = 500  # UNCONFIRMED: the real cap is not documented; larger limits are refused, not clamped


class ProfileFilter(BaseModel):
    model_config = ConfigDict(extra="ignore")

    idIn: list[str] | None = None
    appGuidIn: list[str] | None = None
    userIdIn: list[str] | None = None
    status: Literal["enabled", "disabled"] | None = None
    attendanceStatus: str | None = None
    regOriginIn: list[str] | None = None
    createdAtGreaterThanOrEqual: AwareDatetime | None = None
    createdAtLessThanOrEqual: AwareDatetime | None = None
    updatedAtGreaterThanOrEqual: AwareDatetime | None = None
    updatedAtLessThanOrEqual: AwareDatetime | None = None


class Pager(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)


class ListRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    filter: ProfileFilter = ProfileFilter()
    pager: Pager = Pager()
    orderBy: Literal["updatedAt", "-updatedAt", "createdAt", "-createdAt"] = "createdAt"
    includeTotalCount: bool = True


def _bad_request(errors: list[dict[str, Any]]) -> web.Response:
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    body = {"code": "INVALID_PARAMS", "message": message, "objectType": "KalturaAPIException",
            "args": {"errors": errors}}
    return web.json_response(body, status=400)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    for scheme in ("Bearer ", "KS "):
        if header.startswith(scheme):
            return header[len(scheme):].strip()
    return None


def _matches(f: ProfileFilter, r: Registrant, head: Transition, app_guid: str) -> bool:
    created, updated = r.created_at, head.at
    return not (
        (f.idIn is not None and r.profile_id not in f.idIn)
        or (f.appGuidIn is not None and app_guid not in f.appGuidIn)
        or (f.userIdIn is not None and not _user_match(r.user_id, f.userIdIn))
        or (f.status is not None and f.status != "enabled")
        or (f.attendanceStatus is not None and f.attendanceStatus != head.status)
        or (f.regOriginIn is not None and r.reg_origin not in f.regOriginIn)
        or (f.createdAtGreaterThanOrEqual is not None and created < f.createdAtGreaterThanOrEqual)
        or (f.createdAtLessThanOrEqual is not None and created > f.createdAtLessThanOrEqual)
        or (f.updatedAtGreaterThanOrEqual is not None and updated < f.updatedAtGreaterThanOrEqual)
        or (f.updatedAtLessThanOrEqual is not None and updated > f.updatedAtLessThanOrEqual)
    )


def _user_match(user_id: str, wanted: list[str]) -> bool:
    # Emails (ids with '@') match case-insensitively, other ids exactly (Kaltura's User Profile API guide, its section 9.1).
    if "@" in user_id:
        return user_id.lower() in {w.lower() for w in wanted}
    return user_id in wanted


async def list_profiles(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    ks = _bearer(request)
    try:
        info = sandbox.ks.check(ks)
    except KsError as exc:
        return api_exception("INVALID_KS", f'Invalid KS "{ks or ""}" Error: "-1,{exc}"')
    if info.session_type != SESSION_TYPE_ADMIN:
        return api_exception("SERVICE_FORBIDDEN", "an ADMIN KS is required")
    try:
        raw = json.loads(await request.read() or b"{}")
    except json.JSONDecodeError as exc:
        return _bad_request([{"field": "body", "message": f"not valid JSON: {exc.msg} at position {exc.pos}"}])
    if not isinstance(raw, dict):
        return _bad_request([{"field": "body", "message": "must be a JSON object"}])
    try:
        req = ListRequest.model_validate(raw)
    except ValidationError as exc:
        return _bad_request([
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ])
    now = sandbox.now()
    app_guid = sandbox.scenario.app_guid
    matching = [(r, h) for r, h in sandbox.view.visible_heads(now) if _matches(req.filter, r, h, app_guid)]
    # Timestamps are compared at the millisecond precision the service prints.
    if req.orderBy.lstrip("-") == "updatedAt":
        matching.sort(key=lambda rh: (rh[1].at, rh[0].profile_id), reverse=req.orderBy.startswith("-"))
    else:
        matching.sort(key=lambda rh: (rh[0].created_at, rh[0].profile_id), reverse=req.orderBy.startswith("-"))
    page = matching[req.pager.offset : req.pager.offset + req.pager.limit]
    objects = [sandbox.view.profile(r, now) for r, _ in page]
    return web.json_response({
        "objects": objects,
        "totalCount": len(matching) if req.includeTotalCount else -1,
    })


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/user-profile/list", list_profiles)

