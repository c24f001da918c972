"""Statuses only move forward per (program, person): regressions and repeats are dropped."""

from __future__ import annotations

from typing import Any

from kmsync_transform.forward_only import ForwardOnly, Verdict, judge, person_key


def test_judge() -> None:
    assert judge(None, "Invited", 20) is Verdict.FORWARD
    assert judge(("Registered", 30), "Attended", 50) is Verdict.FORWARD
    assert judge(("Attended", 50), "Registered", 30) is Verdict.REGRESSION
    assert judge(("Attended", 50), "Attended", 50) is Verdict.REPEAT
    # same step, other status: Marketo only skips lower steps, so this is applied
    assert judge(("Confirmed", 40), "autoConfirmed", 40) is Verdict.FORWARD


def test_highest_step_is_kept_per_program_and_person() -> None:
    table: dict[str, Any] = {}
    rule = ForwardOnly(table)
    ann, bob = person_key("M", 1, "ann@x.io"), person_key("M", 1, "bob@x.io")
    ann_other_program = person_key("M", 2, "ann@x.io")
    assert rule.advance(ann, "Attended", 50) is Verdict.FORWARD
    assert rule.advance(ann, "Registered", 30) is Verdict.REGRESSION
    assert rule.advance(ann, "Attended", 50) is Verdict.REPEAT
    assert rule.current(ann) == ("Attended", 50)
    # other people and other programs are independent
    assert rule.advance(bob, "Registered", 30) is Verdict.FORWARD
    assert rule.advance(ann_other_program, "Registered", 30) is Verdict.FORWARD
    assert rule.advance(ann, "Un-registered", 80) is Verdict.FORWARD
    assert table[ann] == {"name": "Un-registered", "step": 80}
