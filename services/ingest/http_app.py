"""ingest's HTTP API (aiohttp).

POST /ingest/kaltura/notification[/{partner_id}]   Kaltura HTTP notifications (kaltura-api.md §7.2)
POST /ingest/kaltura/reports                        Kaltura report CSV upload (§7.3)
GET  /healthz  /readyz  /metrics                    (kmsync_common)

Answers: 200 once Kafka acknowledged everything the request produced; 4xx with
{"error", "problems": ["field: message", ...]}; 503 with Retry-After when Kafka (or, for a
notification, the pull it triggers) is unavailable - Kaltura retries anything but 200/204 (§2.5).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import BodyPartReader, web

from ingest.errors import BadInput
from ingest.files import FileParams, ingest_file, parse_params
from ingest.notifications import Notification, read_notification
from ingest.publisher import KafkaUnavailable
from ingest.service import IngestService, KalturaUnavailable
from kmsync_common import add_health_routes
from kmsync_kaltura.errors import SignatureError
from kmsync_kaltura.notifications import HASH_ALGO_HEADER, SIGNATURE_HEADER, check_signature, normalise_algo

log = logging.getLogger(__name__)

SERVICE_KEY = web.AppKey("ingest_service", IngestService)


def _problem(status: int, summary: str, problems: list[str], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": summary, "problems": problems}, status=status, headers=headers)


def _unavailable(service: IngestService, what: str, detail: str) -> web.Response:
    retry = str(service.settings.retry_after_seconds)
    return _problem(503, f"{what} unavailable, nothing was acknowledged", [detail], {"Retry-After": retry})


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BadInput(413, "body too large", [f"body: {request.content_length} bytes, the limit is {limit}"])
    data = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        data.extend(chunk)
        if len(data) > limit:
            raise BadInput(413, "body too large", [f"body: more than {limit} bytes"])
    return bytes(data)


def _partner_hint(request: web.Request) -> int | None:
    raw = request.match_info.get("partner_id") or request.query.get("partner_id")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(400, "invalid partner id", [f"partner_id: expected an integer, got {raw[:40]!r}"]) from None
    if value <= 0:
        raise BadInput(400, "invalid partner id", [f"partner_id: must be positive, got {value}"])
    return value


def _verify(service: IngestService, partner_id: int, raw: bytes, request: web.Request) -> None:
    """X-KALTURA-SIGNATURE = hex(HASH(secret + raw body)), compared in constant time (§2.4)."""
    settings = service.settings
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        if settings.require_signature:
            raise BadInput(401, "unsigned notification", [f"{SIGNATURE_HEADER}: missing"])
        return
    algo_header = request.headers.get(HASH_ALGO_HEADER) or settings.default_hash_algo
    try:
        algo = normalise_algo(algo_header)
    except SignatureError:
        algo = ""
    if algo not in settings.accepted_hash_algos:
        allowed = ", ".join(settings.accepted_hash_algos)
        raise BadInput(400, "unsupported hash algorithm", [f"{HASH_ALGO_HEADER}: {algo_header!r}; accepted: {allowed}"])
    secret = service.secret_for(partner_id)
    try:
        check_signature(raw, signature, secret, algo)
    except SignatureError as exc:
        raise BadInput(403, "bad signature", [f"{SIGNATURE_HEADER}: {exc.reason}"]) from None


def _partner_of(service: IngestService, hint: int | None, note: Notification) -> int:
    if hint is not None:
        if note.partner_id is not None and note.partner_id != hint:
            raise BadInput(400, "partner mismatch", [
                f"object.partnerId: {note.partner_id} differs from the URL's partner {hint}"])
        return hint
    if note.partner_id is not None:
        return note.partner_id
    partners = list(service.tenants.kaltura_partners)
    if len(partners) == 1:
        return partners[0]
    raise BadInput(400, "unknown partner", [
        "partner_id: the notification does not name its partner; put it in the URL "
        "(/ingest/kaltura/notification/<partner_id>)"])


async def notification(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    metrics = service.metrics
    try:
        raw = await _read_body(request, service.settings.max_notification_bytes)
        hint = _partner_hint(request)
        if hint is not None:  # verify before reading anything out of the body
            _verify(service, hint, raw, request)
        note = read_notification(raw, request.headers.get("Content-Type", ""))
        partner = _partner_of(service, hint, note)
        if hint is None:
            _verify(service, partner, raw, request)
        if note.partner_id is None:
            note = Notification(note.job_id, partner, note.wants_statuses, note.virtual_event_id,
                                note.app_guid, note.entry_id, note.kind, note.fields)
        outcome = await service.handle_notification(note)
    except BadInput as exc:
        label = {401: "unsigned", 403: "bad_signature", 413: "too_large", 415: "unsupported"}.get(
            exc.status, "malformed")
        metrics.notifications.labels(label).inc()
        log.info("notification refused (%s): %s", exc.status, "; ".join(exc.problems))
        return _problem(exc.status, exc.summary, exc.problems)
    except KafkaUnavailable as exc:
        return _unavailable(service, "Kafka", str(exc))
    except KalturaUnavailable as exc:
        return _unavailable(service, "Kaltura", str(exc))
    return web.json_response(outcome.body())


async def _upload_body(request: web.Request, limit: int) -> tuple[bytes, str | None]:
    """The CSV bytes and the file name: a raw body, or the first file part of multipart/form-data."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, BodyPartReader) and part.filename:
                data = bytearray()
                while chunk := await part.read_chunk(65536):
                    data.extend(chunk)
                    if len(data) > limit:
                        raise BadInput(413, "file too large", [f"file: more than {limit} bytes"])
                return bytes(data), part.filename
        raise BadInput(400, "no file", ["file: the multipart body has no file part"])
    return await _read_body(request, limit), None


async def upload_report(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    try:
        query: dict[str, Any] = dict(request.query)
        data, filename = await _upload_body(request, service.settings.max_upload_bytes)
        if filename and "filename" not in query:
            query["filename"] = filename
        params: FileParams = parse_params(query)
        report = await ingest_file(
            data, params, service.tenants, service.publisher, service.metrics,
            chunk_size=service.settings.produce_batch_size,
        )
    except BadInput as exc:
        return _problem(exc.status, exc.summary, exc.problems)
    except KafkaUnavailable as exc:
        return _unavailable(service, "Kafka", str(exc))
    return web.json_response(report.body())


def build_app(service: IngestService) -> web.Application:
    app = web.Application(client_max_size=service.settings.max_upload_bytes + 1024 * 1024)
    app[SERVICE_KEY] = service
    app.router.add_post("/ingest/kaltura/notification", notification)
    app.router.add_post("/ingest/kaltura/notification/{partner_id}", notification)
    app.router.add_post("/ingest/kaltura/reports", upload_report)
    add_health_routes(app, service.ready, registry=service.metrics.registry)
    return app


async def serve(service: IngestService, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the HTTP server; returns the runner (``await runner.cleanup()``) and the bound port."""
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
    return runner, bound
