"""`kmsync transform`: run the transform worker (settings from KMSYNC_* variables, see README.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from kmsync_common.collector import scheduled_collections
from kmsync_common.diagnostics import install_task_dump
from kmsync_common.health import add_health_routes
from kmsync_common.logs import setup_logging
from kmsync_config.settings import load_settings
from kmsync_config.tenants import ConfigError, TenantsConfig, load_tenants
from kmsync_transform.app import TransformWorker
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.settings import TransformSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kmsync transform",
                                     description="Kaltura records into Marketo operations")
    parser.add_argument("--tenants", type=Path, help="tenants file (default: KMSYNC_TENANTS_FILE)")
    args = parser.parse_args(argv)
    try:
        overrides = {"tenants_file": args.tenants} if args.tenants else {}
        settings = load_settings(TransformSettings, **overrides)
        # Transform never calls Marketo or Kaltura: it needs the routing, not the secrets.
        tenants = load_tenants(settings.tenants_file, check_secrets=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    with scheduled_collections(settings.gc_full_threshold):
        if settings.transform_engine == "quix":
            return serve_quix(settings, tenants)
        if settings.transform_engine == "lean":
            return serve_lean(settings, tenants)
        return asyncio.run(serve(settings, tenants))


def serve_quix(settings: TransformSettings, tenants: TenantsConfig) -> int:
    """The quixstreams engine: quixstreams owns the main thread and SIGTERM/SIGINT (it commits the
    checkpoint in hand, then stops)."""
    from kmsync_transform.engine_quix import QuixTransform  # only this engine needs quixstreams' application

    log = setup_logging("transform", settings.log_level)
    engine = QuixTransform(settings, tenants)
    return serve_engine(engine.run, lambda: engine.ready, engine.metrics, settings, log)


def serve_lean(settings: TransformSettings, tenants: TenantsConfig) -> int:
    """The lean engine on the main thread; SIGTERM/SIGINT ask it to stop: the checkpoint in hand is
    committed, then the clients close."""
    from kmsync_transform.engine_lean import LeanTransform

    log = setup_logging("transform", settings.log_level)
    engine = LeanTransform(settings, tenants)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: engine.stop())
    return serve_engine(engine.run, lambda: engine.ready, engine.metrics, settings, log)


def serve_engine(run: Callable[[], None], ready: Callable[[], bool], metrics: TransformMetrics,
                 settings: TransformSettings, log: logging.Logger) -> int:
    """``run()`` an engine whose loop is synchronous, with /healthz, /readyz and /metrics on a thread."""
    from kmsync_transform.health_thread import HealthServer

    health = HealthServer(settings.http_host, settings.http_port, ready, metrics)
    health.start()
    try:
        run()
        log.info("transform stopped: last checkpoint committed")
    finally:
        health.stop()
    return 0


async def serve(settings: TransformSettings, tenants: TenantsConfig) -> int:
    """Serve /healthz, /readyz (state loaded, clients started) and /metrics; run until SIGTERM/SIGINT.

    A stop signal only sets a flag: the batch in hand is finished and committed, then the loop ends.
    """
    log = setup_logging("transform", settings.log_level)
    worker = TransformWorker(settings, tenants)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    install_task_dump(loop)
    app = web.Application()
    add_health_routes(app, lambda: worker.ready, registry=worker.metrics.registry)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    try:
        await worker.start()
        await worker.run(stop)
        log.info("transform stopped: last batch committed")
    finally:
        await worker.close()
        await runner.cleanup()
    return 0
