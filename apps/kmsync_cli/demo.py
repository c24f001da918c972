"""`kmsync run`: the whole pipeline on this machine, a realistic virtual event, a reconciliation.

Starts a local Kafka broker, the Marketo sandbox (kaltura preset), the Kaltura sandbox with a
generated event, and ingest, transform and sink as separate processes; plays the event faster than
real time through the pull and webhook paths while printing progress; then compares what the
Marketo sandbox holds with what the event implies (0 missing and 0 duplicates expected) and stops
everything it started (unless --keep-running).

With --marketo-endpoint, --marketo-munchkin-id, --marketo-client-id and --marketo-program-id (the
client secret in KMSYNC_RUN_MARKETO_CLIENT_SECRET) no Marketo sandbox is started: the event is played
into that existing instance (a customer's Marketo sandbox subscription, or a marketo-sandbox started
separately, e.g. `--preset empty --shape kaltura-partial`), `kmsync marketo check` runs first, and the
reconciliation reads back over Marketo's REST API within --readback-max-calls per read-back at
--readback-share of the instance's rate (reconcile_rest.py). Exit 0 only when it reconciles and no
dead letter was caused by the instance's schema.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr, ValidationError

from kmsync_cli.dead_letters import Planted, census, explain, matches
from kmsync_cli.reconcile import Reconciliation, reconcile
from kmsync_cli.reconcile_rest import (
    READBACK_MAX_CALLS,
    READBACK_SHARE,
    ExternalMarketo,
    reconcile_by_rest,
)
from kmsync_cli.stack import OPERATOR_ENV_FILE, Stack, StackOptions, http_json
from kmsync_common.clock import SYSTEM_CLOCK
from kmsync_common.metrics_text import sample_sum
from kmsync_contracts.codecs import describe_validation_error
from kmsync_marketo.cli import run_check
from kmsync_marketo.readback import ReadBudgetExceeded

#: The client secret of `kmsync run --marketo-client-id` (never on the command line).
RUN_SECRET_ENV = "KMSYNC_RUN_MARKETO_CLIENT_SECRET"
MUNCHKIN_ID = re.compile(r"^\d{3}-[A-Za-z]{3}-\d{3}$")


def progress_line(stack: Stack) -> str:
    ingest, transform, sink = (stack.metrics(n) for n in ("ingest", "transform", "sink"))
    status = stack.kaltura_status()
    calls = sample_sum(sink, "kmsync_sink_marketo_calls_total")
    records = sample_sum(sink, "kmsync_sink_records_per_call_sum")
    write_calls = sample_sum(sink, "kmsync_sink_records_per_call_count")
    per_call = records / write_calls if write_calls else 0.0
    throttled = sample_sum(sink, "kmsync_sink_throttle_answers_total")
    dlq = (sample_sum(ingest, "kmsync_ingest_bad_rows_total")
           + sample_sum(transform, "kmsync_transform_dead_lettered_total")
           + sample_sum(sink, "kmsync_sink_dead_letters_total"))
    return (f"kaltura {status['now'][:16]} | in {sample_sum(ingest, 'kmsync_ingest_records_out_total'):>7.0f} "
            f"| ops {sample_sum(transform, 'kmsync_transform_ops_out_total'):>7.0f} "
            f"| Marketo calls {calls:>5.0f} ({per_call:5.1f} records/write call) | 606/615 {throttled:.0f} "
            f"| dead letters {dlq:.0f}")


def run_until_reconciled(stack: Stack, timeout: float, say: Callable[[str], None],
                         stop: threading.Event | None = None) -> Reconciliation | None:
    """Play the event, report progress, and reconcile until clean or `timeout` seconds pass.

    Against an existing instance (``StackOptions.marketo``) the reconciliation reads back over
    Marketo's REST API, at most every ``REST_RECONCILE_EVERY`` seconds and within
    ``StackOptions.readback_max_calls`` per attempt (reconcile_rest.py)."""
    stack.play()
    deadline = SYSTEM_CLOCK.monotonic() + timeout
    result: Reconciliation | None = None
    last_progress = 0.0
    last_readback = 0.0
    external = stack.options.marketo
    while SYSTEM_CLOCK.monotonic() < deadline and not (stop and stop.is_set()):
        stack.check_alive()
        if SYSTEM_CLOCK.monotonic() - last_progress >= 5:
            say(progress_line(stack))
            last_progress = SYSTEM_CLOCK.monotonic()
        if stack.kaltura_status()["finished"]:
            truth = http_json(f"{stack.kaltura_url}/_sandbox/truth")
            if external is None:
                dump = http_json(f"{stack.marketo_url}/_sandbox/dump")
                result = reconcile(truth, dump, stack.program_id)
            elif SYSTEM_CLOCK.monotonic() - last_readback >= REST_RECONCILE_EVERY:
                last_readback = SYSTEM_CLOCK.monotonic()
                try:
                    result, calls = asyncio.run(reconcile_by_rest(
                        external, truth, share=stack.options.readback_share,
                        max_calls=stack.options.readback_max_calls))
                except ReadBudgetExceeded as exc:
                    say(f"read-back stopped: {exc}")
                    return result
                say(f"read back over Marketo's REST API in {calls} calls: "
                    + ("reconciled" if result.clean else "not yet"))
            if result is not None and result.clean:
                return result
        time.sleep(2)  # progress cadence of a live demo; nothing waits on it for correctness
    return result


#: Seconds between two REST read-backs of an existing instance (each costs calls of its quota).
REST_RECONCILE_EVERY = 15.0
#: Sink dead-letter reason codes that mean the Marketo schema did not fit (issue #17).
SCHEMA_REASON_CODES = ("1006", "1013", "kmsync.schema_missing", "kmsync.schema_refused", "kmsync.schema_unread",
                       "kmsync.unknown_activity_type")


def schema_dead_letters(stack: Stack) -> dict[str, float]:
    """Dead letters the sink wrote because of the instance's schema, by reason code."""
    sink = stack.metrics("sink")
    counts = {code: sample_sum(sink, "kmsync_sink_dead_letters_total", {"reason_code": code})
              for code in SCHEMA_REASON_CODES}
    return {code: n for code, n in counts.items() if n}


def external_marketo(args: argparse.Namespace) -> ExternalMarketo | None:
    """The existing instance named on the command line (all four options, the secret from
    KMSYNC_RUN_MARKETO_CLIENT_SECRET), or None; ValueError with what is wrong."""
    given = {"--marketo-endpoint": args.marketo_endpoint, "--marketo-munchkin-id": args.marketo_munchkin_id,
             "--marketo-client-id": args.marketo_client_id, "--marketo-program-id": args.marketo_program_id}
    if all(v is None for v in given.values()):
        return None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ValueError(f"an existing Marketo instance needs {', '.join(missing)} too")
    secret = os.environ.get(RUN_SECRET_ENV, "")
    if not secret:
        raise ValueError(f"set the client secret of --marketo-client-id in the environment variable {RUN_SECRET_ENV}")
    if not MUNCHKIN_ID.match(args.marketo_munchkin_id):
        raise ValueError(f"--marketo-munchkin-id looks like 123-ABC-456, got {args.marketo_munchkin_id!r}")
    if args.marketo_program_id <= 0:
        raise ValueError("--marketo-program-id must be a program id (a positive number)")
    target = ExternalMarketo(args.marketo_endpoint, args.marketo_munchkin_id.upper(), args.marketo_client_id,
                             SecretStr(secret), args.marketo_program_id)
    try:
        target.settings()
    except ValidationError as exc:
        problems = (line.removeprefix("(record): ") for line in describe_validation_error(exc))
        raise ValueError("--marketo-endpoint: " + "; ".join(problems)) from None
    return target


def check_instance(target: ExternalMarketo, say: Callable[[str], None]) -> int:
    """`kmsync marketo check` against the instance: what kmsync found, will write and omit."""
    code, text = asyncio.run(run_check(target.settings(share=READBACK_SHARE), label=target.munchkin_id,
                                       program_ids=[target.program_id]))
    say(text)
    return code


#: Marks a directory as one `kmsync run` made: only such a directory is emptied by the next run.
WORK_DIR_MARKER = ".kmsync-run-work-dir"


def prepare_work_dir(work_dir: Path) -> None:
    """Empty `work_dir` for a fresh broker and state, but only if it is missing, empty or made by an
    earlier run (it holds the marker); anything else is someone's data: ValueError, nothing deleted."""
    if work_dir.exists():
        if not work_dir.is_dir():
            raise ValueError(f"--work-dir {work_dir} is a file; give a directory")
        if any(work_dir.iterdir()) and not (work_dir / WORK_DIR_MARKER).exists():
            raise ValueError(f"--work-dir {work_dir} is not empty and was not made by `kmsync run`; "
                             "give a new or empty directory (nothing was deleted)")
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    (work_dir / WORK_DIR_MARKER).write_text("made by `kmsync run`; the next run empties this directory\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmsync run", description=__doc__)
    parser.add_argument("--registrants", type=int, default=3000,
                        help="registrants of the generated virtual event (default 3000)")
    parser.add_argument("--sessions", type=int, default=4, help="sessions of the generated event (default 4)")
    parser.add_argument("--speed", type=float, default=2000.0,
                        help="scenario seconds per real second (default 2000)")
    parser.add_argument("--seed", type=int, default=7,
                        help="seeds the generated event and the Marketo sandbox (default 7)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="processes per service (ingest, transform, sink) sharing the work; default 1")
    parser.add_argument("--registration-lead-hours", type=float, default=None,
                        help="scenario hours of invitations and registrations before the event (default 72, "
                             "most of the playing time)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for a clean reconciliation (default 900)")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the stack up after the reconciliation until Ctrl-C or SIGTERM")
    parser.add_argument("--work-dir", type=Path, default=Path(".run"),
                        help="logs and broker data; emptied at start only if an earlier run made it (default .run)")
    existing = parser.add_argument_group(
        "an existing Marketo instance (instead of a provisioned sandbox; secret in $" + RUN_SECRET_ENV + ")")
    existing.add_argument("--marketo-endpoint", help="REST API endpoint domain (Admin > Web Services), https")
    existing.add_argument("--marketo-munchkin-id", help="the instance's Munchkin id, e.g. 123-ABC-456")
    existing.add_argument("--marketo-client-id", help="client id of the API-only user's LaunchPoint service")
    existing.add_argument("--marketo-program-id", type=int, help="the Event program the demo event writes to")
    existing.add_argument("--readback-max-calls", type=int, default=READBACK_MAX_CALLS,
                          help=f"calls one REST read-back may spend (default {READBACK_MAX_CALLS})")
    existing.add_argument("--readback-share", type=float, default=READBACK_SHARE,
                          help=f"share of the instance's rate window the read-back uses (default {READBACK_SHARE})")
    return parser


def say(line: str) -> None:
    print(line, flush=True)


def summarise(stack: Stack, result: Reconciliation, target: ExternalMarketo | None) -> int:
    """The reconciliation table with every number explained, the dead letters against what the
    scenario planted, the schema's dead letters; 0 when it all reconciles, else 1."""
    where = "Marketo sandbox" if target is None else f"Marketo {target.munchkin_id}, read back over REST"
    say(f"\nreconciliation ({where} vs the Kaltura event):")
    say(result.report())
    letters_match = True
    if stack.broker is not None and stack.broker.is_running():
        truth = http_json(f"{stack.kaltura_url}/_sandbox/truth")
        found = census(stack.broker.bootstrap, stack.options.topic_prefix)
        say("")
        for line in explain(Planted.from_truth(truth), found):
            say(line)
        letters_match = matches(Planted.from_truth(truth), found) or target is not None
    schema_letters = schema_dead_letters(stack)
    say("dead letters caused by the Marketo schema: "
        + (", ".join(f"{code} {n:.0f}" for code, n in schema_letters.items()) or "0"))
    return 0 if result.clean and not schema_letters and letters_match else 1


def keep_running(stack: Stack, stop: threading.Event) -> None:
    bootstrap = stack.broker.bootstrap if stack.broker else "-"
    say(f"stack kept running: Marketo {stack.marketo_url}, Kaltura {stack.kaltura_url}, "
        f"ingest {stack.url('ingest')}, transform {stack.url('transform')}, sink {stack.url('sink')}, "
        f"Kafka {bootstrap} (KMSYNC_KAFKA_BOOTSTRAP={bootstrap}); Ctrl-C or SIGTERM stops it\n"
        f"  from another shell: . {stack.options.work_dir / OPERATOR_ENV_FILE} && "
        "kmsync trace --event demo-event --email <a registrant>; kmsync reconcile --event demo-event")
    while not stop.wait(1):
        stack.check_alive()


def play_and_report(stack: Stack, args: argparse.Namespace, target: ExternalMarketo | None,
                    stop: threading.Event) -> int:
    """Start everything, play the event, reconcile and explain; the exit code."""
    started = SYSTEM_CLOCK.monotonic()
    say(f"starting Kafka, the sandboxes, ingest, transform and sink (logs in {args.work_dir}/logs) ...")
    if target is not None:
        say(f"checking the Marketo instance {target.munchkin_id} at {target.endpoint} (kmsync marketo check) ...")
        if check_instance(target, say) != 0:
            say("the instance is not ready for kmsync (above); playing anyway")
    stack.start()
    say(f"playing a virtual event: {args.registrants} registrants, {args.sessions} sessions, "
        f"{args.speed:g}x real time")
    result = run_until_reconciled(stack, args.timeout, say, stop)
    say(progress_line(stack))
    code = 1
    if stop.is_set():
        say("stopped by SIGTERM before the reconciliation was clean")
    elif result is None:
        say(f"the event did not finish within --timeout {args.timeout:g}s")
    else:
        code = summarise(stack, result, target)
    say(f"took {SYSTEM_CLOCK.monotonic() - started:.0f}s")
    if args.keep_running and not stop.is_set():
        keep_running(stack, stop)
    return code


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        target = external_marketo(args)
        if not 0 < args.readback_share <= 1 or args.readback_max_calls < 1:
            raise ValueError("--readback-share must be in (0, 1] and --readback-max-calls at least 1")
        prepare_work_dir(args.work_dir)
    except ValueError as exc:
        print(f"kmsync run: {exc}", file=sys.stderr)
        return 2
    stack = Stack(StackOptions(work_dir=args.work_dir, registrants=args.registrants,
                               sessions=args.sessions, speed=args.speed, seed=args.seed, marketo=target,
                               replicas=max(1, args.replicas), registration_lead_hours=args.registration_lead_hours,
                               readback_share=args.readback_share, readback_max_calls=args.readback_max_calls))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 1
    try:
        code = play_and_report(stack, args, target, stop)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"kmsync run: {exc}", file=sys.stderr)
    finally:
        stack.stop()
        print("stopped every process this run started")
    return code
