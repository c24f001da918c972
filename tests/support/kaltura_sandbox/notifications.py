"""Kaltura HTTP notifications: what to send when (pure) and the dispatcher that posts them.

Envelope ``KalturaHttpNotification`` and signing per docs/reference/kaltura-api.md §2.3-§2.5 and §7.2:
``X-KALTURA-SIGNATURE`` = lowercase hex of HASH(secret + raw body), algorithm named in
``X-KALTURA-HASH-ALGO``. Only 200 and 204 count as delivered; anything else (or a transport error)
is retried with a doubling delay. A fraction of delivered notifications is delivered again with the
same ``eventNotificationJobId`` and byte-identical body, because real receivers see that too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from kaltura_sandbox.clock import ScenarioClock
from kaltura_sandbox.config import NotificationConfig
from kaltura_sandbox.scenario import Scenario
from kaltura_sandbox.state import ScenarioView, unix

log = logging.getLogger(__name__)

FIRST_JOB_ID = 33_578_094_492
_TEMPLATES = {
    "virtual_event": (26_970_222, "Virtual Event Updated", "VIRTUAL_EVENT_UPDATED"),
    "entry": (26_970_223, "Entry Changed", "ENTRY_CHANGED"),
    "user": (26_970_224, "User Added", "USER_ADDED"),
    "user_profile": (26_970_225, "User Profile Changed (kmsync sandbox extension)", "KMSYNC_USER_PROFILE"),
}


def sign(secret: str, body: bytes, algo: str) -> str:
    """hex(HASH(secret + body)) - plain concatenation, not HMAC (docs/reference/kaltura-api.md §2.4)."""
    return hashlib.new(algo, secret.encode("utf-8") + body).hexdigest()


@dataclass(slots=True)
class Notification:
    due: datetime
    job_id: int
    kind: str
    body: bytes
    attempts: int = 0
    next_try: float = 0.0
    duplicate: bool = False


def _envelope(kind: str, job_id: int, obj: dict[str, Any], event_object_type: int | str,
              event_type: int) -> bytes:
    template_id, name, system_name = _TEMPLATES[kind]
    env = {
        "object": obj,
        "eventObjectType": event_object_type,
        "eventType": event_type,
        "eventNotificationJobId": job_id,
        "templateId": template_id,
        "templateName": name,
        "templateSystemName": system_name,
        "objectType": "KalturaHttpNotification",
    }
    return json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def schedule(scenario: Scenario, view: ScenarioView, kinds: tuple[str, ...]) -> list[Notification]:
    """Every notification the scenario will trigger, in due order, with sequential job ids."""
    cfg = scenario.config
    raw: list[tuple[datetime, int, str, dict[str, Any], int | str, int]] = []
    if "virtual_event" in kinds:
        for n, (when, status) in enumerate(((scenario.event_start, "live"), (scenario.event_end, "ended"))):
            obj = {
                "objectType": "KalturaVirtualEvent", "id": cfg.virtual_event_id, "partnerId": cfg.partner_id,
                "name": cfg.event_name, "status": 2, "description": f"Event is {status}",
                "createdAt": unix(scenario.origin), "updatedAt": unix(when),
            }
            raw.append((when, n, "virtual_event", obj, "virtualEventEventNotifications.VirtualEvent", 3))
    if "entry" in kinds:
        for s in scenario.sessions:
            obj = {
                "objectType": "KalturaLiveStreamEntry", "id": s.entry_id, "name": s.name,
                "partnerId": cfg.partner_id, "status": 2, "startDate": unix(s.start),
                "endDate": unix(s.end), "updatedAt": unix(s.end),
            }
            raw.append((s.end, 10, "entry", obj, 1, 3))
    if "user" in kinds:
        for r in scenario.registrants:
            user = view.user(r.user_id, r.created_at)
            if user is not None:
                raw.append((r.created_at, 20, "user", user, 8, 2))
    if "user_profile" in kinds:
        for r in scenario.registrants:
            for t in r.transitions:
                profile = view.profile(r, t.at)
                if profile is not None:
                    raw.append((t.at, 30, "user_profile", profile, "kmsyncSandboxExtension.UserProfile", 3))
    raw.sort(key=lambda item: (item[0], item[1]))
    return [
        Notification(due=when, job_id=FIRST_JOB_ID + i, kind=kind,
                     body=_envelope(kind, FIRST_JOB_ID + i, obj, eot, et))
        for i, (when, _, kind, obj, eot, et) in enumerate(raw)
    ]


@dataclass(slots=True)
class DeliveryLog:
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: dict[int, int] = field(default_factory=dict)  # job id -> deliveries (duplicates count)
    gave_up: list[int] = field(default_factory=list)


class Dispatcher:
    """Posts due notifications to the configured URL; one background task per sandbox."""

    def __init__(
        self, scenario: Scenario, view: ScenarioView, clock: ScenarioClock, config: NotificationConfig,
        *, secret: str, url: str | None = None, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scenario, self._view, self._clock, self.config = scenario, view, clock, config
        self.secret = secret
        self.url = url
        self._monotonic = monotonic
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reset()

    def reset(self) -> None:
        self._pending = schedule(self._scenario, self._view, self.config.kinds)
        self._ready: list[Notification] = []
        self._rng = random.Random(self._scenario.seed + 7919)
        self.log = DeliveryLog()
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def configure(self, url: str | None, secret: str | None = None) -> None:
        self.url = url
        if secret is not None:
            self.secret = secret
        self.wake()

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._ready)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kaltura-sandbox-notifications")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                self._wake.clear()
                if self.url:
                    try:
                        await self._tick(http)
                    except Exception:  # keep dispatching whatever one delivery did
                        log.exception("notification dispatch failed")
                delay = 0.05
                if self._ready:
                    soonest = min(n.next_try for n in self._ready) - self._monotonic()
                    delay = max(0.0, min(delay, soonest))
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                except TimeoutError:
                    pass

    async def _tick(self, http: aiohttp.ClientSession) -> None:
        now = self._clock.now()
        while self._pending and self._pending[0].due <= now:
            n = self._pending.pop(0)
            n.next_try = self._monotonic()
            self._ready.append(n)
        for n in [n for n in self._ready if n.next_try <= self._monotonic()]:
            await self._attempt(http, n)

    async def _attempt(self, http: aiohttp.ClientSession, n: Notification) -> None:
        assert self.url is not None
        algo = self.config.hash_algo
        headers = {
            "Content-Type": "application/json",
            "X-KALTURA-SIGNATURE": sign(self.secret, n.body, algo),
            "X-KALTURA-HASH-ALGO": algo,
        }
        n.attempts += 1
        status: int | str
        try:
            async with http.post(self.url, data=n.body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = f"error: {type(exc).__name__}"
        ok = status in (200, 204)  # docs/reference/kaltura-api.md §2.5: only these count as delivered
        self.log.attempts.append({
            "job_id": n.job_id, "kind": n.kind, "attempt": n.attempts, "status": status,
            "duplicate": n.duplicate, "at": datetime.now(UTC).isoformat(),
        })
        if ok:
            self._ready.remove(n)
            self.log.delivered[n.job_id] = self.log.delivered.get(n.job_id, 0) + 1
            if not n.duplicate and self._rng.random() < self.config.duplicate_rate:
                self._ready.append(Notification(n.due, n.job_id, n.kind, n.body, 0, self._monotonic(), True))
        elif n.attempts >= self.config.max_attempts:
            self._ready.remove(n)
            self.log.gave_up.append(n.job_id)
            log.warning("notification %s given up after %d attempts", n.job_id, n.attempts)
        else:
            backoff = self.config.retry_base_seconds * 2 ** (n.attempts - 1)
            n.next_try = self._monotonic() + min(backoff, self.config.retry_max_seconds)
