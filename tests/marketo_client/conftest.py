"""Integration helpers: the Marketo sandbox on 127.0.0.1 (ephemeral port), sharing one virtual clock
with the client, so crossing a 20 s window or midnight US Central takes no real time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from kmsync_common.clock import ManualClock
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import BulkSettings, LimiterSettings, MarketoSettings, RetrySettings
from marketo_sandbox.config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    FaultConfig,
    InstanceConfig,
    LimitsConfig,
)
from marketo_sandbox.instance import Instance
from marketo_sandbox.server import Sandbox
from marketo_sandbox.testing import running_sandbox


class SharedClock:
    """The client's Clock over the sandbox's ManualClock: a client sleep moves the shared time to
    the sleeper's deadline (never backwards), so the sandbox's windows, quota day, token expiry and
    bulk jobs see the same virtual time as the client's limiter."""

    def __init__(self, manual: ManualClock) -> None:
        self.manual = manual

    def monotonic(self) -> float:
        return self.manual.monotonic()

    def time(self) -> float:
        return self.manual.time()

    def now(self) -> datetime:
        return self.manual.now()

    async def sleep(self, seconds: float) -> None:
        target = self.manual.time() + max(0.0, seconds)
        await asyncio.sleep(0)
        if self.manual.time() < target:
            self.manual.set(target)


@dataclass
class SandboxEnv:
    sandbox: Sandbox
    base_url: str
    manual: ManualClock
    clock: SharedClock
    clients: list[MarketoClient] = field(default_factory=list)

    @property
    def inst(self) -> Instance:
        return self.sandbox.instance()

    def settings(self, *, limits: LimiterSettings | None = None, retry: RetrySettings | None = None,
                 bulk: BulkSettings | None = None, secret: str = DEFAULT_CLIENT_SECRET,
                 client_id: str = DEFAULT_CLIENT_ID) -> MarketoSettings:
        return MarketoSettings(
            endpoint=self.base_url, client_id=client_id, client_secret=SecretStr(secret),
            munchkin_id=self.inst.munchkin_id, allow_insecure_http=True,
            limits=limits or LimiterSettings(), retry=retry or RetrySettings(), bulk=bulk or BulkSettings(),
        )

    def client(self, settings: MarketoSettings | None = None, **kw: Any) -> MarketoClient:
        c = MarketoClient(settings or self.settings(), clock=self.clock, limiters=LimiterRegistry(),
                          token_registry=TokenRegistry(), rng=random.Random(11), **kw)
        self.clients.append(c)
        return c

    def count(self, code: str, endpoint: str | None = None) -> int:
        return self.inst.call_count(endpoint=endpoint, code=code)


@asynccontextmanager
async def sandbox_env(
    preset: str = "empty",
    *,
    limits: LimitsConfig | None = None,
    faults: FaultConfig | None = None,
    start: datetime | None = None,
    instances: list[InstanceConfig] | None = None,
) -> AsyncIterator[SandboxEnv]:
    manual = ManualClock(start.timestamp() if start else datetime(2026, 3, 4, 15, 0, tzinfo=UTC).timestamp())
    async with running_sandbox(preset=preset, faults=faults, clock=manual, limits=limits, seed=5,
                               instances=instances) as handle:
        env = SandboxEnv(handle.sandbox, handle.base_url, manual, SharedClock(manual))
        try:
            yield env
        finally:
            for c in env.clients:
                await c.aclose()
