"""`kmsync transform`: run the transform worker (settings from KMSYNC_* variables, see README.md)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import faust

from kmsync_config.settings import load_settings
from kmsync_config.tenants import ConfigError, load_tenants
from transform.app import build_app, ensure_transform_topics
from transform.settings import TransformSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kmsync transform",
                                     description="Kaltura records into Marketo operations (faust-streaming)")
    parser.add_argument("--tenants-file", type=Path, help="overrides KMSYNC_TENANTS_FILE")
    args = parser.parse_args(argv)
    try:
        overrides = {"tenants_file": args.tenants_file} if args.tenants_file else {}
        settings = load_settings(TransformSettings, **overrides)
        # Transform never calls Marketo or Kaltura: it needs the routing, not the secrets.
        tenants = load_tenants(settings.tenants_file, check_secrets=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.processing_guarantee == "exactly_once":
        print("kmsync transform: exactly_once is experimental here and did not hold up in tests "
              "(services/transform/README.md); at_least_once is the supported mode", file=sys.stderr)
    asyncio.run(ensure_transform_topics(settings))
    settings.transform_data_dir.mkdir(parents=True, exist_ok=True)
    built = build_app(settings, tenants)

    def dump_tasks() -> None:
        """SIGUSR2: print every asyncio task's stack to stderr (diagnosing a stalled worker)."""
        for task in asyncio.all_tasks():
            print(f"--- {task.get_name()} {task.get_coro()!r}", file=sys.__stderr__)
            task.print_stack(limit=6, file=sys.__stderr__)

    @built.app.task
    async def install_dump_handler() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump_tasks)

    worker = faust.Worker(built.app, loglevel=settings.log_level, quiet=True, workdir=settings.transform_data_dir)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
