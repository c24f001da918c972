"""Reproduce ingest's loss under broker crashes: SIGKILL the broker in the first seconds of the pulls, count the
registrants that never reach kaltura.attendee-status.v1.

``python -m kmsync_bench.ingest_crash --rounds N [--seed S] [--code NAME=DIR ...]``: each round a fresh broker of
its own (kmsync_testing.kafka_broker, fresh ports and data under ``--work-dir``), the Kaltura sandbox (a child,
``kaltura-sandbox``) with a seeded event of ``--registrants`` registrants, paused, and one ``kmsync ingest``
(a child, with the settings kmsync_cli.stack gives it and its default transactional id, so each coordination
partition's pulls commit a page and its watermark in one transaction under ``kmsync-ingest/<prefix>/p<N>``).
Once ingest has taken its partitions over, the event plays; after a random ``--crash-after`` seconds (default
0.5-5) the broker is SIGKILLed and started again on its data (restart_broker). Unless ``--no-pause``, ingest is
SIGSTOPped just before the kill and SIGCONTed after the look below, so what the crash left open is seen before
ingest's takeover ends it (the state the crash leaves is the same; ingest only meets the dead broker later).
The look: every partition of ingest's topics whose last stable offset is behind its log end, and for each open
transaction there HangingTxnTool.java's producer id, epoch and the coordinator's state of the id holding it.
Then ingest runs until the sandbox's event has ended and the registrants on attendee-status stop growing;
a read_committed read counts the distinct registrants (the record key's user id) against the sandbox's ground
truth (attendees not soft-deleted): missing = loss. A read_uncommitted read says whether a missing one was
written and aborted or never written. Ingest's log gives the partitions its takeover warning named ("an open
transaction holds") and any ERROR.

``--code NAME=DIR`` (repeatable): ingest runs with ``PYTHONPATH=DIR/libs:DIR/services:DIR/apps:DIR/tests/support``
(a worktree of another commit: ``git worktree add /tmp/ingest-old 65ff347~1``); without it, the code this module
is imported from. Rounds go in pairs over the code versions: each version gets the same sandbox seed and crash
moment. Every round is a JSON line in ``<work-dir>/results.jsonl``; the summary per version is printed at the end
(``--summarize FILE`` prints it again). Results: docs/reliability.md ("Ingest under broker crashes").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiokafka import TopicPartition

from kmsync_bench.hanging_txn import java_tool
from kmsync_cli.processes import Child, ProcessGroup
from kmsync_cli.stack import POLLS_CSV_URL, http_json
from kmsync_contracts.topics import ATTENDEE_STATUS, INGEST_DLQ, INGEST_WATERMARKS, POLL_RESPONSES, SESSION_ENGAGEMENT
from kmsync_kafka import topic_name
from kmsync_kafka.hanging import Held, Offsets, stable_and_end
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker, free_port, restart_broker, start_broker

BIN = Path(sys.executable).parent
KALTURA_SECRET_ENV = "KMSYNC_BENCH_KALTURA_ADMIN_SECRET"
MARKETO_SECRET_ENV = "KMSYNC_BENCH_MARKETO_CLIENT_SECRET"
#: Ingest's topics whose held partitions are looked at after the crash.
WATCHED = (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES, INGEST_WATERMARKS, INGEST_DLQ)
#: Ingest's takeover warning (publisher.end_left_open, before and since 65ff347).
TAKEOVER_WARNING = re.compile(r"(?P<id>\S+): an open transaction holds (?P<held>.*?); ending")
TOOK_OVER = "took over coordination partition"


@dataclass(frozen=True)
class Code:
    """One version of ingest: a name and the checkout it is imported from (None: this process's own code)."""

    name: str
    root: Path | None = None

    def env(self) -> dict[str, str]:
        if self.root is None:
            return {}
        return {"PYTHONPATH": ":".join(str(self.root / d) for d in ("libs", "services", "apps", "tests/support"))}

    def commit(self) -> str:
        """The commit its checkout is at, and '+changes' when files differ from it (a shared working tree)."""
        root = self.root or Path(__file__).resolve().parents[2]
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "libs", "services"],
                               capture_output=True, text=True, check=False).stdout.strip()
        return head + ("+changes" if dirty else "")


def parse_code(text: str) -> Code:
    """``NAME=DIR`` (DIR a checkout holding services/kmsync_ingest) or ``NAME`` (this process's code)."""
    name, _, root = text.partition("=")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"--code {text!r}: NAME must be letters, digits, '.', '_' or '-'")
    if not root:
        return Code(name)
    path = Path(root).resolve()
    if not (path / "services" / "kmsync_ingest").is_dir():
        raise ValueError(f"--code {text!r}: {path} holds no services/kmsync_ingest")
    return Code(name, path)


@dataclass(frozen=True)
class Options:
    rounds: int
    seed: int
    work_dir: Path
    codes: tuple[Code, ...]
    registrants: int = 300
    sessions: int = 2
    speed: float = 4000.0
    registration_lead_hours: float = 6.0
    post_event_hours: float = 1.0
    crash_after: tuple[float, float] = (0.5, 5.0)
    page_size: int = 500
    #: Ingest pulls back to back (stack.py: 2 s), so the crash meets a transaction in flight more often.
    pull_interval: float = 0.2
    pause: bool = True
    #: Seconds after the broker is back before the look at what is held (the coordinator completes what it had
    #: prepared meanwhile).
    look_after: float = 3.0
    #: Seconds without a new registrant on attendee-status (the event ended) before a round is counted.
    settle: float = 20.0
    round_timeout: float = 240.0
    crash: bool = True


# ----- the pure parts
def user_ids(keys: Iterable[bytes | None], partner_id: int, virtual_event_id: int) -> set[str]:
    """The user ids of attendee-status record keys (``partner:event:user``); other keys (the left-open markers,
    the aborted records of an old takeover) are left out."""
    prefix = f"{partner_id}:{virtual_event_id}:".encode()
    return {key[len(prefix):].decode() for key in keys if key is not None and key.startswith(prefix)}


def expected_registrants(truth: Mapping[str, Any]) -> set[str]:
    """The sandbox's registrants a complete pull must have delivered: every attendee not soft-deleted."""
    return {a["user_id"] for a in truth["attendees"] if not a.get("deleted")}


def takeover_warnings(log_text: str) -> list[dict[str, str]]:
    """Each takeover warning of ingest's log: the transactional id and the partitions it named."""
    return [{"id": m["id"], "held": m["held"]} for m in TAKEOVER_WARNING.finditer(log_text)]


def error_lines(log_text: str, limit: int = 5) -> list[str]:
    return [line[:400] for line in log_text.splitlines() if " ERROR " in line and " aiokafka" not in line][:limit]


def loss(expected: set[str], committed: set[str], written: set[str]) -> dict[str, Any]:
    """Missing from the read_committed read, split into written-but-not-committed (aborted, or still held) and
    never written."""
    missing = expected - committed
    return {"expected": len(expected), "committed": len(expected & committed), "missing": len(missing),
            "missing_written_uncommitted": len(missing & written), "missing_never_written": len(missing - written),
            "missing_ids": sorted(missing)[:20]}


def summary(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per code version: rounds, rounds with a loss, registrants lost, rounds with something held after the
    crash, the coordinator states seen, the takeover warnings' partitions."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["code"] for r in rounds):
        mine = [r for r in rounds if r["code"] == name and "error" not in r]
        states = Counter(p.get("coordinatorState", "no coordinator entry") if "error" not in p else "tool error"
                         for r in mine for p in r["producers"])
        topics = Counter(h["topic"].split(".", 1)[1] if "." in h["topic"] else h["topic"]
                         for r in mine for h in r["held"])
        out[name] = {
            "rounds": len(mine), "failed_rounds": sum(1 for r in rounds if r["code"] == name and "error" in r),
            "rounds_losing": sum(1 for r in mine if r["loss"]["missing"]),
            "registrants_lost": sum(r["loss"]["missing"] for r in mine),
            "registrants_expected": sum(r["loss"]["expected"] for r in mine),
            "rounds_stalled_at_end": sum(1 for r in mine if r["held_at_end"]),
            "rounds_holding_after_crash": sum(1 for r in mine if r["held"]),
            "held_partitions_by_topic": dict(topics), "coordinator_states": dict(states),
            "rounds_with_takeover_warning": sum(1 for r in mine if r["takeover_warnings"]),
            "rounds_with_error_log": sum(1 for r in mine if r["errors"]),
        }
    return out


def table(result: Mapping[str, Any]) -> str:
    """The summary as a markdown table (docs/reliability.md)."""
    lines = ["| code | rounds | rounds losing | registrants lost / expected | held after crash | takeover warned |"
             " stalled at end | coordinator states of held |", "|---|---|---|---|---|---|---|---|"]
    for name, s in result.items():
        states = ", ".join(f"{k} {v}" for k, v in sorted(s["coordinator_states"].items())) or "-"
        lines.append(f"| {name} | {s['rounds']} | {s['rounds_losing']} | {s['registrants_lost']} / "
                     f"{s['registrants_expected']} | {s['rounds_holding_after_crash']} | "
                     f"{s['rounds_with_takeover_warning']} | {s['rounds_stalled_at_end']} | {states} |")
    return "\n".join(lines)


# ----- one round's processes
def tenants(creds: Mapping[str, Any]) -> dict[str, Any]:
    """The sandbox's partner and event; a Marketo instance nobody calls (ingest never does)."""
    return {
        "marketo_instances": {"unused": {"munchkin_id": "123-ABC-456", "endpoint": "http://127.0.0.1:9",
                                         "client_id": "unused", "client_secret": {"env": MARKETO_SECRET_ENV}}},
        "kaltura_partners": {creds["partner_id"]: {
            "service_url": creds["service_url"], "user_profile_url": creds["user_profile_url"],
            "admin_secret": {"env": KALTURA_SECRET_ENV}, "events_api_url": creds["events_api_url"]}},
        "events": [{"name": "crash-event", "partner_id": creds["partner_id"],
                    "virtual_event_id": creds["virtual_event_id"], "app_guid": creds["app_guid"],
                    "marketo_instance": "unused", "program_id": 1001,
                    "sessions": [{"entry_id": e} for e in creds["session_entry_ids"]]}],
    }


def start_sandbox(options: Options, procs: ProcessGroup, work: Path, seed: int) -> str:
    scenario = work / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({
        "registrants": options.registrants, "sessions": options.sessions,
        "registration_lead_hours": options.registration_lead_hours, "post_event_hours": options.post_event_hours}))
    port = free_port()
    child = procs.start("kaltura-sandbox", [str(BIN / "kaltura-sandbox"), "--host", "127.0.0.1", "--port", str(port),
                                            "--scenario", str(scenario), "--seed", str(seed), "--speed", "0"])
    url = f"http://127.0.0.1:{port}"
    procs.wait_http_ok(child, f"{url}/_sandbox/status")
    return url


def start_ingest(options: Options, code: Code, procs: ProcessGroup, broker: KafkaBroker, prefix: str,
                 creds: Mapping[str, Any], work: Path) -> Child:
    """``kmsync ingest`` as kmsync_cli.stack starts it (its transactional id the default), from ``code``."""
    tenants_file = work / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump(tenants(creds), sort_keys=False))
    port = free_port()
    env = {"KMSYNC_KAFKA_BOOTSTRAP": broker.bootstrap, "KMSYNC_TOPIC_PREFIX": prefix,
           "KMSYNC_TENANTS_FILE": str(tenants_file), "KMSYNC_HTTP_HOST": "127.0.0.1", "KMSYNC_HTTP_PORT": str(port),
           KALTURA_SECRET_ENV: creds["admin_secret"], MARKETO_SECRET_ENV: "unused",
           "KMSYNC_EMAIL_HASH_SECRET": '{"env": "KMSYNC_BENCH_EMAIL_HASH_KEY"}',
           "KMSYNC_BENCH_EMAIL_HASH_KEY": "ingest-crash-bench-key-0123456789abcdef",
           "KMSYNC_PULL_INTERVAL_SECONDS": str(options.pull_interval), "KMSYNC_SESSION_REPULL_SECONDS": "3",
           "KMSYNC_POLLS_CSV_URL": POLLS_CSV_URL, "KMSYNC_PAGE_SIZE": str(options.page_size), **code.env()}
    child = procs.start("ingest", [sys.executable, "-m", "kmsync_cli.main", "ingest"], env=env)
    procs.wait_http_ok(child, f"http://127.0.0.1:{port}/healthz", timeout=120)
    deadline = time.monotonic() + 90
    while TOOK_OVER not in child.log_path.read_text(errors="replace"):
        if time.monotonic() > deadline or child.process.poll() is not None:
            raise RuntimeError(f"ingest took no partition over:\n{child.log_tail()}")
        time.sleep(0.2)  # polling a child's log for readiness
    return child


def signal_group(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, sig)


# ----- what the broker holds, and what attendee-status holds
def offsets_now(bootstrap: str, prefix: str) -> dict[TopicPartition, Offsets]:
    return asyncio.run(stable_and_end(bootstrap, [topic_name(s, prefix) for s in WATCHED], within=30))


def held_in(offsets: Mapping[TopicPartition, Offsets]) -> list[Held]:
    """The partitions an open transaction holds (LSO behind the log end)."""
    return [Held(tp, seen.stable, seen.end, 0.0, 0.0) for tp, seen in sorted(offsets.items()) if seen.open]


def held_now(bootstrap: str, prefix: str) -> list[Held]:
    return held_in(offsets_now(bootstrap, prefix))


def log_ends(offsets: Mapping[TopicPartition, Offsets], prefix: str) -> dict[str, int]:
    """Each topic's log end summed over its partitions (records, markers included: how much ingest wrote)."""
    ends: Counter[str] = Counter()
    for tp, seen in offsets.items():
        ends[tp.topic.removeprefix(prefix)] += seen.end
    return dict(ends)


def held_json(held: Sequence[Held]) -> list[dict[str, Any]]:
    return [{"topic": h.tp.topic, "partition": h.tp.partition, "lso": h.stable, "end": h.end} for h in held]


def look(bootstrap: str, prefix: str) -> tuple[list[Held], list[dict[str, Any]]]:
    """What is held now and, for each open transaction there, the Java tool's producer and coordinator state."""
    try:
        held = held_now(bootstrap, prefix)
    except Exception as exc:  # a partition without a leader yet: said, the round goes on
        return [], [{"error": f"offsets unreadable: {exc!r}"}]
    return held, (java_tool("inspect", bootstrap, held, 0.0) if held else [])


def registrants_on(bootstrap: str, prefix: str, ids: tuple[int, int], isolation: str) -> set[str]:
    records = asyncio.run(read_to_end(bootstrap, topic_name(ATTENDEE_STATUS, prefix), within=60,
                                      isolation=isolation))
    return user_ids((m.key for m in records), *ids)


def run_to_end(options: Options, procs: ProcessGroup, ingest: Child, bootstrap: str, prefix: str,
               sandbox: str, ids: tuple[int, int], expected: set[str]) -> int:
    """Until the event ended and attendee-status has every registrant, or none new for ``settle`` seconds.
    Restarts ingest whenever it exits; returns how often."""
    deadline, last, changed, restarts = time.monotonic() + options.round_timeout, -1, time.monotonic(), 0
    while time.monotonic() < deadline:
        if ingest.process.poll() is not None:
            procs.restart(ingest)
            restarts += 1
        with contextlib.suppress(Exception):  # the broker may still be busy after its restart
            seen = len(registrants_on(bootstrap, prefix, ids, "read_committed") & expected)
            if seen != last:
                last, changed = seen, time.monotonic()
        finished = bool(http_json(f"{sandbox}/_sandbox/status").get("finished"))
        if finished and (last == len(expected) or time.monotonic() - changed >= options.settle):
            return restarts
        time.sleep(2.0)  # the observation interval
    return restarts


# ----- one round
def crash(options: Options, broker: KafkaBroker, ingest: Child, prefix: str) -> dict[str, Any]:
    """SIGKILL the broker (ingest paused around it unless --no-pause), start it again, look at what is held."""
    if options.pause:
        signal_group(ingest, signal.SIGSTOP)
    killed_at = time.time()
    try:
        restart_broker(broker, crash=True)
        back_after = time.time() - killed_at
        time.sleep(options.look_after)  # the coordinator completes what it had prepared (see Options.look_after)
        held, producers = look(broker.bootstrap, prefix)
    finally:
        if options.pause:
            signal_group(ingest, signal.SIGCONT)
    return {"killed_at": killed_at, "broker_back_s": round(back_after, 1), "held": held_json(held),
            "producers": producers}


def one_round(options: Options, code: Code, n: int, seed: int, delay: float) -> dict[str, Any]:
    work = options.work_dir / f"round-{n:03d}-{code.name}"
    work.mkdir(parents=True)
    prefix = f"crash{n}."
    broker = start_broker(work / "kafka")
    procs = ProcessGroup(work / "logs")
    result: dict[str, Any] = {"round": n, "code": code.name, "commit": code.commit(), "seed": seed,
                              "crash_after_s": round(delay, 2),
                              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        sandbox = start_sandbox(options, procs, work, seed)
        creds = http_json(f"{sandbox}/_sandbox/credentials")
        ingest = start_ingest(options, code, procs, broker, prefix, creds, work)
        http_json(f"{sandbox}/_sandbox/play", {"speed": options.speed})
        time.sleep(delay)  # the crash's moment in the pulls (drawn), not synchronisation
        result.update(crash(options, broker, ingest, prefix) if options.crash else {"held": [], "producers": []})
        ids = (int(creds["partner_id"]), int(creds["virtual_event_id"]))
        expected = expected_registrants(http_json(f"{sandbox}/_sandbox/truth"))
        result["ingest_restarts"] = run_to_end(options, procs, ingest, broker.bootstrap, prefix, sandbox, ids,
                                               expected)
        result.update(verdict(broker.bootstrap, prefix, ids, expected, ingest))
    finally:
        procs.stop_all()
        broker.stop()
        with contextlib.suppress(OSError):
            shutil.copy(broker.log_path, work / "logs" / "broker.log")
        shutil.rmtree(work / "kafka", ignore_errors=True)
    return result


def verdict(bootstrap: str, prefix: str, ids: tuple[int, int], expected: set[str], ingest: Child) -> dict[str, Any]:
    committed = registrants_on(bootstrap, prefix, ids, "read_committed")
    written = registrants_on(bootstrap, prefix, ids, "read_uncommitted")
    offsets = offsets_now(bootstrap, prefix)
    held_at_end = [h for h in held_in(offsets) if h.tp.topic == topic_name(ATTENDEE_STATUS, prefix)]
    log_text = ingest.log_path.read_text(errors="replace")
    return {"loss": loss(expected, committed, written), "held_at_end": held_json(held_at_end),
            "log_ends": log_ends(offsets, prefix),
            "producers_at_end": java_tool("inspect", bootstrap, held_at_end, 0.0) if held_at_end else [],
            "takeover_warnings": takeover_warnings(log_text), "errors": error_lines(log_text)}


def experiment(options: Options, say: Callable[[str], None] = print) -> dict[str, Any]:
    if options.work_dir.exists():
        shutil.rmtree(options.work_dir)
    options.work_dir.mkdir(parents=True)
    rng, rounds, n = random.Random(options.seed), [], 0
    with (options.work_dir / "results.jsonl").open("w") as out:
        for _ in range(options.rounds):
            seed, delay = rng.randrange(1_000_000), rng.uniform(*options.crash_after)
            for code in options.codes:  # the same event and crash moment for every version
                n += 1
                try:
                    result = one_round(options, code, n, seed, delay)
                except Exception as exc:  # one broken round is said and the run goes on
                    result = {"round": n, "code": code.name, "seed": seed, "error": repr(exc)[:2000]}
                rounds.append(result)
                out.write(json.dumps(result) + "\n")
                out.flush()
                say(f"round {n} {code.name}: " + json.dumps(
                    {k: result.get(k) for k in ("crash_after_s", "loss", "held", "takeover_warnings", "error")}))
    return summary(rounds)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kmsync_bench.ingest_crash", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds per code version (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/kmsync-ingest-crash"))
    parser.add_argument("--code", action="append", default=[], metavar="NAME=DIR",
                        help="a version of ingest to run (repeatable; default: this checkout, named 'here')")
    parser.add_argument("--registrants", type=int, default=300)
    parser.add_argument("--speed", type=float, default=4000.0, help="the sandbox's scenario seconds per second")
    parser.add_argument("--registration-lead-hours", type=float, default=6.0)
    parser.add_argument("--crash-after", type=float, nargs=2, default=(0.5, 5.0), metavar=("MIN", "MAX"),
                        help="seconds after the event starts playing, uniformly drawn (default 0.5 5)")
    parser.add_argument("--page-size", type=int, default=500,
                        help="ingest's KMSYNC_PAGE_SIZE (default 500; at 10 pulls lost a registrant with no crash "
                             "at all: docs/reliability.md)")
    parser.add_argument("--pull-interval", type=float, default=0.2,
                        help="KMSYNC_PULL_INTERVAL_SECONDS (default 0.2: more transactions in the crash's window)")
    parser.add_argument("--no-pause", action="store_true", help="leave ingest running through the crash")
    parser.add_argument("--no-crash", action="store_true", help="a baseline: no broker crash")
    parser.add_argument("--summarize", type=Path, metavar="RESULTS_JSONL", help="only summarize an earlier run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.summarize is not None:
        rounds = [json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]
        result = summary(rounds)
    else:
        signal.signal(signal.SIGTERM, _interrupted)
        codes = tuple(parse_code(c) for c in args.code) or (Code("here"),)
        options = Options(args.rounds, args.seed, args.work_dir, codes, registrants=args.registrants,
                          speed=args.speed, registration_lead_hours=args.registration_lead_hours,
                          crash_after=(args.crash_after[0], args.crash_after[1]), page_size=args.page_size,
                          pull_interval=args.pull_interval, pause=not args.no_pause, crash=not args.no_crash)
        result = experiment(options)
    print(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
