"""`kmsync reconcile --event NAME|ID [--max-calls N] [--share F] [--resume FILE] [--json] [--fix]`: does
Marketo hold what Kaltura says, for one virtual event? (issue #19)

Pulls the event from Kaltura now (kaltura_now.py: registrants, engagement rows, poll answers, through
the ingest service's Kaltura source), reads back what the event's Marketo instance holds for those
people over REST (reconcile_rest.py: leads by email, program members, both custom objects by their
dedupe keys, activities by lead) at ``--share`` of the instance's rate and at most ``--max-calls``
calls (``--resume FILE``: over several runs, readback_resume.py), and prints the demo's table: per
kind, expected, present, tolerated, missing, duplicates, unexpected, wrong. Exit 0 when it
reconciles, 1 when it does not, 3 when Kaltura or Marketo cannot be reached. Run it after the
event's sessions have ended (custom activities are written for a session's final figures only).
``--fix`` then re-drives only the missing or wrong records through the pipeline (reconcile_fix.py:
transform's own steps on what Kaltura holds now, onto marketo.ops.v1 for the running sink);
reconcile again to see them written.

Settings: KMSYNC_TENANTS_FILE (the event, its Kaltura partner and Marketo instance, secrets by
reference), KMSYNC_KAFKA_BOOTSTRAP and KMSYNC_TOPIC_PREFIX for --fix, and the ingest's
KMSYNC_POLLS_CSV_URL / KMSYNC_ENGAGEMENT_REPORTS when they are set there; for --fix, transform's mapping
settings as the running transform has them (KMSYNC_RATE_SCALE, KMSYNC_ENGAGEMENT_DEDUPE_FIELDS,
KMSYNC_POLLS_DEDUPE_FIELDS, KMSYNC_POLLS_CLEAR_EMPTY_SLOTS), so its operations are the ones transform makes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from kmsync_cli.kaltura_now import KalturaNow, pull_event
from kmsync_cli.reconcile import COLUMNS, Reconciliation
from kmsync_cli.reconcile_fix import fixes_of, operations, redrive
from kmsync_cli.reconcile_rest import READBACK_MAX_CALLS, READBACK_SHARE, reconcile_over_rest
from kmsync_cli.trace import find_event, readback_settings
from kmsync_config.settings import load_settings
from kmsync_config.tenants import TenantsConfig, load_tenants
from kmsync_ingest.settings import IngestSettings
from kmsync_marketo.readback import ReadBudgetExceeded
from kmsync_transform.settings import TransformSettings


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
    parser.add_argument("--resume", type=Path, metavar="FILE",
                        help="keep Marketo's answers in FILE and continue a read-back that stopped (budget spent, "
                             "interrupted): answers already there cost no call (delete FILE to read afresh)")
    parser.add_argument("--fix", action="store_true",
                        help="re-drive only the missing or wrong records through the pipeline (onto marketo.ops.v1 "
                             "for the running sink; KMSYNC_KAFKA_BOOTSTRAP, KMSYNC_TOPIC_PREFIX); reconcile again "
                             "once the sink has written them")
    return parser


def as_json(result: Reconciliation, calls: int) -> dict[str, object]:
    return {"clean": result.clean, "marketo_calls": calls,
            "kinds": [{"kind": t.kind, **dict(zip(COLUMNS, t.cells(), strict=True)),
                       "missing_keys": t.missing, "duplicate_keys": t.duplicates, "wrong_keys": t.wrong}
                      for t in result.tallies]}


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> tuple[Reconciliation, int]:
    settings = load_settings(IngestSettings)
    tenants = load_tenants(settings.tenants_file, check_secrets=False)
    event = find_event(tenants, args.event)
    kaltura = await pull_event(tenants, event, settings, say, statuses=args.fix)
    say(f"reading back from Marketo {tenants.instance_for(event).munchkin_id} over REST "
        f"(at most {args.max_calls} calls, {args.share:g} of its rate) ...")
    result, calls = await reconcile_over_rest(readback_settings(tenants, event, args.share), kaltura.truth,
                                              event.program_id, max_calls=args.max_calls,
                                              overrides=event.status_overrides, resume=args.resume)
    if args.fix:
        await fix(result, kaltura, tenants, settings)
    return result, calls


async def fix(result: Reconciliation, kaltura: KalturaNow, tenants: TenantsConfig, settings: IngestSettings) -> None:
    """Re-drive the missing and wrong records (reconcile_fix.py); says what went and what cannot."""
    fixes = fixes_of(result)
    if fixes.empty:
        say("--fix: nothing missing or wrong to re-drive")
        return
    ops = operations(kaltura.records, tenants, fixes, datetime.now(UTC),
                     load_settings(TransformSettings).transformer_options())
    await redrive(settings.kafka_bootstrap, settings.topic_prefix, ops)
    kinds = Counter(op.kind for op in ops)
    say(f"--fix: {len(ops)} operation(s) re-driven onto marketo.ops.v1 ("
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + "); reconcile again once the sink wrote them"
        + (" (custom activities the sink already wrote are skipped by its ledger: never written twice)"
           if fixes.activities else ""))


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not 0 < args.share <= 1 or args.max_calls < 1:
        raise ValueError("--share must be in (0, 1] and --max-calls at least 1")
    try:
        result, calls = asyncio.run(run(args))
    except ReadBudgetExceeded as exc:
        then = (f"run it again with --resume {args.resume} to continue (answers read so far are kept there)"
                if args.resume else "give --max-calls more, or --resume FILE to read it over several runs")
        print(f"kmsync reconcile: {exc}; {then}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(as_json(result, calls), indent=2))
    else:
        print(result.report(args.examples))
        print(f"Marketo calls spent: {calls}")
    return 0 if result.clean else 1
