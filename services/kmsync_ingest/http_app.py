"""ingest's HTTP API (aiohttp); the contract is openapi.yaml in this package, served at /openapi.json.

POST /ingest/kaltura/notification[/{partner_id}]   Kaltura HTTP notifications (docs/reference/kaltura-api.md §7.2)
POST /ingest/kaltura/reports                        Kaltura report CSV upload (§7.3), bearer token
GET  /healthz  /readyz  /metrics                    (kmsync_common), open
GET  /openapi.json                                  this API's OpenAPI document, open

Answers: 200 once Kafka acknowledged everything the request produced; 4xx with
{"error", "problems": ["field: message", ...]}; 503 with Retry-After when Kafka (or, for a
notification, the pull it triggers) is unavailable or every upload slot is busy - Kaltura retries
anything but 200/204 (§2.5). An unexpected failure is answered 500 with one log line (no traceback).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from kmsync_common import add_health_routes
from kmsync_ingest.auth import CHALLENGE, UploadAuth
from kmsync_ingest.errors import BadInput
from kmsync_ingest.files import FileParams, ingest_file, parse_params
from kmsync_ingest.notifications import Notification, read_notification
from kmsync_ingest.openapi import openapi_document
from kmsync_ingest.publisher import KafkaUnavailable
from kmsync_ingest.service import IngestService, KalturaUnavailable, NotOwner
from kmsync_kaltura.errors import SignatureError
from kmsync_kaltura.notifications import HASH_ALGO_HEADER, SIGNATURE_HEADER, check_signature, normalise_algo

log = logging.getLogger(__name__)

SERVICE_KEY = web.AppKey("ingest_service", IngestService)
AUTH_KEY = web.AppKey("ingest_upload_auth", UploadAuth)
SLOTS_KEY = web.AppKey("ingest_upload_slots", dict)

#: Content types an uploaded report may be sent as (raw body, or a multipart file part).
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"})
#: A multipart file part may also be untyped (curl -F file=@x sends application/octet-stream).
PART_TYPES = CSV_TYPES | {"application/octet-stream", ""}
READ_CHUNK = 65536


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
    """X-KALTURA-SIGNATURE = hex(HASH(secret + raw body)), compared in constant time (§2.4).

    An unsigned notification passes only with a valid upload bearer token (an operator's manual
    trigger), or when signatures are not required (a trusted network)."""
    settings = service.settings
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        auth = request.app[AUTH_KEY]
        if auth.configured and auth.accepts(request.headers.get("Authorization")):
            return
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
    except NotOwner as exc:
        # KMSYNC_NOT_OWNER_NOTIFICATIONS=retry: Kaltura's retry may reach the owning replica.
        return _unavailable(service, "The event's owning replica", str(exc))
    return web.json_response(outcome.body())


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


async def _spool(read: Callable[[], Awaitable[bytes]], sink: IO[bytes], limit: int, what: str) -> int:
    """Copy a body into a temporary file chunk by chunk; 413 as soon as it passes ``limit``."""
    size = 0
    while chunk := await read():
        size += len(chunk)
        if size > limit:
            raise BadInput(413, f"{what} too large", [f"{what}: more than {limit} bytes"])
        sink.write(chunk)
    return size


def _chunks_of(part: BodyPartReader) -> Callable[[], Awaitable[bytes]]:
    return lambda: part.read_chunk(READ_CHUNK)


async def _spool_upload(request: web.Request, sink: IO[bytes], limit: int) -> str | None:
    """The CSV (raw body, or the first file part of multipart/form-data) into ``sink``; its file name."""
    if request.content_type == "multipart/form-data":
        try:
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader) or not part.filename:
                    continue
                ctype = _media_type(part.headers.get("Content-Type"))
                if ctype not in PART_TYPES:
                    raise BadInput(415, "unsupported file type", [
                        f"file: Content-Type {ctype!r}; send the report as text/csv"])
                await _spool(_chunks_of(part), sink, limit, "file")
                return part.filename
        except (ValueError, LookupError, AssertionError, HttpProcessingError) as exc:
            if isinstance(exc, BadInput):
                raise
            raise BadInput(400, "malformed multipart body", [f"body: {type(exc).__name__}"]) from None
        raise BadInput(400, "no file", ["file: the multipart body has no file part"])
    await _spool(lambda: request.content.read(READ_CHUNK), sink, limit, "body")
    return None


def _check_upload_headers(request: web.Request, limit: int) -> None:
    ctype = request.content_type if request.headers.get("Content-Type") else ""
    if ctype != "multipart/form-data" and ctype not in CSV_TYPES:
        raise BadInput(415, "unsupported content type", [
            f"Content-Type: {ctype or 'missing'!r}; send text/csv (raw body) or multipart/form-data"])
    if request.content_length is not None and request.content_length > limit:
        raise BadInput(413, "body too large", [f"body: {request.content_length} bytes, the limit is {limit}"])


async def upload_report(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    settings = service.settings
    slots = request.app[SLOTS_KEY]
    metrics = service.metrics
    try:
        request.app[AUTH_KEY].check(request.headers.get("Authorization"))
    except BadInput as exc:
        metrics.uploads.labels("unauthorized").inc()
        return _problem(exc.status, exc.summary, exc.problems, {"WWW-Authenticate": CHALLENGE})
    if slots["busy"] >= settings.max_concurrent_uploads:
        metrics.uploads.labels("busy").inc()
        return _problem(503, "too many uploads at once, nothing was read", [
            f"uploads: {settings.max_concurrent_uploads} already in progress; retry later"],
            {"Retry-After": str(settings.retry_after_seconds)})
    slots["busy"] += 1
    metrics.uploads_in_progress.set(slots["busy"])
    try:
        query: dict[str, Any] = dict(request.query)
        _check_upload_headers(request, settings.max_upload_bytes)
        parse_params(query)  # refuse bad parameters before reading the body
        with tempfile.TemporaryFile(dir=settings.upload_spool_dir) as spool:
            filename = await _spool_upload(request, spool, settings.max_upload_bytes)
            if filename and "filename" not in query:
                query["filename"] = filename
            params: FileParams = parse_params(query)
            spool.seek(0)
            report = await ingest_file(
                spool, params, service.tenants, service.publisher, service.metrics,
                chunk_size=settings.produce_batch_size, max_line_bytes=settings.max_csv_line_bytes,
                poll_order=settings.poll_order,
            )
    except BadInput as exc:
        metrics.uploads.labels("refused").inc()
        return _problem(exc.status, exc.summary, exc.problems)
    except KafkaUnavailable as exc:
        metrics.uploads.labels("kafka_unavailable").inc()
        return _unavailable(service, "Kafka", str(exc))
    finally:
        slots["busy"] -= 1
        metrics.uploads_in_progress.set(slots["busy"])
    metrics.uploads.labels("loaded").inc()
    return web.json_response(report.body())


@web.middleware
async def _no_tracebacks(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A bug must not print request data in a traceback: one line, and a 500 without details."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.error("unexpected %s handling %s %s", type(exc).__name__, request.method, request.path)
        return _problem(500, "internal error", ["request: unexpected failure, logged"])


def build_app(service: IngestService, auth: UploadAuth | None = None) -> web.Application:
    """The routes; ``auth`` defaults to the settings' tokens (ConfigError if one does not resolve)."""
    app = web.Application(client_max_size=service.settings.max_notification_bytes + 1024,
                          middlewares=[_no_tracebacks])
    app[SERVICE_KEY] = service
    app[AUTH_KEY] = auth or UploadAuth.from_settings(service.settings)
    app[SLOTS_KEY] = {"busy": 0}
    if app[AUTH_KEY].required and not app[AUTH_KEY].configured:
        log.warning("no upload tokens configured (KMSYNC_UPLOAD_TOKENS): report uploads are refused (401)")
    elif not app[AUTH_KEY].required:
        log.warning("KMSYNC_UPLOAD_AUTH=disabled: report uploads are accepted without a token (local demos only)")
    app.router.add_post("/ingest/kaltura/notification", notification)
    app.router.add_post("/ingest/kaltura/notification/{partner_id}", notification)
    app.router.add_post("/ingest/kaltura/reports", upload_report)
    add_health_routes(app, service.ready, registry=service.metrics.registry)
    document = openapi_document()  # read once, at start

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/openapi.json", openapi)
    return app


class MalformedHttpFilter(logging.Filter):
    """aiohttp answers a request it cannot parse (bad header bytes, broken framing) with 400 and logs
    the parser's traceback at ERROR; that is the client's fault: one INFO line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            what = " ".join(str(exc).split())[:200] or type(exc).__name__
            record.msg, record.args, record.exc_info, record.exc_text = (
                "malformed HTTP request refused: %s", (what,), None, None)
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_MALFORMED_FILTER = MalformedHttpFilter()


async def serve(service: IngestService, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the HTTP server; returns the runner (``await runner.cleanup()``) and the bound port."""
    server_log = logging.getLogger("aiohttp.server")
    if _MALFORMED_FILTER not in server_log.filters:
        server_log.addFilter(_MALFORMED_FILTER)
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
    return runner, bound
