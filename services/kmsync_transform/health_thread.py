"""/healthz, /readyz and /metrics on a thread of their own, for the engines whose loop is synchronous
(quix: engine_quix.py; lean: engine_lean.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web

from kmsync_common.health import add_health_routes
from kmsync_transform.metrics import TransformMetrics


class HealthServer:
    """The health endpoints on a daemon thread with its own event loop: `start` it, `stop` it."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool], metrics: TransformMetrics) -> None:
        self.host, self.port, self.ready, self.metrics = host, port, ready, metrics
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="health", daemon=True)

    def start(self) -> None:
        self.thread.start()
        self.started.wait(timeout=30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        add_health_routes(app, self.ready, registry=self.metrics.registry)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, self.host, self.port).start())
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
