"""One Marketo call: token, limiter slot, HTTP, body inspection, and the retry rules of the error table.

Every REST, Asset and Bulk call of the library goes through :meth:`MarketoTransport.call`.
HTTP 200 bodies are always read: ``success:false`` is how Marketo reports most errors (§3.1, §10.8).

A call is three layers, each a method: the retry rules (:meth:`MarketoTransport._call`: backoff,
throttles, quota parks, import-queue waits), re-authentication (:meth:`MarketoTransport._authorized`:
one replay with a fresh token when Marketo says the token is invalid) and one send
(:meth:`MarketoTransport._send`: a limiter slot, the token, one HTTP request, its body read).

A lead write that Marketo may still be processing (retry_replay.py) is replayed, or its failure returned, no
earlier than ``RetrySettings.ambiguous_replay_delay_seconds`` after it was sent (docs/reference/marketo-api.md
§5.1, §10.4): the wait is logged and counted in ``CallStats.retry_reasons`` under ``in_process``.
``CallStats.lead_writes_in_process`` says how many Sync Leads calls Marketo may be processing now: a request of
the call sent and not answered yet, or the call held by that delay until it returns. A caller that stops
(``CallStats.stop_lead_writes``: the sink's extended drain) lets no new Sync Leads request go on the wire: one that
has its limiter permit waits, unsent, until its caller cancels it (``CallStats.lead_writes_unsent``); every later
attempt of a call once held by that delay still goes out (the first request may still run; its answer is what the
caller waits for).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any, TypedDict

import httpx
import orjson
from pydantic import SecretStr
from typing_extensions import Unpack

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
    reached_marketo,
)
from kmsync_marketo.limiter import DEFAULT_LIMITERS, InstanceLimiter, LimiterRegistry, Permit
from kmsync_marketo.retry_replay import in_process_reason, replay_wait, same_key_write
from kmsync_marketo.settings import MarketoSettings

log = logging.getLogger(__name__)


#: The reasons a request is sent again within one call, each counted in ``CallStats.retry_reasons``.
RESEND_REASONS = ("backoff", "in_process", "throttle")


@dataclass
class CallStats:
    """Totals of one transport (one client object), on top of the instance limiter's stats."""

    calls: int = 0
    retries: int = 0
    reauths: int = 0
    errors: dict[str, int] | None = None
    #: Retries by reason (``RESEND_REASONS``): ``backoff`` (the ordinary wait), ``in_process`` (a lead write held
    #: until the replay delay after its send had passed, retry_replay.py) or ``throttle`` (a 606/615 sent again
    #: after the limiter's pause); ``in_process_hold`` counts failures held so (no resend).
    retry_reasons: dict[str, int] = field(default_factory=dict)
    #: Seconds spent waiting beyond the ordinary backoff because a lead write may still have been in process.
    replay_delay_seconds: float = 0.0
    #: The Sync Leads calls Marketo may be processing now, by call, each with why: ``sent`` (a request of the call
    #: is on the wire, not answered yet) and ``held`` (by the replay delay, from its first hold until the call
    #: returns, its replay's answer included). Kept by the transport; read ``lead_writes_in_process``.
    lead_writes: dict[int, set[str]] = field(default_factory=dict)
    #: Set by ``stop_lead_writes`` (never cleared): no new Sync Leads request goes on the wire.
    lead_writes_stopped: bool = False
    #: The tasks whose Sync Leads request waits unsent since lead writes were stopped, until they are cancelled.
    lead_writes_unsent: set[asyncio.Task[Any]] = field(default_factory=set)
    #: Set each time a Sync Leads call stops being in process or a request starts waiting unsent, and replaced by a
    #: fresh one then: a waiter takes the current event, reads ``lead_writes_in_process`` and ``lead_writes_unsent``,
    #: and waits on that event (set by the next change, whoever else waits; nobody clears it).
    lead_writes_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def count_error(self, code: str) -> None:
        if self.errors is None:
            self.errors = {}
        self.errors[code] = self.errors.get(code, 0) + 1

    def count_retry(self, reason: str) -> None:
        self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + 1

    @property
    def lead_writes_in_process(self) -> int:
        """How many of this transport's Sync Leads calls Marketo may be processing now (``lead_writes``): a caller
        that stops may not let another writer upsert their emails before they return (docs/reference/marketo-api.md
        §5.1; the sink's drain, kmsync_sink/held_leads.py)."""
        return len(self.lead_writes)

    def lead_write(self, call: int, why: str, *, now: bool) -> None:
        """Call ``call`` is (``now``) or is no longer ``sent``/``held`` (``lead_writes``). Ending what the call was not
        (every Sync Leads call ends its hold, held or not) changes nothing and wakes nobody."""
        if now:
            self.lead_writes.setdefault(call, set()).add(why)
            return
        whys = self.lead_writes.get(call)
        if whys is None or why not in whys:
            return
        whys.discard(why)
        if not whys:
            del self.lead_writes[call]
            self._lead_writes_changed()

    def stop_lead_writes(self) -> None:
        """From now on a Sync Leads request waits unsent (before the limiter, or once it has its permit if it was
        already waiting there) until its caller cancels it (never a failure, no attempt spent), except a later
        attempt of a call held by the replay delay (the call is in ``lead_writes``: its first request may still run,
        and the answer is what a stopping caller waits for).
        For a caller that stops and must not leave a new lead write running at Marketo when it gives up (the sink's
        extended drain, kmsync_sink/worker.py). Not undone: the client is not used after such a stop."""
        self.lead_writes_stopped = True

    def lead_write_unsent(self, task: asyncio.Task[Any], *, now: bool) -> None:
        """``task``'s Sync Leads request waits (``now``) or no longer waits unsent (``lead_writes_unsent``)."""
        if now:
            self.lead_writes_unsent.add(task)
            self._lead_writes_changed()
        else:
            self.lead_writes_unsent.discard(task)

    def _lead_writes_changed(self) -> None:
        """Wake whoever waits on the current ``lead_writes_changed`` and give later waiters a fresh one (an event two
        stopping lanes clear in turn could lose a wake-up)."""
        self.lead_writes_changed.set()
        self.lead_writes_changed = asyncio.Event()

    def resends(self) -> dict[str, int]:
        """``retries`` by reason, every one of ``RESEND_REASONS`` (0 when none was counted)."""
        return {reason: self.retry_reasons.get(reason, 0) for reason in RESEND_REASONS}


@dataclass(frozen=True)
class RawResponse:
    status: int
    text: str


class TransportParts(TypedDict, total=False):
    """What a transport may be given instead of making its own (tests, tools, shared registries).

    ``limiter``/``tokens``: this instance's own; else taken from ``limiters``/``token_registry``
    (default: the process-wide ones, so every client of one instance shares them)."""

    clock: Clock | None
    limiter: InstanceLimiter | None
    limiters: LimiterRegistry | None
    tokens: TokenManager | None
    token_registry: TokenRegistry | None
    http: httpx.AsyncClient | None
    rng: random.Random | None


@dataclass(frozen=True)
class Request:
    """One logical call, replayed as the retry rules say."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    content: bytes | None = None
    data: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: False: a non-JSON answer is wanted (bulk CSVs): its text, None on HTTP 404.
    want_json: bool = True
    #: False: insert-only, never replayed once Marketo may have applied it.
    idempotent: bool = True

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def lead_write(self) -> bool:
        """A Sync Leads call (retry_replay.py): Marketo may still run it after an error."""
        return same_key_write(self.method, self.path, self.params)


@dataclass
class _Answer:
    """What one send got back: an HTTP response (its body read on a 200) or no answer at all."""

    resp: httpx.Response | None
    error: httpx.HTTPError | None = None
    body: Any = None
    #: Marketo's response-level error code (HTTP 200, success:false); None when there is none.
    code: str | None = None
    message: str = ""
    #: The limiter's start time of the call (a throttle's pause is measured from it).
    started: float = 0.0
    #: The token the request carried (None: not sent).
    token: SecretStr | None = None
    #: Identity failed when the token was taken in the slot: nothing was sent.
    identity_error: MarketoHttpError | None = None
    #: The transport clock's monotonic time just before the request was sent (None: not sent).
    sent: float | None = None


@dataclass
class _Tries:
    """The retry state of one logical call."""

    attempts: int = 0
    parks: int = 0
    queue_waits: int = 0


class _Again:
    """What a step returns when the call is to be sent again (its wait already done)."""


_AGAIN = _Again()
_Result = dict[str, Any] | str | None


class MarketoTransport:
    def __init__(self, settings: MarketoSettings, **given: Unpack[TransportParts]) -> None:
        self.settings = settings
        self.clock: Clock = given.get("clock") or SystemClock()
        self.base_url = settings.endpoint
        self.limiter = given.get("limiter") or (given.get("limiters") or DEFAULT_LIMITERS).get(
            settings.instance_key, settings.limits, self.clock)
        self.tokens = given.get("tokens") or (given.get("token_registry") or DEFAULT_TOKENS).get(
            self.base_url,
            settings.client_id,
            lambda: TokenManager(
                identity_fetcher(self.base_url, settings.client_id, settings.client_secret),
                clock=self.clock,
                refresh_margin_seconds=settings.token_refresh_margin_seconds,
            ),
        )
        http = given.get("http")
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=settings.http_timeout_seconds)
        self._rng = given.get("rng") or random.Random()
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
        encoded_json: bytes | None = None,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        body_limit: int = ep.REST_BODY_MAX_BYTES,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """The envelope of a successful call (``success:true``); raises on a response-level error
        that the table says not to retry, or after retries run out.

        ``idempotent=False`` (insert-only writes: custom activities) never replays a request that
        Marketo may have applied (604, 5xx, a lost answer); the error says so and the caller decides.
        Rejections that happen before any work (601/602, 606, 607, 608, 615) are still retried.
        ``encoded_json``: a JSON body the caller has encoded already (instead of ``json``)."""
        content: bytes | None = encoded_json
        headers: dict[str, str] = {}
        if json is not None:
            content = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
        if content is not None:
            if len(content) > body_limit:
                raise MarketoHttpError(413, f"request body {len(content)} bytes over {body_limit}; not sent")
            headers["Content-Type"] = "application/json"
        result = await self._call(Request(method, path, params=params, content=content, data=data, files=files,
                                          headers=headers, idempotent=idempotent))
        assert isinstance(result, dict)
        if self.limiter.reconcile_due():
            await self._reconcile_usage()
        return result

    async def _reconcile_usage(self) -> None:
        """Feed the instance-wide count of today's calls to the limiter (§2.1 usage endpoints)."""
        try:
            body = await self._call(Request("GET", ep.USAGE_TODAY))
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
        result = await self._call(Request(method, path, params=params, want_json=False))
        assert result is None or isinstance(result, str)
        return result

    # ----- layer 1: the retry rules
    async def _call(self, req: Request) -> _Result:
        tries = _Tries()
        try:
            while True:
                tries.attempts += 1
                answer = await self._authorized(req, tries)
                if answer is None:
                    continue  # Identity was unreachable; waited
                if answer.code is None:
                    result = await self._uncoded(req, answer, tries)
                else:
                    result = await self._coded(req, answer, tries)
                if not isinstance(result, _Again):
                    return result
        finally:
            if req.lead_write:
                self.stats.lead_write(id(req), "held", now=False)  # a hold lasts until the call returns

    async def _uncoded(self, req: Request, answer: _Answer, tries: _Tries) -> _Result | _Again:
        """An answer without a Marketo error code: no answer at all, an HTTP error, or a success."""
        r = self.settings.retry
        resp = answer.resp
        if resp is None:
            assert answer.error is not None
            failure = no_answer(answer.error, req.what, idempotent=req.idempotent)
            if failure.maybe_applied:
                raise failure
            if tries.attempts >= r.max_attempts:
                await self._hold_in_process(req, answer)
                raise failure
            await self._retry_wait(tries.attempts, type(answer.error).__name__, req, answer)
            return _AGAIN
        if resp.status_code == 404 and not req.want_json:
            return None
        if resp.status_code != 200:
            cls = classify_http_status(resp.status_code)
            if cls is ErrorClass.RETRY_SOON and tries.attempts < r.max_attempts and req.idempotent:
                await self._retry_wait(tries.attempts, f"HTTP {resp.status_code}", req, answer)
                return _AGAIN
            await self._hold_in_process(req, answer)
            maybe = cls is ErrorClass.RETRY_SOON and not req.idempotent
            raise MarketoHttpError(resp.status_code, f"{req.what}{MAYBE_APPLIED_NOTE if maybe else ''}",
                                   maybe_applied=maybe)
        if not req.want_json:
            return resp.text
        if not isinstance(answer.body, dict):
            raise MarketoProtocolError(f"{req.what}: envelope is not an object")
        return answer.body

    async def _coded(self, req: Request, answer: _Answer, tries: _Tries) -> _Again:
        """A response-level Marketo error (re-auth is the layer below's): retried as the table says, or raised."""
        code, message = answer.code or "?", answer.message
        info = classify(code)
        if info.error_class is ErrorClass.RETRY_SOON:
            if tries.attempts >= self.settings.retry.max_attempts:
                await self._hold_in_process(req, answer)
                raise MarketoApiError(code, message, tries.attempts)
            if not req.idempotent and info.ambiguous:
                raise MarketoApiError(code, f"{message}{MAYBE_APPLIED_NOTE}", tries.attempts, maybe_applied=True)
            if code in THROTTLE_CODES:
                self.limiter.on_throttle(code, answer.started)  # its pause delays the next slot
                self.stats.retries += 1
                self.stats.count_retry("throttle")
            else:
                await self._retry_wait(tries.attempts, code, req, answer)
            return _AGAIN
        if info.error_class is ErrorClass.REAUTH:  # a second invalid token in a row (see _authorized)
            if tries.attempts >= self.settings.retry.max_attempts:
                raise MarketoApiError(code, message, tries.attempts)
            await self._retry_wait(tries.attempts, code)
            return _AGAIN
        if info.error_class is ErrorClass.RETRY_LATER:
            if code == "607":
                self._park(req, code, message, tries)
            else:
                await self._wait_for_import_queue(req, code, message, tries)
            return _AGAIN
        raise MarketoApiError(code, message, tries.attempts)

    def _park(self, req: Request, code: str, message: str, tries: _Tries) -> None:
        """A quota is a delay, never a failure: park and replay as often as needed."""
        r = self.settings.retry
        if r.max_quota_parks is not None and tries.parks >= r.max_quota_parks:
            raise MarketoApiError(code, message, tries.attempts)
        tries.parks += 1
        until = self.limiter.on_quota_reached()  # the next slot waits for the reset
        log.info("marketo %s: 607 (park %d), replaying after %s", req.what, tries.parks, until.isoformat())
        tries.attempts = 0

    async def _wait_for_import_queue(self, req: Request, code: str, message: str, tries: _Tries) -> None:
        r = self.settings.retry
        if tries.queue_waits >= r.import_queue_max_waits:
            raise MarketoApiError(code, message, tries.attempts)
        tries.queue_waits += 1
        tries.attempts = 0
        log.info("marketo %s: %s %s; waiting %.0fs", req.what, code, message, r.import_queue_wait_seconds)
        await self.clock.sleep(r.import_queue_wait_seconds)

    async def _retry_wait(
        self, attempt: int, why: str, req: Request | None = None, answer: _Answer | None = None
    ) -> None:
        delay = self._backoff(attempt)
        self.stats.retries += 1
        in_process = self._in_process(req, answer)
        if in_process is not None and answer is not None and answer.sent is not None:
            wait = replay_wait(backoff=delay, delay=self.settings.retry.ambiguous_replay_delay_seconds,
                               sent_at=answer.sent, now=self.clock.monotonic())
            if wait > delay:
                assert req is not None
                self._held(req, in_process, wait, "in_process", "replaying it")
                self.stats.replay_delay_seconds += wait - delay
                await self.clock.sleep(wait)
                return
        self.stats.count_retry("backoff")
        log.info("marketo retry after %s in %.1fs (attempt %d)", why, delay, attempt)
        await self.clock.sleep(delay)

    def _in_process(self, req: Request | None, answer: _Answer | None) -> str | None:
        """Why a lead write's attempt may still be running at Marketo (retry_replay.py), or None."""
        if req is None or answer is None or answer.sent is None or not req.lead_write:
            return None
        status = None if answer.resp is None else answer.resp.status_code
        sent = answer.error is not None and reached_marketo(answer.error)
        return in_process_reason(sent=sent, http_status=status, code=answer.code,
                                 in_process_codes=self.settings.retry.in_process_codes)

    async def _hold_in_process(self, req: Request, answer: _Answer) -> None:
        """Out of retries with an attempt that may still run at Marketo: return the failure only once the
        replay delay after its send has passed, so the caller's next upsert of these emails cannot race it."""
        reason = self._in_process(req, answer)
        if reason is None or answer.sent is None:
            return
        wait = answer.sent + self.settings.retry.ambiguous_replay_delay_seconds - self.clock.monotonic()
        if wait > 0:
            self._held(req, reason, wait, "in_process_hold", "returning the failure")
            self.stats.replay_delay_seconds += wait
            await self.clock.sleep(wait)

    def _held(self, req: Request, reason: str, wait: float, counted_as: str, before: str) -> None:
        self.stats.count_retry(counted_as)
        self.stats.lead_write(id(req), "held", now=True)
        log.warning("marketo %s: %s; Marketo may still be processing it, so a second upsert of the same emails "
                    "could create duplicate leads (docs/reference/marketo-api.md §5.1): waiting %.1fs before %s "
                    "(at least %.0fs after it was sent, KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS)", req.what,
                    reason, wait, before, self.settings.retry.ambiguous_replay_delay_seconds)

    # ----- layer 2: re-authentication
    async def _authorized(self, req: Request, tries: _Tries) -> _Answer | None:
        """One attempt: a send, and when Marketo calls its token invalid (601/602, §1.3) the token is
        dropped and the request replayed once with a new one (the replay is not a retry). A second
        invalid token in a row is answered to the retry layer, which backs off and sends again until
        the attempts run out: nothing was done with the request, so a record must not fail on it (a
        quota park's day can pass between taking a fresh token and sending it; session 12's CI failed
        12 parked records on 601). The allowance is per attempt, not per call: a call retried
        for minutes (throttles, backoff, quota parks) can outlive more than one token (the chaos
        plan expires every token each 20 s). None: Identity was unreachable (waited)."""
        replayed = False
        while True:
            try:
                await self.tokens.bearer()  # a refresh, when due, happens here rather than in a slot
            except MarketoHttpError as exc:
                await self._identity_failed(exc, tries)
                return None
            answer = await self._send(req)
            if answer.identity_error is not None:
                await self._identity_failed(answer.identity_error, tries)
                return None
            if answer.code is None or classify(answer.code).error_class is not ErrorClass.REAUTH:
                return answer
            assert answer.token is not None
            self.tokens.invalidate(answer.token)
            if replayed:
                return answer  # the retry layer's: a backoff, then a new token
            replayed = True
            self.stats.reauths += 1

    async def _identity_failed(self, exc: MarketoHttpError, tries: _Tries) -> None:
        """Identity unreachable or 5xx is transient: wait and let the retry rules send again."""
        if exc.error_class is ErrorClass.RETRY_SOON and tries.attempts < self.settings.retry.max_attempts:
            await self._retry_wait(tries.attempts, f"Identity {exc}")
            return
        raise exc

    # ----- layer 3: one send
    async def _send(self, req: Request) -> _Answer:
        """One HTTP request in a limiter slot; a 200's body is read and a ``success:false`` reported
        to the limiter (not counted, throttled) before the slot is freed. The token is taken once the
        slot is held: taken before, it could die during a long wait for the slot (a 606 pause, a
        busy instance) and cost the call its one re-authentication."""
        if self._lead_write_stopped(req):  # not even a limiter slot (a 606 pause, a park: it would not show as unsent)
            return await self._unsent(req)
        async with self.limiter.slot() as permit:
            if not self._lead_write_stopped(req):  # (stopped while it waited for the slot)
                return await self._send_in_slot(req, permit)
            permit.not_counted = True  # nothing is sent: the slot and the daily unit go back
        return await self._unsent(req)

    def _lead_write_stopped(self, req: Request) -> bool:
        """A Sync Leads request that must not go on the wire (``CallStats.stop_lead_writes``): any but a later attempt
        of a call once held by the replay delay."""
        return req.lead_write and self.stats.lead_writes_stopped and id(req) not in self.stats.lead_writes

    async def _unsent(self, req: Request) -> _Answer:
        """A Sync Leads request after ``CallStats.stop_lead_writes``: it waits, unsent, until its caller is cancelled
        (its records neither decided nor failed; the caller's next owner sends them)."""
        task = asyncio.current_task()
        assert task is not None
        log.warning("marketo %s: not sent, lead writes are stopped (a stop's drain); waiting to be cancelled", req.what)
        self.stats.lead_write_unsent(task, now=True)
        try:
            await asyncio.get_running_loop().create_future()  # never set: only a cancellation ends the wait
        finally:
            self.stats.lead_write_unsent(task, now=False)
        raise AssertionError("unreachable")

    async def _send_in_slot(self, req: Request, permit: Permit) -> _Answer:
        """One HTTP request in the limiter slot ``permit`` holds (``_send``)."""
        try:
            token = await self.tokens.bearer()
        except MarketoHttpError as exc:
            permit.not_counted = True  # nothing was sent
            return _Answer(None, started=permit.started, identity_error=exc)
        self.stats.calls += 1
        sent = self.clock.monotonic()
        if req.lead_write:
            self.stats.lead_write(id(req), "sent", now=True)
        try:
            resp = await self.http.request(
                req.method, self.base_url + req.path, params=req.params, content=req.content, data=req.data,
                files=req.files, headers={**req.headers, "Authorization": f"Bearer {token.get_secret_value()}"},
            )
        except httpx.TransportError as exc:  # timeouts included
            return _Answer(None, error=exc, started=permit.started, token=token, sent=sent)
        finally:
            if req.lead_write:
                self.stats.lead_write(id(req), "sent", now=False)
        answer = _Answer(resp, started=permit.started, token=token, sent=sent)
        if resp.status_code == 200 and (req.want_json or _looks_json(resp)):
            answer.body = self._read_body(req, resp)
            if isinstance(answer.body, dict) and answer.body.get("success") is False:
                errors = answer.body.get("errors") or [{}]
                first = errors[0] if isinstance(errors[0], dict) else {}
                answer.code = str(first.get("code", "?"))
                answer.message = str(first.get("message", ""))
                self.stats.count_error(answer.code)
                if classify(answer.code).not_counted:
                    permit.not_counted = True
                permit.throttled = answer.code in THROTTLE_CODES
        return answer

    @staticmethod
    def _read_body(req: Request, resp: httpx.Response) -> Any:
        content = resp.content
        if not _may_hold_wide_int(content):
            try:  # orjson first (about 3 times faster on a write's result array, issue #22)
                return orjson.loads(content)
            except orjson.JSONDecodeError:
                pass  # not UTF-8, a NaN, or not JSON: as before
        try:
            return resp.json()
        except ValueError as exc:
            if req.want_json:
                raise MarketoProtocolError(f"{req.what}: answer is not JSON") from exc
            return None


#: Every ASCII digit made ``0``, the rest kept: ``_may_hold_wide_int`` looks for a run of them in C.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else i for i in range(256))
#: orjson reads an integer beyond 64 bits (above 18446744073709551615, below -9223372036854775808) as a
#: rounded float, without an error; the shortest such integer has 19 digits (-9223372036854775809).
_WIDE_INT_RUN = b"0" * 19


def _may_hold_wide_int(content: bytes) -> bool:
    """True when the body has a run of 19 or more digits (an integer orjson would round, or merely a long
    number or digit string), which the standard parser then reads exactly. 17-28 µs on a 300-record
    answer, against orjson's 100-110 µs and the standard parser's 325-335 µs; a regex search took 300-450 µs
    and walking orjson's result for floats 60 µs (issue #22, second round)."""
    return _WIDE_INT_RUN in content.translate(_DIGITS_AS_ZERO)


#: Marketo's rate (606) and concurrency (615) rejections: the limiter's slow-down handles them.
THROTTLE_CODES = frozenset({"606", "615"})


def _looks_json(resp: httpx.Response) -> bool:
    return "json" in resp.headers.get("content-type", "")
