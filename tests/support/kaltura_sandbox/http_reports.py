"""Reports microservice: the ``pollsActivity`` CSV (docs/reference/kaltura-api.md §3.6; shapes from Kaltura's guide).

``POST /api/v1/report/generate`` ``{"reportName": "pollsActivity", "reportParameters":
{"entries_ids": [...], "virtual_event_ids": [...], "from_date_id", "to_date_id"}}`` → ``{"sessionId"}``;
``POST /api/v1/report/serve`` ``{"sessionId", "statusOnly": true}`` → ``{"status": ...}`` until
``"completed"``; the same without ``statusOnly`` → the CSV. Bearer KS as for the User Profile service.

The CSV is a snapshot of the poll answers visible when the report was generated, in OUR ASSUMED
layout (formats.POLL_ANSWER_COLUMNS). Status values other than ``completed`` are UNCONFIRMED; the
sandbox answers ``processing`` for the first ``report_ready_after_checks`` status checks.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kaltura_sandbox.formats import POLL_ANSWER_COLUMNS, render_csv, row_poll_answer
from kaltura_sandbox.http_common import api_exception, sandbox_of
from kaltura_sandbox.ks import SESSION_TYPE_ADMIN, KsError

SUPPORTED_REPORTS = ("pollsActivity",)


@dataclass(slots=True)
class GeneratedReport:
    name: str
    body: bytes
    checks: int = 0


_REPORTS_KEY: web.AppKey[dict[str, GeneratedReport]] = web.AppKey("kaltura_reports", dict)


def _auth(request: web.Request) -> web.Response | None:
    sandbox = sandbox_of(request)
    header = request.headers.get("Authorization", "")
    ks = header.split(" ", 1)[1].strip() if " " in header else None
    try:
        info = sandbox.ks.check(ks)
    except KsError as exc:
        return api_exception("INVALID_KS", f'Invalid KS "{ks or ""}" Error: "-1,{exc}"')
    if info.session_type != SESSION_TYPE_ADMIN:
        return api_exception("SERVICE_FORBIDDEN", "an ADMIN KS is required")
    return None


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = json.loads(await request.read() or b"{}")
    except json.JSONDecodeError as exc:
        return _bad("body", f"not valid JSON: {exc.msg}")
    if not isinstance(body, dict):
        return _bad("body", "must be a JSON object")
    return body


def _bad(field: str, message: str) -> web.Response:
    return web.json_response({"code": "INVALID_PARAMS", "message": f"{field}: {message}",
                              "objectType": "KalturaAPIException",
                              "args": {"errors": [{"field": field, "message": message}]}}, status=400)


def _str_list(params: dict[str, Any], key: str) -> list[str] | web.Response:
    value = params.get(key, [])
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        return _bad(f"reportParameters.{key}", "must be a list of ids")
    return [str(v) for v in value]


async def generate(request: web.Request) -> web.Response:
    refused = _auth(request)
    if refused is not None:
        return refused
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    name = body.get("reportName")
    if name not in SUPPORTED_REPORTS:
        return _bad("reportName", f"the sandbox generates only {', '.join(SUPPORTED_REPORTS)}")
    params = body.get("reportParameters") or {}
    if not isinstance(params, dict):
        return _bad("reportParameters", "must be an object")
    entries = _str_list(params, "entries_ids")
    events = _str_list(params, "virtual_event_ids")
    if isinstance(entries, web.Response):
        return entries
    if isinstance(events, web.Response):
        return events
    sandbox = sandbox_of(request)
    if events and str(sandbox.config.virtual_event_id) not in events:
        answers = []
    else:
        answers = sandbox.view.poll_answers(sandbox.now(), entries or None)
    session_id = secrets.token_hex(12)
    csv = render_csv(POLL_ANSWER_COLUMNS, (row_poll_answer(a) for a in answers))
    request.app[_REPORTS_KEY][session_id] = GeneratedReport(str(name), csv)
    return web.json_response({"sessionId": session_id})


async def serve(request: web.Request) -> web.Response:
    refused = _auth(request)
    if refused is not None:
        return refused
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    report = request.app[_REPORTS_KEY].get(str(body.get("sessionId")))
    if report is None:
        return api_exception("OBJECT_NOT_FOUND", f"report session [{body.get('sessionId')}] not found")
    if body.get("statusOnly"):
        report.checks += 1
        ready = report.checks > sandbox_of(request).config.report_ready_after_checks
        return web.json_response({"status": "completed" if ready else "processing"})
    if report.checks <= sandbox_of(request).config.report_ready_after_checks:
        return api_exception("REPORT_NOT_READY", "the report is still being generated")
    return web.Response(body=report.body, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{report.name}.csv"'})


def add_routes(app: web.Application) -> None:
    app[_REPORTS_KEY] = {}
    app.router.add_post("/api/v1/report/generate", generate)
    app.router.add_post("/api/v1/report/serve", serve)
