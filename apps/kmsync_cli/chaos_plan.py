"""What a chaos run does and what it found: the plan, the disruption schedule, the report. Pure.

`kmsync chaos` (chaos.py) runs the whole stack, carries out the schedule made here and fills in the
report; keeping the decisions here lets them be tested without starting anything.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kmsync_cli.reconcile import Reconciliation
from kmsync_cli.stack import SERVICES
from marketo_sandbox.config import FaultConfig, FaultKind, FaultRule

#: A chaos run kills the services (stack.SERVICES); "broker" is the Kafka broker's restart.
BROKER = "broker"


def parse_kills(text: str) -> dict[str, int]:
    """``"sink=3,transform=3,ingest=2"`` → {"sink": 3, ...}; a precise ValueError otherwise."""
    kills = dict.fromkeys(SERVICES, 0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, count = part.partition("=")
        if not sep or name not in SERVICES:
            raise ValueError(f"--kills: {part!r} is not SERVICE=COUNT with SERVICE one of {', '.join(SERVICES)}")
        if not count.isdigit():
            raise ValueError(f"--kills: the count of {name} must be a whole number ≥ 0, got {count!r}")
        kills[name] = int(count)
    return kills


#: Faults that may come after the write happened (half of each kind's rate is "applied, then failed").
AMBIGUOUS_KINDS: tuple[FaultKind, ...] = ("604", "608", "611", "http_503", "http_500", "drop")
IDENTITY_KINDS: tuple[FaultKind, ...] = ("drop", "http_503")


def fault_plan(scale: float = 1.0) -> FaultConfig:
    """The Marketo sandbox fault plan of issue #13's run (PUT /_sandbox/faults), rates × `scale`:
    606 10 %, 615 5 %, each of 604/608/611/HTTP 503/HTTP 500 1 % (half of them applied, then
    failed: the write happened but the answer is an error), dropped connections 1 % (half after the
    write); the token endpoint drops or answers 503 1 % each; access tokens live 60 s and every
    token is forcibly expired every 20 s. A scale that pushes a rate above 1 is a ValueError."""
    rules: list[FaultRule] = []
    for endpoint in ("* /rest/*", "* /bulk/*"):
        rules += [FaultRule(endpoint=endpoint, error="606", rate=0.10 * scale),
                  FaultRule(endpoint=endpoint, error="615", rate=0.05 * scale)]
        for error in AMBIGUOUS_KINDS:
            rules += [FaultRule(endpoint=endpoint, error=error, rate=0.005 * scale),
                      FaultRule(endpoint=endpoint, error=error, rate=0.005 * scale, apply_then_fail=True)]
    rules += [FaultRule(endpoint="* /identity/*", error=error, rate=0.01 * scale) for error in IDENTITY_KINDS]
    return FaultConfig(rules=rules, token_ttl_seconds=60, token_expire_every_seconds=20)


@dataclass(frozen=True)
class Disruption:
    #: Seconds after the event starts playing.
    at: float
    #: A service name (killed with SIGKILL) or "broker" (the broker crashes and restarts).
    target: str
    #: Seconds the target stays down before it is started again with the same command line.
    downtime: float


def schedule(kills: dict[str, int], broker_restarts: int, windows: list[tuple[float, float]],
             rng: random.Random, gap: float = 3.0) -> list[Disruption]:
    """Every kill and broker restart at a random point of one of `windows` (seconds after the
    event starts playing), in time order, at least `gap` seconds apart so each restart is its own
    event. Each target's disruptions go to the windows in turn, the first to the first window:
    give the most dangerous stretch first (sessions ending, late rows, the sink's drain), where a
    restart must carry state it has only just acquired. The broker's turns start at the second."""
    placed: list[tuple[float, str]] = []
    # The broker starts in the second window: its restart (tens of seconds of log recovery) stalls
    # everything, and would push the services' disruptions out of the first.
    turns = [(name, i) for name, n in kills.items() for i in range(n)]
    turns += [(BROKER, i + 1) for i in range(broker_restarts)]
    for name, i in turns:
        low, high = windows[i % len(windows)]
        placed.append((rng.uniform(low, max(low, high)), name))
    placed.sort()
    out: list[Disruption] = []
    for at, name in placed:
        if out and at - out[-1].at < gap:
            at = out[-1].at + gap
        out.append(Disruption(at=round(at, 2), target=name, downtime=round(rng.uniform(0.2, 3.0), 2)))
    return out


@dataclass
class ChaosReport:
    registrants: int
    sessions: int
    seed: int
    seconds: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    broker_restarts: int = 0
    #: Processes that exited without being killed (restarted like a kill; never expected).
    unplanned_exits: Counter[str] = field(default_factory=Counter)
    #: Counted by the Marketo sandbox, by kind.
    faults: dict[str, int] = field(default_factory=dict)
    #: (stage, reason code) → dead letters on the three dead-letter topics.
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Webhook deliveries the Kaltura sandbox gave up on (each one a notification ingest never got).
    notifications_given_up: int = 0
    reconciliation: Reconciliation | None = None
    finished: bool = False
    #: Replicas killed and left down (chaos --no-restart).
    left_down: list[str] = field(default_factory=list)
    #: The dead letters in words, against what the scenario planted (dead_letters.explain).
    dead_letters_explained: list[str] = field(default_factory=list)
    #: What the sinks still held when the drain ended: (operations read and undecided, operations not
    #: read yet, custom activities awaiting verification). Held is not lost: they are decided later (or replayed).
    held_by_sinks: tuple[int, int, int] = (0, 0, 0)

    @property
    def passed(self) -> bool:
        """0 missing, 0 duplicates, 0 wrong in every kind, after the event finished."""
        return self.finished and self.reconciliation is not None and self.reconciliation.clean

    def table(self) -> str:
        lines = [f"chaos run: {self.registrants} registrants, {self.sessions} sessions, seed {self.seed}, "
                 f"{self.seconds:.0f} s"]
        kills = ", ".join(f"{name} {self.kills[name]}" for name in SERVICES)
        lines.append(f"kills (SIGKILL, restarted): {kills}; broker restarts {self.broker_restarts}")
        if self.left_down:
            lines.append(f"killed and left down (the other replicas took over): {', '.join(self.left_down)}")
        unplanned = ", ".join(f"{k} {v}" for k, v in sorted(self.unplanned_exits.items())) or "none"
        lines.append(f"unplanned exits (restarted): {unplanned}")
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()) if v) or "none"
        lines.append(f"Marketo faults injected: {faults} (total {sum(self.faults.values())})")
        lines.append(f"Kaltura notifications given up: {self.notifications_given_up}")
        letters = ", ".join(f"{stage}/{code} {n}" for (stage, code), n in sorted(self.dead_letters.items()))
        lines.append(f"dead letters: {letters or 'none'}")
        lines += self.dead_letters_explained
        lines.append("")
        if self.reconciliation is not None:
            lines += [*self.reconciliation.table(), *self.reconciliation.details()]
        if not self.finished:
            lines.append("the event did not finish draining before the timeout")
        if any(self.held_by_sinks):
            undecided, unread, verifying = self.held_by_sinks
            lines.append(f"held by the sinks at the end (undecided, not lost): {undecided} operation(s), "
                         f"{unread} not read yet, "
                         f"{verifying} custom activit(ies) awaiting verification")
        lines.append("CHAOS PASSED: 0 missing, 0 duplicates, 0 wrong" if self.passed else "CHAOS FAILED")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        tallies = [] if self.reconciliation is None else [
            {"kind": t.kind, "expected": t.expected, "present": t.present, "missing": len(t.missing),
             "duplicates": len(t.duplicates), "wrong": len(t.wrong), "unexpected": len(t.unexpected)}
            for t in self.reconciliation.tallies]
        return {
            "registrants": self.registrants, "sessions": self.sessions, "seed": self.seed,
            "seconds": round(self.seconds, 1), "kills": dict(self.kills), "broker_restarts": self.broker_restarts,
            "unplanned_exits": dict(self.unplanned_exits), "left_down": self.left_down, "faults": self.faults,
            "notifications_given_up": self.notifications_given_up,
            "dead_letters": {f"{s}/{c}": n for (s, c), n in sorted(self.dead_letters.items())},
            "kinds": tallies, "finished": self.finished, "passed": self.passed,
            "held_by_sinks": {"undecided": self.held_by_sinks[0], "unread": self.held_by_sinks[1],
                              "awaiting_verification": self.held_by_sinks[2]},
        }
