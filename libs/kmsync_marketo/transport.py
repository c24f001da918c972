"""One Marketo call: token, limiter slot, HTTP, body inspection, and the retry rules of the error table.

Every REST, Asset and Bulk call of the library goes through :meth:`MarketoTransport.call`.
HTTP 200 bodies are always read: ``success:false`` is how Marketo reports most errors (§3.1, §10.8).
"""

from __future__ import annotations

import json as jsonlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx

from kmsync_common.clock import Clock, SystemClock
from kmsync_marketo import endpoints as ep
from kmsync_marketo.auth import DEFAULT_TOKENS, TokenManager, TokenRegistry, identity_fetcher
from kmsync_marketo.errors import (
    MAYBE_APPLIED_NOTE,
    ErrorClass,
    MarketoApiError,
    MarketoError,
    MarketoHttpError,
    MarketoProtocolError,
    classify,
    classify_http_status,
    no_answer,
)
from kmsync_marketo.limiter import DEFAULT_LIMITERS, InstanceLimiter, LimiterRegistry
from kmsync_marketo.settings import MarketoSettings

log = logging.getLogger(__name__)


@dataclass
class CallStats:
    """Totals of one transport (one client object), on top of the instance limiter's stats."""

    calls: int = 0
    retries: int = 0
    reauths: int = 0
    errors: dict[str, int] | None = None

    def count_error(self, code: str) -> None:
        if self.errors is None:
            self.errors = {}
        self.errors[code] = self.errors.get(code, 0) + 1


@dataclass(frozen=True)
class RawResponse:
    status: int
    text: str


class MarketoTransport:
    def __init__(
        self,
        settings: MarketoSettings,
        *,
        clock: Clock | None = None,
        limiter: InstanceLimiter | None = None,
        limiters: LimiterRegistry | None = None,
        tokens: TokenManager | None = None,
        token_registry: TokenRegistry | None = None,
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.base_url = settings.endpoint
        self.limiter = limiter or (limiters or DEFAULT_LIMITERS).get(settings.instance_key, settings.limits, self.clock)
        self.tokens = tokens or (token_registry or DEFAULT_TOKENS).get(
            self.base_url,
            settings.client_id,
            lambda: TokenManager(
                identity_fetcher(self.base_url, settings.client_id, settings.client_secret),
                clock=self.clock,
                refresh_margin_seconds=settings.token_refresh_margin_seconds,
            ),
        )
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=settings.http_timeout_seconds)
        self._rng = rng or random.Random()
        self.stats = CallStats()

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    def _backoff(self, attempt: int) -> float:
        r = self.settings.retry
        ceiling = min(r.backoff_max_seconds, r.backoff_base_seconds * 2 ** max(0, attempt - 1))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        body_limit: int = ep.REST_BODY_MAX_BYTES,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """The envelope of a successful call (``success:true``); raises on a response-level error
        that the table says not to retry, or after retries run out.

        ``idempotent=False`` (insert-only writes: custom activities) never replays a request that
        Marketo may have applied (604, 5xx, a lost answer); the error says so and the caller decides.
        Rejections that happen before any work (601/602, 606, 607, 608, 615) are still retried."""
        content: bytes | None = None
        headers: dict[str, str] = {}
        if json is not None:
            content = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
            if len(content) > body_limit:
                raise MarketoHttpError(413, f"request body {len(content)} bytes over {body_limit}; not sent")
            headers["Content-Type"] = "application/json"
        result = await self._call(
            method,
            path,
            params=params,
            content=content,
            data=data,
            files=files,
            headers=headers,
            want_json=True,
            idempotent=idempotent,
        )
        assert isinstance(result, dict)
        if self.limiter.reconcile_due():
            await self._reconcile_usage()
        return result

    async def _reconcile_usage(self) -> None:
        """Feed the instance-wide count of today's calls to the limiter (§2.1 usage endpoints)."""
        try:
            body = await self._call(
                "GET", ep.USAGE_TODAY, params=None, content=None, data=None, files=None, headers={}, want_json=True
            )
        except MarketoError as exc:
            self.limiter.reconcile_failed()
            log.warning("marketo usage reconciliation failed: %s", exc)
            return
        assert isinstance(body, dict)
        result = body.get("result") or [{}]
        total = result[0].get("total") if isinstance(result[0], dict) else None
        if isinstance(total, int):
            self.limiter.reconcile_usage(total)
        else:
            self.limiter.reconcile_failed()

    async def call_text(self, method: str, path: str, *, params: dict[str, Any] | None = None) -> str | None:
        """A non-JSON answer (bulk failure/warning CSVs); None on HTTP 404 (no such file, §9.1)."""
        result = await self._call(
            method, path, params=params, content=None, data=None, files=None, headers={}, want_json=False
        )
        assert result is None or isinstance(result, str)
        return result

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None,
        content: bytes | None,
        data: dict[str, Any] | None,
        files: dict[str, Any] | None,
        headers: dict[str, str],
        want_json: bool,
        idempotent: bool = True,
    ) -> dict[str, Any] | str | None:
        r = self.settings.retry
        attempts = 0
        reauthed = False
        parks = 0
        queue_waits = 0
        url = self.base_url + path
        while True:
            attempts += 1
            try:
                token = await self.tokens.bearer()
            except MarketoHttpError as exc:  # Identity unreachable or 5xx: transient
                if exc.error_class is ErrorClass.RETRY_SOON and attempts < r.max_attempts:
                    await self._retry_wait(attempts, f"Identity {exc}")
                    continue
                raise
            code: str | None = None
            message = ""
            started = 0.0
            async with self.limiter.slot() as permit:
                started = permit.started
                self.stats.calls += 1
                try:
                    resp = await self.http.request(
                        method,
                        url,
                        params=params,
                        content=content,
                        data=data,
                        files=files,
                        headers={**headers, "Authorization": f"Bearer {token.get_secret_value()}"},
                    )
                except httpx.TimeoutException as exc:
                    resp = None
                    transport_error: httpx.HTTPError | None = exc
                except httpx.TransportError as exc:
                    resp = None
                    transport_error = exc
                else:
                    transport_error = None
                body: Any = None
                if resp is not None and resp.status_code == 200 and (want_json or _looks_json(resp)):
                    try:
                        body = resp.json()
                    except ValueError as exc:
                        if want_json:
                            raise MarketoProtocolError(f"{method} {path}: answer is not JSON") from exc
                    if isinstance(body, dict) and body.get("success") is False:
                        errors = body.get("errors") or [{}]
                        first = errors[0] if isinstance(errors[0], dict) else {}
                        code = str(first.get("code", "?"))
                        message = str(first.get("message", ""))
                        if classify(code).not_counted:
                            permit.not_counted = True
                        permit.throttled = code in THROTTLE_CODES

            # ----- decide, outside the slot so waiting frees the concurrency place -----
            if resp is None:
                assert transport_error is not None
                failure = no_answer(transport_error, f"{method} {path}", idempotent=idempotent)
                if failure.maybe_applied or attempts >= r.max_attempts:
                    raise failure
                await self._retry_wait(attempts, f"{type(transport_error).__name__}")
                continue
            if resp.status_code == 404 and not want_json:
                return None
            if resp.status_code != 200:
                cls = classify_http_status(resp.status_code)
                if cls is ErrorClass.RETRY_SOON and attempts < r.max_attempts and idempotent:
                    await self._retry_wait(attempts, f"HTTP {resp.status_code}")
                    continue
                maybe = cls is ErrorClass.RETRY_SOON and not idempotent
                raise MarketoHttpError(
                    resp.status_code, f"{method} {path}{MAYBE_APPLIED_NOTE if maybe else ''}", maybe_applied=maybe
                )
            if code is None:
                if not want_json and not isinstance(body, dict):
                    return resp.text
                if not isinstance(body, dict):
                    raise MarketoProtocolError(f"{method} {path}: envelope is not an object")
                if not want_json:
                    return resp.text
                return body

            self.stats.count_error(code)
            info = classify(code)
            cls = info.error_class
            if cls is ErrorClass.REAUTH:
                self.tokens.invalidate(token)
                if reauthed:
                    raise MarketoApiError(code, message, attempts)
                reauthed = True
                self.stats.reauths += 1
                attempts -= 1  # the replay after a re-auth is not a retry
                continue
            if cls is ErrorClass.RETRY_SOON:
                if attempts >= r.max_attempts:
                    raise MarketoApiError(code, message, attempts)
                if not idempotent and info.ambiguous:
                    raise MarketoApiError(code, f"{message}{MAYBE_APPLIED_NOTE}", attempts, maybe_applied=True)
                if code in THROTTLE_CODES:
                    self.limiter.on_throttle(code, started)  # its pause delays the next slot
                    self.stats.retries += 1
                else:
                    await self._retry_wait(attempts, code)
                continue
            if cls is ErrorClass.RETRY_LATER:
                if code == "607":
                    # A quota is a delay, never a failure: park and replay as often as needed.
                    if r.max_quota_parks is not None and parks >= r.max_quota_parks:
                        raise MarketoApiError(code, message, attempts)
                    parks += 1
                    until = self.limiter.on_quota_reached()  # the next slot waits for the reset
                    log.info("marketo %s %s: 607 (park %d), replaying after %s", method, path, parks,
                             until.isoformat())
                    attempts = 0
                    reauthed = False  # the token dies during a park of hours: one more re-auth is fair
                    continue
                if queue_waits >= r.import_queue_max_waits:
                    raise MarketoApiError(code, message, attempts)
                queue_waits += 1
                attempts = 0
                reauthed = False  # a token may expire during the wait
                log.info(
                    "marketo %s %s: %s %s; waiting %.0fs",
                    method,
                    path,
                    code,
                    message,
                    r.import_queue_wait_seconds,
                )
                await self.clock.sleep(r.import_queue_wait_seconds)
                continue
            raise MarketoApiError(code, message, attempts)

    async def _retry_wait(self, attempt: int, why: str) -> None:
        delay = self._backoff(attempt)
        self.stats.retries += 1
        log.info("marketo retry after %s in %.1fs (attempt %d)", why, delay, attempt)
        await self.clock.sleep(delay)


#: Marketo's rate (606) and concurrency (615) rejections: the limiter's slow-down handles them.
THROTTLE_CODES = frozenset({"606", "615"})


def _looks_json(resp: httpx.Response) -> bool:
    return "json" in resp.headers.get("content-type", "")
