"""The aiohttp application: routing by munchkin-id prefix, identity, token checks, limits, faults, admin.

Routing: every instance answers under ``/<munchkinId>/...`` (e.g. ``/123-ABC-456/rest/v1/leads.json``);
the first (default) instance also answers at ``/`` so a base URL of ``http://127.0.0.1:PORT`` works.
The admin API lives under ``/_sandbox/`` and is never rate-limited or authenticated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic_core import from_json

from . import api_leads
from .admin import handle_admin
from .call import Call, Reply, Upload
from .clock import Clock, ManualClock, SystemClock
from .config import BODY_CODE_KINDS, FaultConfig, InstanceConfig, LimitsConfig, SandboxConfig
from .envelope import (
    FREE_CODES,
    MESSAGES,
    Ids,
    MarketoError,
    asset_fail,
    concurrency_message,
    rate_limit_message,
)
from .faults import LATENCY_KIND, FaultDecision, FaultInjector, fault_kind, forced_expiry_due, token_expired_kind
from .instance import Instance
from .limits import DailyQuota, RateWindow
from .permissions import allowed
from .routes import Route, match

log = logging.getLogger("marketo_sandbox")

MUNCHKIN_PREFIX = re.compile(r"^/(\d{3}-[A-Za-z]{3}-\d{3})(/.*)?$")
IDENTITY_PATH = "/identity/oauth/token"
LIMIT_CODES = frozenset({"606", "607", "615"})
BODY_KEY = web.RequestKey("sandbox_body", bytes)
CLIENT_MAX_SIZE = 64 * 1024 * 1024  # read everything; the per-instance 413 checks are ours


@dataclass
class _RestCall:
    """What every step of one REST call answers with: where it came from, what it asked, when."""

    inst: Instance
    request: web.Request
    path: str
    endpoint: str
    asset: bool
    now: float
    method: str
    params: dict[str, str]
    args: dict[str, str]
    body: bytes
    files: dict[str, Upload]
    client_id: str | None = None


class Sandbox:
    """All instances of one process, their shared clock, ids and fault plan."""

    def __init__(self, config: SandboxConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SandboxConfig()
        self.clock: Clock = clock or SystemClock()
        self.ids = Ids(self.config.seed)
        self.faults = FaultInjector(self.config.faults, self.config.seed)
        now = self.clock.time()
        self.instances: dict[str, Instance] = {}
        for ic in self.config.instances:
            self.instances[ic.munchkin_id.upper()] = Instance(ic, self.ids, now)
        self.default = self.instances[self.config.instances[0].munchkin_id.upper()]
        self._schedule_forced_expiry(list(self.instances.values()), now)
        #: Calls an ``apply_after_seconds`` fault answered with an error and still runs (held until they end).
        self._late: set[asyncio.Task[None]] = set()

    # ---- admin helpers (also used in-process) -----------------------------------------------

    def instance(self, munchkin_id: str | None = None) -> Instance:
        if munchkin_id is None:
            return self.default
        inst = self.instances.get(munchkin_id.upper())
        if inst is None:
            raise KeyError(f"no instance {munchkin_id!r}")
        return inst

    def reset(self, munchkin_id: str | None = None) -> None:
        now = self.clock.time()
        targets = [self.instance(munchkin_id)] if munchkin_id else list(self.instances.values())
        for inst in targets:
            inst.reset(now)
        self.faults.replace(self.faults.config)
        self._schedule_forced_expiry(targets, now)

    def set_faults(self, faults: FaultConfig) -> None:
        """Install a fault plan. Call counters and injected-fault counts of every instance carry on."""
        self.faults.replace(faults)
        self._schedule_forced_expiry(list(self.instances.values()), self.clock.time())

    def _schedule_forced_expiry(self, targets: list[Instance], now: float) -> None:
        every = self.faults.config.token_expire_every_seconds
        for inst in targets:
            inst.next_forced_expiry = now + every if every else None

    def _force_token_expiry(self, inst: Instance, now: float) -> None:
        """Run the plan's forced token expiry if a boundary has passed (checked on every call, before
        tokens are checked or issued, so no token issued after the boundary is touched)."""
        every = self.faults.config.token_expire_every_seconds
        at, rounds = forced_expiry_due(inst.next_forced_expiry, every, now)
        if at is None or every is None or inst.next_forced_expiry is None:
            return
        inst.tokens_force_expired += inst.tokens.expire_all(at)
        inst.forced_expiry_rounds += rounds
        inst.next_forced_expiry += rounds * every

    def set_limits(self, limits: LimitsConfig, munchkin_id: str | None = None) -> None:
        inst = self.instance(munchkin_id)
        inst.config = inst.config.model_copy(update={"limits": limits})
        inst.rate = RateWindow(limits.rate_limit, limits.rate_window_seconds)
        history = inst.quota.history
        inst.quota = DailyQuota(limits.daily_quota)
        inst.quota.history = history

    def token_ttl(self, inst: Instance) -> float:
        return self.faults.config.token_ttl_seconds or inst.token_ttl

    # ---- the app ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=CLIENT_MAX_SIZE,
                              handler_args={"max_line_size": 1 << 20, "max_field_size": 1 << 16})
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            return await handle_admin(self, request)
        inst = self.default
        m = MUNCHKIN_PREFIX.match(path)
        if m and m.group(1).upper() in self.instances:
            inst = self.instances[m.group(1).upper()]
            path = m.group(2) or "/"
        now = self.clock.time()
        self._force_token_expiry(inst, now)
        lim = inst.limits
        if len(request.raw_path.encode()) > lim.max_uri_bytes:  # §2.1 URI > 8 KB → 414
            return self._http(inst, request, path, 414, "Request-URI Too Long", now)
        limit = lim.max_bulk_body_bytes if path.startswith("/bulk/") else lim.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._http(inst, request, path, 413, "Request Entity Too Large", now)
        body = await request.read()
        request[BODY_KEY] = body
        if len(body) > limit:
            return self._http(inst, request, path, 413, "Request Entity Too Large", now)
        args = _join_repeated(list(request.query.items()))
        ctype = request.content_type
        if ctype == "application/x-www-form-urlencoded" and body:
            args.update(_join_repeated(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)))
        files: dict[str, Upload] = {}
        if ctype == "multipart/form-data":
            try:
                fields, files = _parse_multipart(request.headers.get("Content-Type", ""), body)
            except ValueError:
                return self._envelope(inst, request, path, "* multipart", None, now,
                                      MarketoError("613", MESSAGES["613"]), asset=False)
            args.update(fields)
        if path == IDENTITY_PATH:
            return await self._identity_with_faults(inst, request, args, now)
        return await self._rest(inst, request, path, args, body, files, now)

    # ---- identity (§1.2) -------------------------------------------------------------------

    async def _identity_with_faults(self, inst: Instance, request: web.Request, args: dict[str, str],
                                    now: float) -> web.Response:
        """Identity honours latency, ``http_*`` and ``drop`` faults; rules with Marketo codes are skipped for it
        (not rolled, not charged to their ``max_count``, not counted)."""
        endpoint = f"{request.method} {IDENTITY_PATH}"
        fault = self.faults.decide(inst.munchkin_id, endpoint, ignore=BODY_CODE_KINDS)
        if fault.latency_seconds:
            inst.record_fault(endpoint, LATENCY_KIND)
            await self.clock.sleep(fault.latency_seconds)
            now = self.clock.time()
        if fault.error:  # apply_then_fail means nothing here: Identity writes nothing a client could repeat
            return self._transport_fault(inst, request, endpoint, args.get("client_id"), now, fault, applied=False)
        return self._identity(inst, request, args, now)

    def _identity(self, inst: Instance, request: web.Request, args: dict[str, str], now: float) -> web.Response:
        endpoint = f"{request.method} {IDENTITY_PATH}"
        if request.method not in ("GET", "POST"):
            return self._http(inst, request, IDENTITY_PATH, 405, "Method Not Allowed", now)
        client = inst.clients.get(args.get("client_id", ""))
        if args.get("grant_type") != "client_credentials":
            body = {"error": "invalid_request", "error_description": "Missing or unsupported grant type"}
            inst.record_call(endpoint, "http_400", None, counted=False, now=now)
            return web.json_response(body, status=400)
        if client is None or client.client_secret != args.get("client_secret"):
            # body from docs/reference/marketo-api.md §1.2/§12.2 (exact Adobe body UNCONFIRMED)
            inst.record_call(endpoint, "http_401", args.get("client_id"), counted=False, now=now)
            self._log(inst, request, endpoint, 401, "http_401", args.get("client_id"), now)
            return web.json_response({"error": "invalid_client", "error_description": "Bad client credentials"},
                                     status=401)
        tok = inst.tokens.issue(client.client_id, now, self.token_ttl(inst), self.ids, inst.config.token_pod,
                                injected_ttl=self.faults.config.token_ttl_seconds is not None)
        inst.record_call(endpoint, "200", client.client_id, counted=False, now=now)  # never counted (§2.1)
        self._log(inst, request, endpoint, 200, "200", client.client_id, now)
        return web.json_response({
            "access_token": tok.value,
            "token_type": "bearer",
            "expires_in": max(0, int(tok.expires_at - now)),
            "scope": client.scope,
        })

    # ---- REST / Bulk -----------------------------------------------------------------------

    async def _rest(self, inst: Instance, request: web.Request, path: str, args: dict[str, str], body: bytes,
                    files: dict[str, Upload], now: float) -> web.StreamResponse:
        """A REST or Bulk call, step by step: the token, the route and its permission, the limits, the fault
        plan, the handler, the answer. Each step may answer instead (an error envelope or a fault)."""
        method = request.method
        if method == "POST" and args.get("_method", "").upper() == "GET":  # §5.2/§10.9
            method = "GET"
        args.pop("_method", None)
        route, params, path_known = match(method, path)
        rest = _RestCall(inst, request, path, route.endpoint if route else f"{method} {path}",
                         bool(route and route.asset), now, method, params, args, body, files)
        refused = self._authenticate(rest)
        if refused is not None:
            return refused
        if route is None:
            return self._refuse(rest, MarketoError("605") if path_known else MarketoError("610"), counted=True)
        client = inst.clients.get(rest.client_id or "")
        if client is not None and not allowed(client.permissions, route.method, route.template):
            # §3.2: the API user's role lacks the permission this call needs (permissions.py).
            return self._refuse(rest, MarketoError("603"), counted=True)
        lim = inst.limits
        if inst.in_flight >= lim.max_concurrency:  # §2.1: more than 10 in flight → 615
            return self._refuse(rest, MarketoError("615", concurrency_message(lim.max_concurrency)),
                                counted=lim.count_limit_rejections)
        inst.in_flight += 1
        try:
            return await self._within_limits(rest, route)
        finally:
            inst.in_flight -= 1

    def _authenticate(self, rest: _RestCall) -> web.Response | None:
        """The access token (§1.3, §12.3): set ``rest.client_id``, or answer with the token's error code."""
        inst, token = rest.inst, None
        auth = rest.request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        legacy = rest.args.pop("access_token", None)  # never passed on to the handler
        if token is None and legacy and inst.behaviour.accept_access_token_param:
            token = legacy
        if not token:
            return self._refuse(rest, MarketoError(inst.behaviour.missing_token_code))
        tok, bad = inst.tokens.check(token, rest.now)
        if tok is None:
            bad = bad or "601"
            if inst.tokens.expired_by_injection(token):  # the plan's token life or a forced expiry
                inst.record_fault(rest.endpoint, token_expired_kind(bad))
            return self._refuse(rest, MarketoError(bad))
        rest.client_id = tok.client_id
        return None

    async def _within_limits(self, rest: _RestCall, route: Route) -> web.StreamResponse:
        """The daily quota and the rate window (§2.1), then the fault plan, then the handler."""
        inst, now, lim = rest.inst, rest.now, rest.inst.limits
        if inst.quota.exhausted(now):  # §2.1 daily quota → 607, resets at Central midnight
            return self._refuse(rest, MarketoError("607"), counted=lim.count_limit_rejections)
        if inst.rate.full(now):  # rolling window → 606
            return self._refuse(rest, MarketoError("606", rate_limit_message(lim.rate_limit, lim.rate_window_seconds)),
                                counted=lim.count_limit_rejections)
        # Take the slot now; give it back if the answer is one of the free codes.
        inst.rate.add(now)
        inst.quota.add(now)
        fault = self.faults.decide(inst.munchkin_id, rest.endpoint)
        if fault.latency_seconds:
            inst.record_fault(rest.endpoint, LATENCY_KIND)
            await self.clock.sleep(fault.latency_seconds)
        if fault.error and not fault.apply_then_fail:
            if fault.apply_after_seconds is not None:
                self._apply_later(rest, route, fault.apply_after_seconds)
            return self._deliver_fault(inst, rest.request, rest.path, rest.endpoint, rest.client_id, now, fault,
                                       rest.asset, applied=False)
        call = self._call_of(rest)
        if rest.request.content_type == "application/json" and rest.body.strip() and call.json is None:
            return self._refuse(rest, MarketoError("609"), counted=True, taken=True)
        try:
            result = route.handler(call)
        except MarketoError as e:
            return self._refuse(rest, e, counted=True, taken=True)
        except Exception:  # every unhandled exception is 611 System error (§3.2)
            log.exception("handler failed: %s", rest.endpoint)
            return self._refuse(rest, MarketoError("611"), counted=True, taken=True)
        if fault.error:  # the call ran (and wrote); the client gets the error all the same
            return self._deliver_fault(inst, rest.request, rest.path, rest.endpoint, rest.client_id, now, fault,
                                       rest.asset, applied=True)
        return self._answer(rest, call, result)

    def _call_of(self, rest: _RestCall) -> Call:
        return Call(inst=rest.inst, method=rest.method, path=rest.path, params=rest.params, args=rest.args,
                    json=_json_or_none(rest.body, rest.request.content_type), body=rest.body, now=self.clock.time(),
                    request_id=self.ids.request_id(rest.now), client_id=rest.client_id or "", files=rest.files,
                    content_type=rest.request.content_type)

    def _apply_later(self, rest: _RestCall, route: Route, delay: float) -> None:
        """Run the call ``delay`` seconds after its error was answered (``FaultRule.apply_after_seconds``): Marketo
        still processing a write after a 604, a 5xx or a dropped connection (docs/reference/marketo-api.md §10.4). A
        Sync Leads call looks its emails up on arrival (``Call.missing_on_arrival``), so an upsert of one of them that
        creates the lead in the meantime makes a duplicate lead when this call is applied (§5.1)."""
        call = self._call_of(rest)
        if rest.endpoint == "POST /rest/v1/leads.json":
            call.missing_on_arrival = api_leads.missing_on_arrival(call)

        async def run() -> None:
            await self.clock.sleep(delay)
            call.now = self.clock.time()
            try:
                route.handler(call)
            except Exception as exc:  # a refused late call changes nothing, as it would at Marketo
                log.info("late call %s not applied: %r", rest.endpoint, exc)

        task = asyncio.ensure_future(run())
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def settle_late_calls(self) -> None:
        """Wait until every call an ``apply_after_seconds`` fault holds has run."""
        while self._late:
            await asyncio.gather(*list(self._late), return_exceptions=True)

    def _answer(self, rest: _RestCall, call: Call, result: Any) -> web.Response:
        """The handler's result: a ``Reply`` as it is, anything else in Marketo's success envelope."""
        if isinstance(result, Reply):
            code = result.code or str(result.status)
            rest.inst.record_call(rest.endpoint, code, rest.client_id, counted=True, now=rest.now)
            self._log(rest.inst, rest.request, rest.endpoint, result.status, code, rest.client_id, rest.now)
            if isinstance(result.body, dict | list):
                return web.json_response(result.body, status=result.status)
            return web.Response(text=str(result.body), status=result.status, content_type=result.content_type)
        rest.inst.record_call(rest.endpoint, "200", rest.client_id, counted=True, now=rest.now)
        self._log(rest.inst, rest.request, rest.endpoint, 200, "200", rest.client_id, rest.now)
        return web.json_response(_wrap(call.request_id, result, rest.asset))

    def _refuse(self, rest: _RestCall, err: MarketoError, counted: bool = False, taken: bool = False) -> web.Response:
        return self._envelope(rest.inst, rest.request, rest.path, rest.endpoint, rest.client_id, rest.now, err,
                              rest.asset, counted=counted, taken=taken)

    def _release(self, inst: Instance, now: float) -> None:
        inst.rate.remove(now)
        inst.quota.add(now, -1)

    def _deliver_fault(self, inst: Instance, request: web.Request, path: str, endpoint: str, client_id: str | None,
                       now: float, fault: FaultDecision, asset: bool, applied: bool) -> web.Response:
        """Answer an injected fault (before or after the call ran) and count it for the instance."""
        assert fault.error is not None
        if fault.error in BODY_CODE_KINDS:
            inst.record_fault(endpoint, fault_kind(fault.error, applied, fault.apply_after_seconds is not None))
            return self._fault_reply(inst, request, path, endpoint, client_id, now, fault.error, asset)
        self._release(inst, now)  # http_* and drop are not counted against the limits
        return self._transport_fault(inst, request, endpoint, client_id, now, fault, applied)

    def _transport_fault(self, inst: Instance, request: web.Request, endpoint: str, client_id: str | None,
                         now: float, fault: FaultDecision, applied: bool) -> web.Response:
        """An HTTP 5xx status with an HTML body (what a gateway in front of Marketo sends), or a dropped
        connection: the client gets no response at all."""
        assert fault.error is not None
        inst.record_fault(endpoint, fault_kind(fault.error, applied, fault.apply_after_seconds is not None))
        inst.record_call(endpoint, fault.error, client_id, counted=False, now=now)
        if fault.error == "drop":
            self._log(inst, request, endpoint, 0, "drop", client_id, now)
            if request.transport is not None:
                request.transport.abort()  # the client sees the connection close with no response
            return web.Response(status=500)
        status = int(fault.error.removeprefix("http_"))
        self._log(inst, request, endpoint, status, fault.error, client_id, now)
        return web.Response(status=status, text="<html><body>Server Error</body></html>", content_type="text/html")

    def _fault_reply(self, inst: Instance, request: web.Request, path: str, endpoint: str, client_id: str | None,
                     now: float, code: str, asset: bool) -> web.Response:
        lim = inst.limits
        if code == "606":
            err = MarketoError("606", rate_limit_message(lim.rate_limit, lim.rate_window_seconds))
        elif code == "615":
            err = MarketoError("615", concurrency_message(lim.max_concurrency))
        else:
            err = MarketoError(code)
        return self._envelope(inst, request, path, endpoint, client_id, now, err, asset, counted=True, taken=True)

    def _envelope(self, inst: Instance, request: web.Request, path: str, endpoint: str, client_id: str | None,
                  now: float, err: MarketoError, asset: bool, counted: bool = False,
                  taken: bool = False) -> web.Response:
        """A response-level error in an HTTP 200 body (§3.1 level 2)."""
        free = err.code in FREE_CODES
        if taken and free:
            self._release(inst, now)
        elif not taken and counted and not free:
            inst.rate.add(now)
            inst.quota.add(now)
        counted_final = counted and not free
        inst.record_call(endpoint, err.code, client_id, counted=counted_final, now=now)
        self._log(inst, request, endpoint, 200, err.code, client_id, now)
        rid = self.ids.request_id(now)
        if asset:
            return web.json_response(asset_fail(rid, err.code, err.message))
        return web.json_response({"requestId": rid, "success": False,
                                  "errors": [{"code": err.code, "message": err.message}]})

    def _http(self, inst: Instance, request: web.Request, path: str, status: int, text: str,
              now: float) -> web.Response:
        endpoint = f"{request.method} {path}"
        inst.record_call(endpoint, f"http_{status}", None, counted=False, now=now)
        self._log(inst, request, endpoint, status, f"http_{status}", None, now)
        return web.Response(status=status, text=text)

    def _log(self, inst: Instance, request: web.Request, endpoint: str, status: int, code: str,
             client_id: str | None, now: float) -> None:
        """Keep what a test needs to check retries and backoff; secrets are redacted."""
        body: bytes = request.get(BODY_KEY, b"")
        inst.request_log.append({
            "at": now, "method": request.method, "path": request.path,
            "query": _redact_query(request.query_string), "endpoint": endpoint, "status": status, "code": code,
            "clientId": client_id,
            "headers": {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in request.headers.items()},
            "body": body[:4096].decode("utf-8", errors="replace") if request.content_type != "multipart/form-data"
            else f"<multipart {len(body)} bytes>",
        })


SECRET_PARAMS = ("access_token", "client_secret")


def _redact_query(qs: str) -> str:
    pairs = parse_qsl(qs, keep_blank_values=True)
    return "&".join(f"{k}={'<redacted>' if k in SECRET_PARAMS else v}" for k, v in pairs)


def _wrap(request_id: str, result: Any, asset: bool) -> dict[str, Any]:
    partial = result if isinstance(result, dict) else {"result": result}
    if asset:
        body: dict[str, Any] = {"success": True, "warnings": partial.get("warnings", []), "errors": [],
                                "requestId": request_id}
        if "result" in partial:
            body["result"] = partial["result"]
        return body
    out: dict[str, Any] = {"requestId": request_id}
    if "result" in partial:
        out["result"] = partial["result"]
    out["success"] = True
    for k, v in partial.items():
        if k != "result":
            out[k] = v
    return out


def _join_repeated(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``fields=a&fields=b`` (how requests encodes a list) means ``fields=a,b``."""
    out: dict[str, str] = {}
    for k, v in pairs:
        out[k] = f"{out[k]},{v}" if k in out else v
    return out


def _json_or_none(body: bytes, content_type: str) -> Any:
    """A request's JSON body, None when it has none or it is not JSON. pydantic-core's parser first (the standard
    one took a ninth of the sandbox's CPU in ``kmsync bench``'s capacity section, issue #22; orjson, faster still,
    turns integers past 64 bits into floats); what it refuses and the standard parser takes (lone surrogates, a
    byte order mark, UTF-16/32) is parsed by the standard one as before, so every body means what it meant."""
    if not body or content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return None
    try:
        return from_json(body, allow_inf_nan=True)
    except ValueError:
        pass
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
    if "boundary=" not in content_type:
        raise ValueError("no boundary")
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise ValueError("not multipart")
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = Upload(filename=filename, content=raw, content_type=part.get_content_type())
        else:
            fields[name] = raw.decode("utf-8", errors="replace")
    return fields, files


def build_sandbox(preset: str = "empty", seed: int = 0, faults: FaultConfig | None = None,
                  instances: list[InstanceConfig] | None = None, clock: Clock | None = None,
                  limits: LimitsConfig | None = None) -> Sandbox:
    """Convenience constructor. ``preset`` applies to instances that do not name one in their config."""
    if instances is None:
        instances = [InstanceConfig(preset="kaltura" if preset == "kaltura" else "empty")]
    elif preset == "kaltura":
        instances = [i if "preset" in i.model_fields_set else i.model_copy(update={"preset": "kaltura"})
                     for i in instances]
    if limits is not None:
        instances = [i.model_copy(update={"limits": limits}) for i in instances]
    config = SandboxConfig(instances=instances, faults=faults or FaultConfig(), seed=seed)
    return Sandbox(config, clock=clock)


__all__ = ["ManualClock", "Sandbox", "SystemClock", "build_sandbox"]
