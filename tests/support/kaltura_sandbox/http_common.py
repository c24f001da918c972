"""Request parsing and Kaltura-style error responses shared by the HTTP handlers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from kaltura_sandbox.sandbox import Sandbox

SANDBOX_KEY: web.AppKey[Sandbox] = web.AppKey("kaltura_sandbox", Sandbox)


def sandbox_of(request: web.Request) -> Sandbox:
    return request.app[SANDBOX_KEY]


def api_exception(code: str, message: str, args: dict[str, Any] | None = None, *, status: int = 200
                  ) -> web.Response:
    """A KalturaAPIException body - at HTTP 200, as Kaltura answers (docs/reference/kaltura-api.md §1.1, §7.1)."""
    body = {"code": code, "message": message, "objectType": "KalturaAPIException", "args": args or {}}
    return web.json_response(body, status=status)


def _set_nested(target: dict[str, Any], key: str, value: Any) -> None:
    """``filter[idIn]`` / ``filter:idIn`` → target["filter"]["idIn"] (api_v3 form encoding, §1.1)."""
    parts = [p for p in key.replace("]", "").replace("[", ":").split(":") if p]
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if parts:
        node[parts[-1]] = value


class BadRequest(Exception):
    pass


async def read_api_v3_params(request: web.Request) -> dict[str, Any]:
    """Merge query string, then form or JSON body, into one nested parameter mapping."""
    params: dict[str, Any] = {}
    for key, value in request.query.items():
        _set_nested(params, key, value)
    if request.method != "POST" or not request.can_read_body:
        return params
    ctype = request.content_type
    if ctype == "application/json":
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise BadRequest(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from exc
            if not isinstance(body, dict):
                raise BadRequest("request body must be a JSON object")
            for key, value in body.items():
                if isinstance(value, dict) and isinstance(params.get(key), dict):
                    params[key] = {**params[key], **value}
                else:
                    params[key] = value
    else:
        form = await request.post()
        for key, field_value in form.items():
            if isinstance(field_value, str):
                _set_nested(params, key, field_value)
    return params
