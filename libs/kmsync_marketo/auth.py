"""Access tokens: one per (endpoint, client id) in the process, refreshed before expiry, single-flight.

docs/reference/marketo-api.md §1.2–1.3 and §10.1: Identity returns the *same* token while it is valid, with its
remaining lifetime (possibly 0); the first call with an expired token gets 602, later ones 601;
tokens go in the ``Authorization: Bearer`` header only. Identity calls are free (§2.1), so they do
not pass through the limiter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from kmsync_common.clock import Clock, SystemClock
from kmsync_marketo import endpoints as ep
from kmsync_marketo.errors import MarketoAuthError, MarketoHttpError, MarketoProtocolError, no_answer

log = logging.getLogger(__name__)


class TokenResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    access_token: SecretStr
    token_type: str = "bearer"
    expires_in: int = Field(ge=0)
    scope: str | None = None


@dataclass(frozen=True)
class Token:
    value: SecretStr
    #: Monotonic time after which the token is not used any more (margin already taken off).
    use_until: float
    scope: str | None

    def __repr__(self) -> str:
        return f"Token(use_until={self.use_until:.1f}, scope={self.scope!r})"


#: (base url, client id, client secret) → Identity's answer. Injected in tests of the refresh logic.
Fetcher = Callable[[], Awaitable[TokenResponse]]


class TokenManager:
    """The token of one custom service (client id) on one instance."""

    def __init__(
        self,
        fetch: Fetcher,
        clock: Clock | None = None,
        refresh_margin_seconds: float = 60.0,
        zero_lifetime_retry_seconds: float = 1.0,
        zero_lifetime_max_tries: int = 5,
        min_useful_lifetime_seconds: float = 10.0,
    ) -> None:
        self._fetch = fetch
        self.clock: Clock = clock or SystemClock()
        self._margin = refresh_margin_seconds
        self._zero_retry = zero_lifetime_retry_seconds
        self._zero_tries = zero_lifetime_max_tries
        #: A token with less than this left is waited out (it dies, the next answer is fresh).
        self._min_useful = min_useful_lifetime_seconds
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self.identity_calls = 0

    def _usable(self, token: Token | None) -> bool:
        return token is not None and self.clock.monotonic() < token.use_until

    async def bearer(self) -> SecretStr:
        """A token valid for at least the refresh margin; at most one Identity call in flight."""
        token = self._token
        if token is not None and self._usable(token):
            return token.value
        async with self._lock:
            if self._token is not None and self._usable(self._token):  # someone refreshed meanwhile
                return self._token.value
            self._token = await self._refresh()
            return self._token.value

    def invalidate(self, stale: SecretStr) -> None:
        """Marketo rejected ``stale`` (601/602): drop it unless another caller already replaced it."""
        if self._token is not None and self._token.value.get_secret_value() == stale.get_secret_value():
            self._token = None

    async def _refresh(self) -> Token:
        for attempt in range(1, self._zero_tries + 1):
            started = self.clock.monotonic()
            answer = await self._fetch()
            self.identity_calls += 1
            if answer.token_type.lower() != "bearer":
                raise MarketoProtocolError(f"Identity returned token_type {answer.token_type!r}")
            # Identity hands back the current token with what is left of it; near the end of its
            # life that can be a few seconds or 0 (§10.1). Use it while it outlives the margin;
            # with only seconds left, wait for it to die and ask again, which yields a fresh token.
            lifetime = float(answer.expires_in)
            if lifetime > self._margin:
                return Token(answer.access_token, started + lifetime - self._margin, answer.scope)
            if lifetime >= self._min_useful:
                # Shorter than the margin but long enough to work with (an instance whose tokens
                # live a minute, or an old token with a minute left): use it for half of what is
                # left, then ask again. Waiting it out stalled every call of the instance for up to
                # the margin on each refresh (issue #13's chaos run: 60 s tokens, expired every 20 s).
                return Token(answer.access_token, started + lifetime / 2, answer.scope)
            if attempt > 1 and lifetime > 0:
                # Asked again after the old token died: this one is fresh, the service simply issues
                # short-lived tokens. Use it for half its life.
                return Token(answer.access_token, started + lifetime / 2, answer.scope)
            log.info(
                "Identity returned a token with %ss left (try %d); waiting for a fresh one",
                answer.expires_in,
                attempt,
            )
            await self.clock.sleep(max(lifetime, self._zero_retry))
        # Still nothing long-lived: use the short-lived token for a single call rather than stall.
        return Token(answer.access_token, self.clock.monotonic() + max(0.0, lifetime - 0.5), answer.scope)


def identity_fetcher(base_url: str, client_id: str, secret: SecretStr, timeout_seconds: float = 30.0) -> Fetcher:
    """Identity over HTTP: POST with a form body, so the secret never appears in a URL or log.
    Each fetch opens its own connection (once an hour), so the shared manager outlives any client."""

    async def fetch() -> TokenResponse:
        try:
            async with httpx.AsyncClient(timeout=timeout_seconds) as http:
                resp = await http.post(
                    base_url + ep.IDENTITY_TOKEN,
                    data={
                        "grant_type": "client_credentials",
                        "client_id": client_id,
                        "client_secret": secret.get_secret_value(),
                    },
                )
        except httpx.HTTPError as exc:
            raise no_answer(exc, "Identity unreachable") from exc
        if resp.status_code in (400, 401, 403):
            detail = _safe_error(resp)
            raise MarketoAuthError(
                f"Identity refused client id {client_id!r} (HTTP {resp.status_code}: {detail}); check the "
                "client id and secret of the LaunchPoint service"
            )
        if resp.status_code != 200:
            raise MarketoHttpError(resp.status_code, "Identity error")
        try:
            return TokenResponse.model_validate_json(resp.content)
        except ValidationError as exc:
            raise MarketoProtocolError(f"Identity answer is not a token: {exc.errors()[0]['msg']}") from exc

    return fetch


def _safe_error(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return "no JSON body"
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("error") or "unknown")
    return "unknown"


class TokenRegistry:
    """Process-wide: every client of the same (endpoint, client id) shares one TokenManager."""

    def __init__(self) -> None:
        self._managers: dict[tuple[str, str], TokenManager] = {}

    def get(self, base_url: str, client_id: str, factory: Callable[[], TokenManager]) -> TokenManager:
        key = (base_url, client_id)
        manager = self._managers.get(key)
        if manager is None:
            manager = factory()
            self._managers[key] = manager
        return manager

    def clear(self) -> None:
        self._managers.clear()


DEFAULT_TOKENS = TokenRegistry()
