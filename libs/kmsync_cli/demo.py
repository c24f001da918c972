"""`kmsync run`: the whole pipeline on this machine, a realistic virtual event, a reconciliation.

Starts a local Kafka broker, the Marketo sandbox (kaltura preset), the Kaltura sandbox with a
generated event, and ingest, transform and sink as separate processes; plays the event faster than
real time through the pull and webhook paths while printing progress; then compares what the
Marketo sandbox holds with what the event implies (0 missing and 0 duplicates expected) and stops
everything it started (unless --keep-running).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kmsync_cli.reconcile import Reconciliation, reconcile
from kmsync_cli.stack import PROGRAM_ID, Stack, StackOptions, http_json, metric_sum


def progress_line(stack: Stack) -> str:
    ingest, transform, sink = (stack.metrics(n) for n in ("ingest", "transform", "sink"))
    status = stack.kaltura_status()
    calls = metric_sum(sink, "kmsync_sink_marketo_calls_total")
    records = metric_sum(sink, "kmsync_sink_records_per_call_sum")
    write_calls = metric_sum(sink, "kmsync_sink_records_per_call_count")
    per_call = records / write_calls if write_calls else 0.0
    throttled = metric_sum(sink, "kmsync_sink_throttle_answers_total")
    dlq = (metric_sum(ingest, "kmsync_ingest_bad_rows_total")
           + metric_sum(transform, "kmsync_transform_dead_lettered_total")
           + metric_sum(sink, "kmsync_sink_dead_letters_total"))
    return (f"kaltura {status['now'][:16]} | in {metric_sum(ingest, 'kmsync_ingest_records_out_total'):>7.0f} "
            f"| ops {metric_sum(transform, 'kmsync_transform_ops_out_total'):>7.0f} "
            f"| Marketo calls {calls:>5.0f} ({per_call:5.1f} records/write call) | 606/615 {throttled:.0f} "
            f"| dead letters {dlq:.0f}")


def run_until_reconciled(stack: Stack, timeout: float, say: Callable[[str], None],
                         stop: threading.Event | None = None) -> Reconciliation | None:
    """Play the event, report progress, and reconcile until clean or `timeout` seconds pass."""
    stack.play()
    deadline = time.monotonic() + timeout
    result: Reconciliation | None = None
    last_progress = 0.0
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        stack.check_alive()
        if time.monotonic() - last_progress >= 5:
            say(progress_line(stack))
            last_progress = time.monotonic()
        if stack.kaltura_status()["finished"]:
            truth = http_json(f"{stack.kaltura_url}/_sandbox/truth")
            dump = http_json(f"{stack.marketo_url}/_sandbox/dump")
            result = reconcile(truth, dump, PROGRAM_ID)
            if result.clean:
                return result
        time.sleep(2)  # progress cadence of a live demo; nothing waits on it for correctness
    return result


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kmsync run", description=__doc__)
    parser.add_argument("--registrants", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--speed", type=float, default=2000.0, help="scenario seconds per real second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for a clean reconciliation")
    parser.add_argument("--keep-running", action="store_true", help="leave the stack up until Ctrl-C")
    parser.add_argument("--work-dir", type=Path, default=Path(".run"),
                        help="logs and broker data; emptied at start only if an earlier run made it (default .run)")
    args = parser.parse_args(argv)

    try:
        prepare_work_dir(args.work_dir)
    except ValueError as exc:
        print(f"kmsync run: {exc}", file=sys.stderr)
        return 2
    stack = Stack(StackOptions(work_dir=args.work_dir, registrants=args.registrants,
                               sessions=args.sessions, speed=args.speed, seed=args.seed))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    code = 1
    try:
        print(f"starting Kafka, the sandboxes, ingest, transform and sink (logs in {args.work_dir}/logs) ...",
              flush=True)
        stack.start()
        print(f"playing a virtual event: {args.registrants} registrants, {args.sessions} sessions, "
              f"{args.speed:g}x real time", flush=True)
        result = run_until_reconciled(stack, args.timeout, lambda line: print(line, flush=True), stop)
        print(progress_line(stack))
        if result is None:
            print("the event did not finish before the timeout")
        else:
            print("\nreconciliation (Marketo sandbox vs the Kaltura event):")
            print(result.report())
            code = 0 if result.clean else 1
        print(f"took {time.monotonic() - started:.0f}s")
        if args.keep_running:
            print(f"stack kept running: Marketo {stack.marketo_url}, Kaltura {stack.kaltura_url}, "
                  f"ingest {stack.url('ingest')}, transform {stack.url('transform')}, sink {stack.url('sink')}; "
                  "Ctrl-C stops it", flush=True)
            while not stop.wait(1):
                stack.check_alive()
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"kmsync run: {exc}", file=sys.stderr)
    finally:
        stack.stop()
        print("stopped every process this run started")
    return code
