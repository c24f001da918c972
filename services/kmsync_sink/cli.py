"""`kmsync sink`: run the Marketo sink until SIGTERM/SIGINT (graceful: drain, commit, stop)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from aiohttp import web

from kmsync_common.collector import scheduled_collections
from kmsync_common.diagnostics import install_task_dump
from kmsync_common.health import add_health_routes
from kmsync_common.logs import setup_logging
from kmsync_config.settings import load_settings
from kmsync_config.tenants import ConfigError, load_tenants
from kmsync_contracts.topics import MARKETO_DLQ, MARKETO_OPS, MARKETO_RESULTS
from kmsync_kafka.clients import TopicLayoutError, ensure_topics
from kmsync_sink.service import MarketoSink
from kmsync_sink.settings import SinkSettings


def http_app(sink: MarketoSink) -> web.Application:
    """/metrics (the sink's own registry), /healthz, /readyz (ready once subscribed to Kafka)."""
    app = web.Application()
    add_health_routes(app, sink.ready, registry=sink.metrics.registry)
    return app


async def serve(settings: SinkSettings, sink: MarketoSink, stop: asyncio.Event) -> None:
    runner = web.AppRunner(http_app(sink), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    try:
        await ensure_topics(settings.kafka_bootstrap, (MARKETO_OPS, MARKETO_RESULTS, MARKETO_DLQ),
                            settings.topic_prefix)
        await sink.run(stop)
    finally:
        await runner.cleanup()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kmsync sink", description="Write Marketo operations in the fewest calls")
    parser.add_argument("--tenants", type=Path, help="tenants file (default: $KMSYNC_TENANTS_FILE)")
    args = parser.parse_args(argv)
    try:
        overrides: dict[str, object] = {"tenants_file": args.tenants} if args.tenants else {}
        settings = load_settings(SinkSettings, **overrides)
        # Secrets are resolved per instance when first used: one tenant's bad secret never stops the rest.
        tenants = load_tenants(settings.tenants_file, check_secrets=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    log = setup_logging("marketo-sink", settings.log_level)
    sink = MarketoSink(settings, tenants)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        install_task_dump(loop)
        await serve(settings, sink, stop)

    try:
        with scheduled_collections(settings.gc_full_threshold):
            asyncio.run(_main())
    except TopicLayoutError as exc:  # the topics need an operator's fix: retrying cannot help
        log.error("sink cannot start: %s", exc)
        print(f"kmsync sink: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        log.error("sink stopped on error: %r", exc)
        return 1
    return 0
