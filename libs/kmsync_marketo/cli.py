"""`kmsync marketo check [--tenants FILE] [--instance NAME] [--apply] [--program-id N] [--name SEED=API]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.check import SetupChecker
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import MarketoSettings

if TYPE_CHECKING:
    from kmsync_config.tenants import ProgramMemberFields

EXIT_OK, EXIT_MISSING, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmsync marketo", description="Marketo tools")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="verify a Marketo instance is set up as the Kaltura guide requires")
    check.add_argument(
        "--tenants",
        default=os.environ.get("KMSYNC_TENANTS_FILE", "tenants.yaml"),
        help="tenants file (default: $KMSYNC_TENANTS_FILE or tenants.yaml)",
    )
    check.add_argument("--instance", help="name under marketo_instances (needed when the file has several)")
    check.add_argument(
        "--apply", action="store_true",
        help="create what the API role may: the custom activity type and custom objects (approved), and the "
             "program member field of the granular status labels",
    )
    check.add_argument(
        "--program-id",
        type=int,
        action="append",
        default=None,
        help="program to check (default: the programs of the instance's events)",
    )
    check.add_argument("--channel", help="name of the event channel to check (default: any channel that fits)")
    check.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="SEED_NAME=API_NAME",
        help="the API name of a seed schema in this instance when it is not found by API name (with or without "
        "_c) or display name, e.g. kalturaUserSessionEngagement=sessions_c",
    )
    return parser


def parse_names(pairs: Sequence[str]) -> dict[str, str]:
    """``SEED_NAME=API_NAME`` pairs; SystemExit naming the bad one."""
    from kmsync_marketo.schema import ENGAGEMENT_ACTIVITY, LOGICAL_OBJECTS

    known = (*LOGICAL_OBJECTS, ENGAGEMENT_ACTIVITY)
    out: dict[str, str] = {}
    for pair in pairs:
        seed_name, sep, api_name = pair.partition("=")
        if not sep or not api_name or seed_name not in known:
            raise SystemExit(f"kmsync marketo check: --name {pair!r}: expected SEED_NAME=API_NAME with SEED_NAME one "
                             f"of {', '.join(known)}")
        out[seed_name] = api_name
    return out


def _load(path: str, name: str | None) -> tuple[str, MarketoSettings, list[int], dict[str, list[str]],
                                                  ProgramMemberFields]:
    from kmsync_config import ConfigError, load_tenants
    from kmsync_marketo.from_config import settings_from_instance

    try:
        cfg = load_tenants(path, check_secrets=False)
    except ConfigError as exc:
        raise SystemExit(f"kmsync marketo check: {exc}") from None
    names = sorted(cfg.marketo_instances)
    if name is None:
        if len(names) != 1:
            raise SystemExit(f"kmsync marketo check: choose --instance among {', '.join(names) or 'none'}")
        name = names[0]
    if name not in cfg.marketo_instances:
        raise SystemExit(f"kmsync marketo check: no instance {name!r} in {path} (defined: {', '.join(names)})")
    instance = cfg.marketo_instances[name]
    try:
        settings = settings_from_instance(instance)
    except ValueError as exc:
        raise SystemExit(f"kmsync marketo check: marketo_instances.{name}.client_secret: {exc}") from None
    events = [ev for ev in cfg.events if ev.marketo_instance == name]
    programs = [ev.program_id for ev in events]
    lead_fields: dict[str, list[str]] = {}  # lead field → the sources events map to it (issue #16 §3)
    for ev in events:
        for field_name, source in ev.lead_sources.items():
            if str(source) not in lead_fields.setdefault(field_name, []):
                lead_fields[field_name].append(str(source))
    return f"{name} ({instance.munchkin_id})", settings, programs, lead_fields, instance.program_member_fields


async def run_check(
    settings: MarketoSettings,
    *,
    label: str,
    program_ids: Sequence[int] = (),
    channel: str | None = None,
    apply: bool = False,
    names: dict[str, str] | None = None,
    lead_fields: dict[str, list[str]] | None = None,
    member_fields: ProgramMemberFields | None = None,
) -> tuple[int, str]:
    """The check against one instance; returns (exit code, printed report). Own registries, so the
    check never shares a token or budget object with another event loop."""
    async with MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry()) as client:
        checker = SetupChecker(client, instance_name=label, program_ids=program_ids, channel_name=channel,
                               names=names, lead_fields=lead_fields)
        if member_fields is not None:  # the instance's program member field (issue #16)
            checker.granular_field = member_fields.granular_status
            checker.mirror_to_status_reason = member_fields.mirror_to_status_reason
        report = await checker.run(apply=apply)
        if apply:
            # Show the state after the changes, as a second pass sees it.
            text = report.render()
            after = await checker.run(apply=False)
            text += "\n\nAfter --apply:\n" + after.render()
            return (EXIT_OK if after.passed else EXIT_MISSING), text
    return (EXIT_OK if report.passed else EXIT_MISSING), report.render()


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    try:
        names = parse_names(args.name)
        label, settings, programs, lead_fields, member_fields = _load(args.tenants, args.instance)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    code, text = asyncio.run(
        run_check(
            settings, label=label, program_ids=args.program_id or programs, channel=args.channel, apply=args.apply,
            names=names, lead_fields=lead_fields, member_fields=member_fields,
        )
    )
    print(text)
    return code
