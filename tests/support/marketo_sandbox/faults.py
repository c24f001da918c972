"""Fault injection, deterministic under a seed, and the names injected faults are counted under.

Pure logic: which rule fires for a call, when the forced token expiry is due, and what kind a delivered
fault is counted as. The server delivers the faults and keeps the per-instance counts.
"""

from __future__ import annotations

import fnmatch
import math
import random
from collections.abc import Container
from dataclasses import dataclass

from .config import FaultConfig, FaultRule

APPLIED_PREFIX = "applied_then_failed:"
APPLIED_LATER_PREFIX = "applied_later:"
LATENCY_KIND = "latency"
TOKEN_EXPIRED_PREFIX = "token_expired:"  # + the code the client got for a token the fault plan expired


def fault_kind(error: str, applied: bool, later: bool = False) -> str:
    """The counter name of a delivered fault: the rule's ``error`` (``"606"``, ``"http_500"``, ``"drop"``),
    prefixed ``applied_then_failed:`` when the call ran before the error was answered, ``applied_later:`` when
    it runs after (``apply_after_seconds``)."""
    return f"{APPLIED_LATER_PREFIX}{error}" if later else f"{APPLIED_PREFIX}{error}" if applied else error


def token_expired_kind(code: str) -> str:
    """``token_expired:602`` (first use of a token the plan expired) or ``token_expired:601`` (later uses)."""
    return f"{TOKEN_EXPIRED_PREFIX}{code}"


def forced_expiry_due(next_at: float | None, every: float | None, now: float) -> tuple[float | None, int]:
    """→ (the boundary to expire tokens at, or None; how many boundaries passed since ``next_at``).

    Boundaries are ``next_at``, ``next_at + every``, … Several passed at once (nobody called in between)
    expire the same tokens as the first, so one expiry at the first boundary stands for all of them.
    """
    if next_at is None or every is None or now < next_at:
        return None, 0
    return next_at, math.floor((now - next_at) / every) + 1


@dataclass(frozen=True)
class FaultDecision:
    error: str | None = None
    latency_seconds: float = 0.0
    apply_then_fail: bool = False
    #: Answer the error now, run the call this many seconds later (None: not a late write).
    apply_after_seconds: float | None = None


class FaultInjector:
    """Rolls every rule that matches a call, in rule order, from one seeded RNG.

    The first firing rule with an ``error`` decides the error; later error-only rules are not rolled
    (so their ``max_count`` is kept); latencies of all firing rules add up.
    """

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self._seed = seed
        self._rng = random.Random(f"faults:{seed}")
        self._hits: list[int] = [0] * len(config.rules)

    def replace(self, config: FaultConfig) -> None:
        """Install a plan: its rules' ``max_count`` budgets and the RNG start afresh (the budgets belong to
        the rules of one plan). Nothing counted per instance is touched."""
        self.config = config
        self._rng = random.Random(f"faults:{self._seed}")
        self._hits = [0] * len(config.rules)

    def decide(self, instance: str, endpoint: str, ignore: Container[str] = ()) -> FaultDecision:
        """Roll the rules for one call. Rules whose ``error`` is in ``ignore`` cannot happen on this
        endpoint (Marketo codes on Identity) and are neither rolled nor charged to their ``max_count``."""
        error: str | None = None
        latency = 0.0
        apply_then_fail = False
        apply_after: float | None = None
        for i, rule in enumerate(self.config.rules):
            if not _matches(rule, instance, endpoint):
                continue
            if rule.error is not None and rule.error in ignore:
                continue
            if rule.max_count is not None and self._hits[i] >= rule.max_count:
                continue
            if rule.error is not None and error is not None and not rule.latency_seconds:
                continue  # an earlier rule already chose the error; leave this one's budget alone
            if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                continue
            self._hits[i] += 1
            latency += rule.latency_seconds
            if rule.error is not None and error is None:
                error = rule.error
                apply_then_fail, apply_after = rule.apply_then_fail, rule.apply_after_seconds
        return FaultDecision(error=error, latency_seconds=latency, apply_then_fail=apply_then_fail,
                             apply_after_seconds=apply_after)


def _matches(rule: FaultRule, instance: str, endpoint: str) -> bool:
    if rule.instance is not None and rule.instance.upper() != instance.upper():
        return False
    return fnmatch.fnmatchcase(endpoint, rule.endpoint)
