"""Fault injection, deterministic under a seed."""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass

from .config import FaultConfig, FaultRule


@dataclass(frozen=True)
class FaultDecision:
    error: str | None = None
    latency_seconds: float = 0.0
    apply_then_fail: bool = False


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
        self.config = config
        self._rng = random.Random(f"faults:{self._seed}")
        self._hits = [0] * len(config.rules)

    def decide(self, instance: str, endpoint: str) -> FaultDecision:
        error: str | None = None
        latency = 0.0
        apply_then_fail = False
        for i, rule in enumerate(self.config.rules):
            if not _matches(rule, instance, endpoint):
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
                apply_then_fail = rule.apply_then_fail
        return FaultDecision(error=error, latency_seconds=latency, apply_then_fail=apply_then_fail)


def _matches(rule: FaultRule, instance: str, endpoint: str) -> bool:
    if rule.instance is not None and rule.instance.upper() != instance.upper():
        return False
    return fnmatch.fnmatchcase(endpoint, rule.endpoint)
