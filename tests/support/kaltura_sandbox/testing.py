"""In-process sandbox for tests: ``async with running_sandbox(...) as sb:``.

Starts the real HTTP server on 127.0.0.1 with an ephemeral port, paused at scenario time zero
(speed 0) so a test steps time itself via ``sb.advance(...)`` or the admin API. Yields a
:class:`RunningSandbox` with the base URLs, partner id, admin secret and ground truth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from kaltura_sandbox.app import build_app
from kaltura_sandbox.config import ScenarioConfig, apply_overrides
from kaltura_sandbox.sandbox import Sandbox


@dataclass
class RunningSandbox:
    sandbox: Sandbox
    base_url: str

    @property
    def service_url(self) -> str:
        """api_v3 service URL (what a Kaltura client calls ``serviceUrl``)."""
        return self.base_url

    @property
    def user_profile_url(self) -> str:
        """User Profile service base (``https://user.<region>.ovp.kaltura.com/api/v1`` in production)."""
        return f"{self.base_url}/api/v1"

    @property
    def reports_url(self) -> str:
        """Reports microservice base (``https://reports.<region>.ovp.kaltura.com/api/v1`` in production)."""
        return f"{self.base_url}/api/v1"

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}/_sandbox"

    @property
    def partner_id(self) -> int:
        return self.sandbox.partner_id

    @property
    def admin_secret(self) -> str:
        return self.sandbox.admin_secret

    @property
    def virtual_event_id(self) -> int:
        return self.sandbox.config.virtual_event_id

    @property
    def app_guid(self) -> str:
        return self.sandbox.scenario.app_guid

    @property
    def session_entry_ids(self) -> list[str]:
        return [s.entry_id for s in self.sandbox.scenario.sessions]

    def truth(self, as_of: datetime | None = None) -> dict[str, Any]:
        """Ground truth - everything, or what Kaltura shows at ``as_of`` (same as GET /_sandbox/truth)."""
        return self.sandbox.view.truth(as_of)

    def now(self) -> datetime:
        return self.sandbox.now()

    def advance(self, seconds: float) -> datetime:
        return self.sandbox.advance(seconds)

    def advance_to(self, when: datetime) -> datetime:
        return self.sandbox.advance_to(when)

    def advance_to_end(self) -> datetime:
        return self.sandbox.advance_to(self.sandbox.scenario.end)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the sandbox did not bind a TCP port")


@asynccontextmanager
async def running_sandbox(
    scenario: ScenarioConfig | dict[str, Any] | None = None, *, seed: int = 0, speed: float = 0.0,
    notify_url: str | None = None, notify_secret: str | None = None, host: str = "127.0.0.1",
) -> AsyncIterator[RunningSandbox]:
    """Run a sandbox for the duration of the block. ``scenario`` may be a dict of overrides."""
    config = apply_overrides(scenario) if isinstance(scenario, dict) else scenario or ScenarioConfig()
    sandbox = Sandbox(config, seed=seed, speed=speed, notify_url=notify_url, notify_secret=notify_secret)
    runner = web.AppRunner(build_app(sandbox), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        port = _bound_port(runner)
        yield RunningSandbox(sandbox, f"http://{host}:{port}")
    finally:
        await runner.cleanup()
