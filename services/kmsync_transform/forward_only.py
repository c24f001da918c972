"""Statuses only move forward (docs/reference/marketo-api.md §6.1: a lower step is skipped with 1037).

Transform mirrors Marketo and drops a status before it costs a call: a regression (lower step than
the member already has) or a repeat (the same status name again). A different status on the same
step (Confirmed ↔ autoConfirmed, both 40) is not lower, so Marketo would apply it and so do we.
State is the highest status per (program, person), in any mutable mapping (a table of the app).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    FORWARD = "forward"
    REPEAT = "repeat"
    REGRESSION = "regression"


def person_key(munchkin_id: str, program_id: int, email: str) -> str:
    """The member identity: one lead (by normalised email) in one program of one instance."""
    return f"{munchkin_id}|{program_id}|{email}"


def judge(current: tuple[str, int] | None, name: str, step: int) -> Verdict:
    """Compare a new (status name, step) with the member's current one."""
    if current is None:
        return Verdict.FORWARD
    current_name, current_step = current
    if step < current_step:
        return Verdict.REGRESSION
    if step == current_step and name == current_name:
        return Verdict.REPEAT
    return Verdict.FORWARD


class ForwardOnly:
    """The highest step per (program, person), kept in `table` as {"name": ..., "step": ...}."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    def current(self, key: str) -> tuple[str, int] | None:
        value = self.table.get(key)
        if not value:
            return None
        return str(value["name"]), int(value["step"])

    def advance(self, key: str, name: str, step: int) -> Verdict:
        """Judge the status and, when it moves forward, record it as the member's current one."""
        verdict = judge(self.current(key), name, step)
        if verdict is Verdict.FORWARD:
            self.table[key] = {"name": name, "step": step}
        return verdict
