"""A second integration on the same Marketo instance, spending a fixed share of its calls per window.

It reads leads by email at an even pace of ``share × limit`` calls per ``window`` seconds (another
tool polling Marketo), with its own LaunchPoint credentials so the sandbox counts it separately.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from kmsync_common.clock import SYSTEM_CLOCK


@dataclass
class ExternalStats:
    calls: int = 0
    codes: dict[str, int] = field(default_factory=dict)


class ExternalClient:
    def __init__(self, endpoint: str, client_id: str, client_secret: str, calls_per_window: float,
                 window_seconds: float) -> None:
        if calls_per_window <= 0:
            raise ValueError("calls_per_window must be positive")
        self.http = httpx.AsyncClient(base_url=endpoint, timeout=30)
        self.client_id = client_id
        self.client_secret = client_secret
        self.interval = window_seconds / calls_per_window
        self.stats = ExternalStats()

    async def run(self, stop: asyncio.Event) -> ExternalStats:
        resp = await self.http.post("/identity/oauth/token", data={
            "grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret})
        resp.raise_for_status()
        headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        next_at = SYSTEM_CLOCK.monotonic()
        n = 0
        while not stop.is_set():
            body = (await self.http.get("/rest/v1/leads.json", headers=headers, params={
                "filterType": "email", "filterValues": f"someone{n % 500}@external.example"})).json()
            n += 1
            self.stats.calls += 1
            code = "200" if body.get("success") else str((body.get("errors") or [{}])[0].get("code", "?"))
            self.stats.codes[code] = self.stats.codes.get(code, 0) + 1
            next_at += self.interval
            try:  # pacing: the next call is due at next_at, or now when stop is set
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - SYSTEM_CLOCK.monotonic()))
            except TimeoutError:
                pass
        return self.stats

    async def aclose(self) -> None:
        await self.http.aclose()
