"""In-process API for tests of other components.

    from marketo_sandbox.testing import running_sandbox, ManualClock

    async with running_sandbox(preset="kaltura", clock=ManualClock()) as sb:
        client = MyMarketoClient(sb.base_url, sb.client_id, sb.client_secret)
        ...
        sb.manual_clock.advance(21)             # cross the 20 s window without sleeping
        assert sb.call_count("POST /rest/v1/leads.json", "606") == 1
        assert sb.dump()["programMembers"][0]["statusName"] == "Registered"

For synchronous clients (requests-based), ``threaded_sandbox`` runs the same server on its own event
loop in a background thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .admin import dump_instance
from .clock import Clock, ManualClock, ManualTime, SystemClock
from .config import FaultConfig, InstanceConfig, LimitsConfig
from .instance import Instance
from .server import Sandbox, build_sandbox

__all__ = ["ManualClock", "SandboxHandle", "SystemClock", "running_sandbox", "threaded_sandbox"]


@dataclass
class SandboxHandle:
    sandbox: Sandbox
    host: str
    port: int

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Endpoint domain of the default instance (no trailing slash, no /rest)."""
        return self.root_url

    def instance_url(self, munchkin_id: str) -> str:
        """Endpoint domain of any instance: ``http://host:port/<munchkinId>``."""
        return f"{self.root_url}/{self.sandbox.instance(munchkin_id).munchkin_id}"

    @property
    def clock(self) -> Clock:
        return self.sandbox.clock

    @property
    def manual_clock(self) -> ManualTime:
        if not isinstance(self.sandbox.clock, ManualTime):
            raise TypeError("the sandbox runs on the system clock; pass clock=ManualClock()")
        return self.sandbox.clock

    @property
    def munchkin_id(self) -> str:
        return self.sandbox.default.munchkin_id

    @property
    def client_id(self) -> str:
        return self.sandbox.default.config.clients[0].client_id

    @property
    def client_secret(self) -> str:
        return self.sandbox.default.config.clients[0].client_secret

    def instance(self, munchkin_id: str | None = None) -> Instance:
        return self.sandbox.instance(munchkin_id)

    def dump(self, munchkin_id: str | None = None) -> dict[str, Any]:
        return dump_instance(self.instance(munchkin_id), self.sandbox.clock.time())

    def calls(self, munchkin_id: str | None = None) -> dict[str, Any]:
        return self.instance(munchkin_id).calls_summary()

    def call_count(self, endpoint: str | None = None, code: str | None = None,
                   munchkin_id: str | None = None) -> int:
        """Calls seen, optionally for one ``"METHOD /path/template"`` and one code ("200", "606", "http_401")."""
        return self.instance(munchkin_id).call_count(endpoint, code)

    def fault_stats(self, munchkin_id: str | None = None) -> dict[str, Any]:
        """Faults injected into one instance so far (same body as ``GET /_sandbox/faults/stats``)."""
        return self.instance(munchkin_id).faults_summary()

    def requests(self, munchkin_id: str | None = None) -> list[dict[str, Any]]:
        return list(self.instance(munchkin_id).request_log)

    def reset(self, munchkin_id: str | None = None) -> None:
        self.sandbox.reset(munchkin_id)

    def set_faults(self, faults: FaultConfig | dict[str, Any]) -> None:
        self.sandbox.set_faults(faults if isinstance(faults, FaultConfig) else FaultConfig.model_validate(faults))

    def set_limits(self, limits: LimitsConfig | dict[str, Any], munchkin_id: str | None = None) -> None:
        lim = limits if isinstance(limits, LimitsConfig) else LimitsConfig.model_validate(limits)
        self.sandbox.set_limits(lim, munchkin_id)

    def expire_tokens(self, munchkin_id: str | None = None) -> int:
        return self.instance(munchkin_id).tokens.expire_all(self.sandbox.clock.time())

    def add_channel(self, name: str, statuses: list[tuple[str, int, bool]], program_type: str = "event",
                    munchkin_id: str | None = None) -> dict[str, Any]:
        """Seed a channel: ``statuses`` as (name, step, success). Returns it as the Asset API shows it."""
        from .api_programs import add_channel, channel_json

        return channel_json(add_channel(self.instance(munchkin_id), name, statuses, program_type,
                                        self.sandbox.clock.time()))

    def add_program(self, name: str, channel: str, program_type: str = "Event", program_id: int | None = None,
                    munchkin_id: str | None = None) -> int:
        """Create a program on an existing channel; returns its id."""
        from .api_programs import add_program

        return add_program(self.instance(munchkin_id), name, channel, program_type, self.sandbox.clock.time(),
                           program_id=program_id).id

    def shape(self, shape: Any, munchkin_id: str | None = None) -> dict[str, Any]:
        """Build what an admin makes in the UI (shape.py; an ``InstanceShape`` or its JSON)."""
        from .shape import InstanceShape, apply_shape

        spec = shape if isinstance(shape, InstanceShape) else InstanceShape.model_validate(shape)
        return apply_shape(self.instance(munchkin_id), spec, self.sandbox.clock.time())

    def set_permissions(self, permissions: list[str] | None, client_id: str | None = None,
                        munchkin_id: str | None = None) -> None:
        """The API user's role (None: everything); calls it does not cover are answered 603."""
        from .admin import set_permissions

        set_permissions(self.instance(munchkin_id), client_id, permissions)

    def advance(self, seconds: float) -> None:
        self.manual_clock.advance(seconds)


async def start_server(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(sandbox.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound)


@asynccontextmanager
async def running_sandbox(preset: str = "kaltura", faults: FaultConfig | dict[str, Any] | None = None,
                          seed: int = 0, clock: Clock | None = None,
                          instances: list[InstanceConfig] | None = None,
                          limits: LimitsConfig | dict[str, Any] | None = None,
                          host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[SandboxHandle]:
    """Serve a sandbox on an ephemeral port for the duration of the block."""
    fc = faults if isinstance(faults, FaultConfig) or faults is None else FaultConfig.model_validate(faults)
    lc = limits if isinstance(limits, LimitsConfig) or limits is None else LimitsConfig.model_validate(limits)
    sandbox = build_sandbox(preset=preset, seed=seed, faults=fc, instances=instances, clock=clock, limits=lc)
    runner, bound = await start_server(sandbox, host, port)
    try:
        yield SandboxHandle(sandbox=sandbox, host=host, port=bound)
    finally:
        await runner.cleanup()


@contextmanager
def threaded_sandbox(**kwargs: Any) -> Iterator[SandboxHandle]:
    """``running_sandbox`` on a background thread's event loop, for synchronous clients."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = stop
        try:
            async with running_sandbox(**kwargs) as handle:
                box["handle"] = handle
                ready.set()
                await stop.wait()
        except BaseException as e:
            box["error"] = e
            ready.set()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="marketo-sandbox", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise RuntimeError("sandbox failed to start") from box["error"]
    try:
        yield box["handle"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
