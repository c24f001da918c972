"""`kmsync reconcile --event NAME|ID [--max-calls N] [--share F] [--json]`: does Marketo hold what Kaltura
says, for one virtual event? (issue #19)

Pulls the event from Kaltura now (kaltura_now.py: registrants, engagement rows, poll answers, through
the ingest service's Kaltura source), reads back what the event's Marketo instance holds for those
people over REST (reconcile_rest.py: leads by email, program members, both custom objects by their
dedupe keys, activities by lead) at ``--share`` of the instance's rate and at most ``--max-calls``
calls, and prints the demo's table: per kind, expected, present, tolerated, missing, duplicates,
unexpected, wrong. Exit 0 when it reconciles, 1 when it does not, 3 when Kaltura or Marketo cannot
be reached. Run it after the event's sessions have ended (custom activities are written for a
session's final figures only).

Settings: KMSYNC_TENANTS_FILE (the event, its Kaltura partner and Marketo instance, secrets by
reference) and the ingest's KMSYNC_POLLS_CSV_URL / KMSYNC_ENGAGEMENT_REPORTS when they are set there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from kmsync_cli.kaltura_now import pull_event
from kmsync_cli.reconcile import COLUMNS, Reconciliation
from kmsync_cli.reconcile_rest import READBACK_MAX_CALLS, READBACK_SHARE, reconcile_over_rest
from kmsync_cli.trace import find_event, readback_settings
from kmsync_config.settings import load_settings
from kmsync_config.tenants import load_tenants
from kmsync_ingest.settings import IngestSettings
from kmsync_marketo.readback import ReadBudgetExceeded


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmsync reconcile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--event", required=True, help="the event's name in the tenants file, or its virtual event id")
    parser.add_argument("--max-calls", type=int, default=READBACK_MAX_CALLS,
                        help=f"Marketo calls the read-back may spend at most (default {READBACK_MAX_CALLS})")
    parser.add_argument("--share", type=float, default=READBACK_SHARE,
                        help=f"share of the instance's rate window the read-back uses (default {READBACK_SHARE})")
    parser.add_argument("--examples", type=int, default=5, help="examples listed per problem (default 5)")
    parser.add_argument("--json", action="store_true", help="the table as one JSON document on stdout")
    return parser


def as_json(result: Reconciliation, calls: int) -> dict[str, object]:
    return {"clean": result.clean, "marketo_calls": calls,
            "kinds": [{"kind": t.kind, **dict(zip(COLUMNS, t.cells(), strict=True)),
                       "missing_keys": t.missing, "duplicate_keys": t.duplicates, "wrong_keys": t.wrong}
                      for t in result.tallies]}


async def run(args: argparse.Namespace) -> tuple[Reconciliation, int]:
    settings = load_settings(IngestSettings)
    tenants = load_tenants(settings.tenants_file, check_secrets=False)
    event = find_event(tenants, args.event)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    truth = await pull_event(tenants, event, settings, say)
    say(f"reading back from Marketo {tenants.instance_for(event).munchkin_id} over REST "
        f"(at most {args.max_calls} calls, {args.share:g} of its rate) ...")
    return await reconcile_over_rest(readback_settings(tenants, event, args.share), truth, event.program_id,
                                     max_calls=args.max_calls, overrides=event.status_overrides)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not 0 < args.share <= 1 or args.max_calls < 1:
        raise ValueError("--share must be in (0, 1] and --max-calls at least 1")
    try:
        result, calls = asyncio.run(run(args))
    except ReadBudgetExceeded as exc:
        print(f"kmsync reconcile: {exc}; give --max-calls more", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(as_json(result, calls), indent=2))
    else:
        print(result.report(args.examples))
        print(f"Marketo calls spent: {calls}")
    return 0 if result.clean else 1
