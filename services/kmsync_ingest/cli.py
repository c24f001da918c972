"""`kmsync ingest`: pull on a schedule, receive Kaltura notifications and CSV uploads over HTTP.

Settings come from KMSYNC_* environment variables (ingest/settings.py); the tenants file names the
events and the Kaltura partners. Runs until SIGINT/SIGTERM, then finishes the page in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from kmsync_common import setup_logging
from kmsync_common.collector import scheduled_collections
from kmsync_common.diagnostics import install_task_dump
from kmsync_config import ConfigError, EventConfig, TenantsConfig, load_settings, load_tenants
from kmsync_ingest.auth import UploadAuth
from kmsync_ingest.http_app import serve
from kmsync_ingest.kaltura_source import KalturaPullSource, client_for
from kmsync_ingest.publisher import KafkaUnavailable
from kmsync_ingest.service import IngestService, SourceFactory
from kmsync_ingest.settings import IngestSettings
from kmsync_ingest.source import KalturaSource


def source_factory(settings: IngestSettings, tenants: TenantsConfig) -> SourceFactory:
    def build(event: EventConfig) -> KalturaSource:
        partner = tenants.kaltura_partners[event.partner_id]
        return KalturaPullSource(client_for(event.partner_id, partner, settings), settings)

    return build


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmsync ingest", description=__doc__)
    parser.add_argument("--tenants", type=Path, help="tenants file (default: KMSYNC_TENANTS_FILE)")
    parser.add_argument("--host", help="HTTP host (default: KMSYNC_HTTP_HOST)")
    parser.add_argument("--port", type=int, help="HTTP port (default: KMSYNC_HTTP_PORT)")
    parser.add_argument("--no-pull", action="store_true", help="push and file modes only")
    return parser


def load(args: argparse.Namespace) -> tuple[IngestSettings, TenantsConfig]:
    overrides: dict[str, object] = {}
    if args.tenants:
        overrides["tenants_file"] = args.tenants
    if args.host:
        overrides["http_host"] = args.host
    if args.port is not None:
        overrides["http_port"] = args.port
    if args.no_pull:
        overrides["pull_enabled"] = False
    settings = load_settings(IngestSettings, **overrides)
    tenants = load_tenants(settings.tenants_file)
    problems = [f"events: partner {e.partner_id} of event {e.virtual_event_id} is not in kaltura_partners"
                for e in tenants.events if e.partner_id not in tenants.kaltura_partners]
    if problems:
        raise ConfigError(str(settings.tenants_file), problems)
    UploadAuth.from_settings(settings)  # every token reference must resolve before we start
    return settings, tenants


async def run(settings: IngestSettings, tenants: TenantsConfig) -> int:
    log = setup_logging("ingest", settings.log_level)
    service = IngestService(settings, tenants, source_factory(settings, tenants))
    try:
        # Joins the ingest group without waiting for its partitions: a restarted replica answers
        # notifications at once (forwarding those of events it does not own yet) while the group
        # waits out a killed predecessor's session.
        await service.start(wait_for_assignment=False)
    except KafkaUnavailable as exc:
        log.error("%s", exc)
        return 3
    except ValueError as exc:  # a Kaltura partner's settings do not validate
        log.error("cannot configure the Kaltura client: %s", exc)
        return 2
    runner, port = await serve(service, settings.http_host, settings.http_port)
    log.info("listening on %s:%d", settings.http_host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    install_task_dump(loop)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await runner.cleanup()
        await service.stop()
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings, tenants = load(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    with scheduled_collections(settings.gc_full_threshold):
        return asyncio.run(run(settings, tenants))
