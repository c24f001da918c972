"""The HTTP endpoints every service serves: /metrics (Prometheus), /healthz and /readyz.

/healthz says the process is alive; /readyz asks the service's own readiness check (its Kafka
clients started), never Marketo or Kaltura, so an outside outage never restarts pods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, GCCollector, generate_latest

ReadyCheck = Callable[[], Awaitable[bool] | bool]


def service_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """A service's metrics registry: ``registry`` as given (a test's), else a new one that also holds Python's
    ``python_gc_*`` metrics (the collections kmsync_common.collector schedules)."""
    if registry is not None:
        return registry
    fresh = CollectorRegistry()
    GCCollector(registry=fresh)
    return fresh


def add_health_routes(app: web.Application, ready: ReadyCheck | None = None,
                      registry: CollectorRegistry = REGISTRY) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok = True
        if ready is not None:
            result = ready()
            ok = (await result) if not isinstance(result, bool) else result
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def start_health_server(host: str, port: int, ready: ReadyCheck | None = None) -> web.AppRunner:
    """Serve the three endpoints on their own; returns the runner (`await runner.cleanup()`)."""
    app = web.Application()
    add_health_routes(app, ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
