"""`kmsync chaos`: the whole pipeline under Marketo faults, kill -9 of every service and a broker
restart, then a reconciliation of every kind. Exit 0 only on 0 missing, 0 duplicates, 0 wrong.

Starts the same stack as `kmsync run` (local Kafka, both sandboxes, ingest, transform and sink as
processes), installs a fault plan in the Marketo sandbox, plays the event, and at random points
(seeded) kills a service with SIGKILL and starts it again with the same command line, or crashes
the broker and starts it again on the same ports and data directory. A process that exits on its
own is counted as an unplanned exit and restarted too. Once the event has finished and every
disruption happened, it reconciles the Marketo sandbox against the Kaltura scenario until clean
(or until nothing changes for --settle seconds, or --timeout) and prints one table: kills, faults
injected by kind (counted by the sandbox), dead letters by reason, and per kind expected, present,
missing, duplicates, wrong. docs/reliability.md has the method and the latest results.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kmsync_cli.chaos_plan import BROKER, ChaosReport, Disruption, fault_plan, parse_kills, schedule
from kmsync_cli.dead_letters import Planted, census, explain
from kmsync_cli.reconcile import Reconciliation, reconcile
from kmsync_cli.stack import PROGRAM_ID, Stack, StackOptions, http_json
from kmsync_common.clock import SYSTEM_CLOCK
from kmsync_common.metrics_text import sample_sum
from kmsync_testing.kafka_broker import restart_broker

#: How often the run looks at its processes and the clock (a harness cadence, not synchronisation).
TICK_SECONDS = 0.25


@dataclass
class ChaosOptions:
    work_dir: Path = Path(".chaos")
    registrants: int = 3000
    sessions: int = 4
    speed: float = 2000.0
    seed: int = 7
    kills: dict[str, int] = field(default_factory=lambda: {"ingest": 2, "transform": 3, "sink": 3})
    broker_restarts: int = 1
    #: Fault rates × this (0 turns the Marketo fault plan off).
    fault_scale: float = 1.0
    #: Disruptions happen within this share of the event's playing time (the rest of it and the
    #: drain run undisturbed, so the run ends).
    window_share: float = 0.9
    timeout: float = 1800.0
    #: Stop early when the reconciliation has not changed for this long after the last disruption.
    settle: float = 90.0
    #: Every service's extra environment. The replay delay of a lead write Marketo may still be processing
    #: (docs/configuration.md, 90 s by default) is cut to 2 s: the sandbox applies a write only before it
    #: answers (its apply_after_seconds fault is not in the plan), so the path is exercised by the plan's
    #: lost answers and 5xx without each of them holding a lane for 90 s.
    service_env: dict[str, str] = field(
        default_factory=lambda: {"KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS": "2"})
    #: Hours of registrations before the event (StackOptions.registration_lead_hours).
    registration_lead_hours: float | None = None
    #: Processes per service; a kill picks one of the service's live replicas at random.
    replicas: int = 1
    #: False: a killed replica stays down and the others must take over its work (needs more
    #: replicas than kills of the service).
    restart_killed: bool = True

    def __post_init__(self) -> None:
        if not self.restart_killed:
            short = [s for s, n in self.kills.items() if n >= self.replicas]
            if short:
                raise ValueError(f"with killed replicas left down, each service needs more replicas "
                                 f"({self.replicas}) than kills; not so for {', '.join(short)}")


def _seconds_between(a: str, b: str) -> float:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parse(b) - parse(a)).total_seconds()


class ChaosRun:
    def __init__(self, options: ChaosOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.stack = Stack(StackOptions(work_dir=options.work_dir, registrants=options.registrants,
                                        sessions=options.sessions, speed=options.speed, seed=options.seed,
                                        service_env=options.service_env, replicas=options.replicas,
                                        registration_lead_hours=options.registration_lead_hours))
        #: Replicas killed and deliberately left down.
        self.retired: set[str] = set()
        #: The ingest replica the Kaltura sandbox posts its notifications to (Stack.route_notifications).
        self._notified = "ingest"
        self._pick = random.Random(options.seed + 1)
        self._next_hold_note = 0.0
        self.report = ChaosReport(options.registrants, options.sessions, options.seed)
        self.munchkin_id = ""

    # ------------------------------------------------------------------------------ the run
    def run(self) -> ChaosReport:
        opts = self.options
        started = SYSTEM_CLOCK.monotonic()
        try:
            self.stack.start()
            self.munchkin_id = next(i for i in http_json(f"{self.stack.marketo_url}/_sandbox/instances")
                                    if i["default"])["munchkinId"]
            if opts.fault_scale > 0:
                http_json(f"{self.stack.marketo_url}/_sandbox/faults",
                          fault_plan(opts.fault_scale).model_dump(mode="json", exclude_none=True), method="PUT")
            plan = schedule(opts.kills, opts.broker_restarts, self._windows(), random.Random(opts.seed))
            self.say(f"{len(plan)} disruptions: "
                     + ", ".join(f"{d.target}@{d.at:.0f}s" for d in plan))
            self.stack.play()
            self._disrupt_and_drain(plan, SYSTEM_CLOCK.monotonic() + opts.timeout)
        finally:
            self.report.seconds = SYSTEM_CLOCK.monotonic() - started
            self._census()
            self.stack.stop()
        return self.report

    def _windows(self) -> list[tuple[float, float]]:
        """When to disrupt, in seconds after play starts: first around the sessions' ends (their
        final figures, late rows, entry notifications, the sink writing most custom objects), then
        anywhere in the event."""
        status = self.stack.kaltura_status()
        speed = self.options.speed

        def at(iso: str) -> float:
            return _seconds_between(status["now"], iso) / speed
        playing = at(status["end"])
        ends = [at(s["end"]) for s in status["sessions"]] or [playing]
        return [(max(0.0, min(ends) - 5.0), max(ends) + 10.0), (0.0, playing * self.options.window_share)]

    def _disrupt_and_drain(self, plan: list[Disruption], deadline: float) -> None:
        t0 = SYSTEM_CLOCK.monotonic()
        pending = list(plan)
        last_summary: tuple[Any, ...] | None = None
        last_change = SYSTEM_CLOCK.monotonic()
        next_check = 0.0
        while SYSTEM_CLOCK.monotonic() < deadline:
            self._restart_unplanned_exits()
            while pending and SYSTEM_CLOCK.monotonic() - t0 >= pending[0].at:
                self._disrupt(pending.pop(0), SYSTEM_CLOCK.monotonic() - t0)
            now = SYSTEM_CLOCK.monotonic()
            if not pending and now >= next_check:
                next_check = now + 3.0
                if self.stack.kaltura_status()["finished"]:
                    self.report.finished = True
                    result = self._reconcile()
                    self.report.reconciliation = result
                    summary = tuple((t.kind, t.present, len(t.missing), len(t.duplicates), len(t.wrong))
                                    for t in result.tallies)
                    if result.clean:
                        self._note_held()
                        return
                    if summary != last_summary:
                        last_summary, last_change = summary, now
                        self.say("draining: " + "; ".join(f"{k} {p} present, {m} missing"
                                                          for k, p, m, _, _ in summary))
                    elif now - last_change >= self.options.settle and not self._sinks_still_hold(now):
                        self.say(f"nothing changed for {self.options.settle:.0f} s: stopping the drain")
                        return
            time.sleep(TICK_SECONDS)
        self._note_held()
        self.say("timed out")

    def _sinks_still_hold(self, now: float) -> bool:
        """The sinks still hold undecided operations (a retry's backoff, custom activities waiting out
        the verification delay, a call in flight) or have operations left to read (a sink restarting):
        a wait, not a stall, so the drain goes on (up to the timeout). Said once a minute; the last
        count goes into the report."""
        undecided, unread, verifying = self._note_held()
        if (undecided or unread) and now >= self._next_hold_note:
            self._next_hold_note = now + 60.0
            self.say(f"the sinks hold {undecided} undecided operation(s) ({verifying} custom activit(ies) awaiting "
                     f"verification) and have {unread} left to read: draining on")
        return undecided + unread > 0

    def _note_held(self) -> tuple[int, int, int]:
        """(operations the sinks read and have not decided, operations they have not read yet, custom
        activities awaiting verification), kept in the report."""
        text = self.stack.metrics("sink")
        held = (int(sample_sum(text, "kmsync_sink_undecided_records")),
                int(sample_sum(text, "kmsync_sink_consumer_lag_records")),
                int(sample_sum(text, "kmsync_sink_activities_awaiting_verification")))
        self.report.held_by_sinks = held
        return held

    def _disrupt(self, d: Disruption, at: float) -> None:
        procs = self.stack.processes
        assert procs is not None and self.stack.broker is not None
        if d.target == BROKER:
            self.say(f"{at:6.1f}s  broker: crash (SIGKILL) and restart on the same ports and data")
            restart_broker(self.stack.broker)
            self.report.broker_restarts += 1
            return
        alive = [name for name in self.stack.replicas(d.target) if name not in self.retired]
        child = procs.child(self._pick.choice(alive))
        self.report.kills[d.target] += 1
        if not self.options.restart_killed:
            procs.kill(child)
            self.retired.add(child.name)
            self.report.left_down.append(child.name)
            self.say(f"{at:6.1f}s  {child.name}: kill -9, left down ({len(alive) - 1} of its replicas go on)")
            if d.target == "ingest" and child.name == self._notified:
                # What a load balancer in front of ingest does once a replica is gone (Stack.route_notifications).
                self._notified = next(name for name in alive if name != child.name)
                self.stack.route_notifications(self._notified)
                self.say(f"{at:6.1f}s  Kaltura's notifications now go to {self._notified}")
            return
        self.say(f"{at:6.1f}s  {child.name}: kill -9, down {d.downtime:.1f} s, restart")
        procs.kill(child)
        time.sleep(d.downtime)  # the planned downtime itself
        procs.restart(child)
        procs.wait_http_ok(child, f"{self.stack.url(child.name)}/healthz", timeout=120)

    def _restart_unplanned_exits(self) -> None:
        procs = self.stack.processes
        assert procs is not None
        for child in procs.dead():
            if child.name in self.retired:
                continue
            if child.name not in self.stack.processes_of_services():
                raise RuntimeError(f"{child.name} exited ({child.process.returncode}):\n{child.log_tail()}")
            self.say(f"{child.name} exited on its own ({child.process.returncode}): restarting it\n"
                     f"{child.log_tail(8)}")
            self.report.unplanned_exits[child.name.split("-")[0]] += 1
            procs.restart(child)
        broker = self.stack.broker
        if broker is not None and not broker.is_running():
            raise RuntimeError(f"Kafka exited:\n{broker.log_tail()}")

    def _reconcile(self) -> Reconciliation:
        truth = http_json(f"{self.stack.kaltura_url}/_sandbox/truth")
        dump = http_json(f"{self.stack.marketo_url}/_sandbox/dump")
        return reconcile(truth, dump, PROGRAM_ID)

    # ------------------------------------------------------------------------------ census
    def _census(self) -> None:
        """What the sandboxes and the dead-letter topics say happened (best effort at the end)."""
        report = self.report
        try:
            stats = http_json(f"{self.stack.marketo_url}/_sandbox/faults/stats?instance={self.munchkin_id}")
            report.faults = {str(k): int(v) for k, v in stats.get("by_kind", {}).items()}
            report.notifications_given_up = int(self.stack.kaltura_status()["notifications"]["gave_up"])
        except (OSError, ValueError, KeyError) as exc:
            self.say(f"could not read the sandboxes' counters: {exc!r}")
        broker = self.stack.broker
        if broker is None or not broker.is_running():
            return
        found = census(broker.bootstrap, self.stack.options.topic_prefix)
        report.dead_letters = found.counts
        try:
            truth = http_json(f"{self.stack.kaltura_url}/_sandbox/truth")
        except (OSError, ValueError) as exc:
            self.say(f"could not read the Kaltura scenario's truth: {exc!r}")
            return
        report.dead_letters_explained = explain(Planted.from_truth(truth), found)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, every option's default after its help (an option whose default is
    None says in its help what happens without it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kmsync chaos", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--registrants", type=int, default=3000, help="registrants of the generated event")
    parser.add_argument("--sessions", type=int, default=4, help="sessions of the generated event")
    parser.add_argument("--speed", type=float, default=2000.0, help="scenario seconds per real second")
    parser.add_argument("--seed", type=int, default=7, help="seeds the event, the fault plan's schedule and the kills")
    parser.add_argument("--kills", default="ingest=2,transform=3,sink=3",
                        help="SIGKILLs per service, e.g. ingest=2,transform=3,sink=3")
    parser.add_argument("--broker-restarts", type=int, default=1, help="broker crashes and restarts")
    parser.add_argument("--registration-lead-hours", type=float, default=None,
                        help="scenario hours of registrations before the event (not given: the Kaltura "
                             "sandbox's 72)")
    parser.add_argument("--fault-scale", type=float, default=1.0,
                        help="multiplies the Marketo fault plan's rates (0: no faults)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before the run gives up")
    parser.add_argument("--settle", type=float, default=90.0,
                        help="stop draining when nothing changed for this many seconds")
    parser.add_argument("--replicas", type=int, default=1,
                        help="processes per service (a kill picks one of them)")
    parser.add_argument("--no-restart", action="store_true",
                        help="leave killed replicas down: the others must take over (needs --replicas "
                             "above each service's kills)")
    parser.add_argument("--work-dir", type=Path, default=Path(".chaos"),
                        help="logs, broker data and chaos-report.json go here (a fresh subdirectory per run)")
    args = parser.parse_args(argv)
    try:
        kills = parse_kills(args.kills)
    except ValueError as exc:
        parser.error(str(exc))
    work = args.work_dir / time.strftime("%Y%m%dT%H%M%S")
    try:
        options = ChaosOptions(work_dir=work, registrants=args.registrants, sessions=args.sessions,
                               speed=args.speed, seed=args.seed, kills=kills,
                               broker_restarts=args.broker_restarts, fault_scale=args.fault_scale,
                               timeout=args.timeout, settle=args.settle, replicas=max(1, args.replicas),
                               restart_killed=not args.no_restart,
                               registration_lead_hours=args.registration_lead_hours)
        fault_plan(options.fault_scale)  # a scale that makes a rate above 1 is refused here, not mid-run
    except ValueError as exc:
        parser.error(str(exc))
    print(f"chaos run in {work} (logs in {work}/logs)", flush=True)
    try:
        report = ChaosRun(options, lambda line: print(line, flush=True)).run()
    except (RuntimeError, OSError) as exc:  # the run could not be carried out: a failure, not a usage error
        print(f"kmsync chaos: {exc}", file=sys.stderr)
        return 1
    print()
    print(report.table())
    (work / "chaos-report.json").write_text(json.dumps(report.as_json(), indent=2))
    return 0 if report.passed else 1
