"""A later write of a record must not overtake the retry of an earlier one (window.py): found while bounding lead
replays (docs/decisions.md, "A lead write Marketo may still be processing is replayed 90 s after it was sent, not 1 s").

Within a window the planner merges every upsert of an email into one input (planner.py), and one window per lane
runs at a time, the other lane waiting for the emails in flight (lanes.py). But a lead upsert that failed waits for
its retry in the window's backoff heap (decisions.settle sets ``not_before``); a later upsert of the same email that
arrived meanwhile was ready at once, so the next window sent the later one and the retry of the earlier one followed
it, writing older field values over newer ones. The window now holds a record's later writes with its retry and
hands them over together, in offset order, when the last of its retries may go.
"""

from __future__ import annotations

import random
from collections.abc import Hashable

import pytest

from kmsync_contracts.marketo_ops import MarketoOperation
from kmsync_sink import window as window_module
from kmsync_sink.decisions import Decision, RetryPolicy, settle
from kmsync_sink.window import Window, WindowLimits

from .conftest import OpFactory


def test_a_later_upsert_of_an_email_does_not_overtake_the_retry_of_an_earlier_one(ops: OpFactory) -> None:
    window = Window(WindowLimits(max_records=300, max_age_seconds=0, max_bytes=10**9))
    first = ops.pending(ops.lead("ann@example.com", firstName="Old"), arrived=0.0)
    window.add(first)
    assert window.take(0.0) == [first]
    first.attempts += 1  # the executor counts the attempt
    _, retry = settle([Decision(first, "failed", reason_code="604", reason="timed out", retryable=True)],
                      0.0, RetryPolicy(max_attempts=6, base_seconds=1.0, max_seconds=60.0), random.Random(1))
    window.extend(retry)
    second = ops.pending(ops.lead("ann@example.com", firstName="New"), arrived=0.1)
    window.add(second)

    assert window.take(0.2) == [], "nothing of ann goes out while an earlier upsert of hers waits for its retry"
    assert window.take(retry[0].not_before) == [first, second], "together, oldest first: the planner merges in order"


def _window() -> Window:
    return Window(WindowLimits(max_records=300, max_age_seconds=0, max_bytes=10**9))


def test_a_later_write_already_waiting_is_held_when_the_earlier_one_fails(ops: OpFactory) -> None:
    """The later upsert arrived while the first was in flight and sits ready; the first then fails."""
    window = _window()
    first = ops.pending(ops.lead("ann@example.com", firstName="Old"), arrived=0.0)
    window.add(first)
    assert window.take(0.0) == [first]
    second = ops.pending(ops.lead("ann@example.com", firstName="New"), arrived=0.1)
    bob = ops.pending(ops.lead("bob@example.com", firstName="Bob"), arrived=0.2)
    window.extend([second, bob])
    first.not_before = 5.0
    window.add(first)
    assert window.take(1.0) == [bob], "only ann's writes wait; bob's goes"
    assert len(window) == 2 and window.size_bytes == first.size + second.size
    assert window.take(5.0) == [first, second]
    assert len(window) == 0 and window.size_bytes == 0


def test_every_write_of_a_record_waits_for_its_last_retry(ops: OpFactory) -> None:
    """Two of a record's writes in backoff until different times (jitter): neither goes alone, or the one that
    went first could be the newer, overwritten later by the older one."""
    window = _window()
    older = ops.pending(ops.lead("ann@example.com", firstName="Old"), arrived=0.0)
    newer = ops.pending(ops.lead("ann@example.com", firstName="New"), arrived=0.1)
    older.not_before, newer.not_before = 9.0, 4.0
    window.extend([older, newer])
    assert window.take(4.0) == [] and window.take(8.9) == []
    assert window.take(9.0) == [older, newer]
    later = ops.pending(ops.lead("ann@example.com", firstName="Later"), arrived=10.0)
    window.add(later)
    assert window.take(10.0) == [later], "once the retries are out, ann's writes are not held any more"


def test_a_custom_object_record_is_held_by_its_dedupe_key_and_other_kinds_are_not(ops: OpFactory) -> None:
    window = _window()
    retried = ops.pending(ops.obj("ann@example.com", entry="1_abc", minutes=5), arrived=0.0)
    retried.not_before = 5.0
    window.add(retried)
    same = ops.pending(ops.obj("ann@example.com", entry="1_abc", minutes=9), arrived=1.0)
    other_session = ops.pending(ops.obj("ann@example.com", entry="1_xyz", minutes=3), arrived=1.0)
    status = ops.pending(ops.status("ann@example.com"), arrived=1.0)
    activity = ops.pending(ops.activity("ann@example.com", entry="1_abc"), arrived=1.0)
    window.extend([same, other_session, status, activity])
    assert set(map(id, window.take(1.0))) == {id(other_session), id(status), id(activity)}, (
        "statuses only move forward (§6.1) and activities are insert-only: order does not change what they write")
    assert window.take(5.0) == [retried, same]


def test_dropping_a_partition_keeps_the_others_writes_held(ops: OpFactory) -> None:
    window = _window()
    retried = ops.pending(ops.lead("ann@example.com", firstName="Old"), arrived=0.0, partition=0)
    retried.not_before = 5.0
    window.add(retried)
    later = ops.pending(ops.lead("ann@example.com", firstName="New"), arrived=1.0, partition=0)
    leaving = ops.pending(ops.lead("cy@example.com", firstName="Cy"), arrived=1.0, partition=1)
    window.extend([later, leaving])
    assert window.drop(keep={("marketo.ops.v1", 0)}) == [leaving]
    assert window.take(1.0) == []
    assert window.take(5.0) == [retried, later]


def test_a_retry_that_became_ready_and_is_held_again_is_counted_out_once(ops: OpFactory) -> None:
    """A retry whose backoff ended sits ready when a second write of its record goes into backoff: it waits
    again, and the record stays held until the second retry is out (not freed early by counting it twice)."""
    window = _window()
    first = ops.pending(ops.lead("ann@example.com", firstName="A"), arrived=0.0)
    first.not_before = 2.0
    window.add(first)
    assert window.oldest_ready(2.0) == 0.0  # the first retry's backoff ended: it is ready, not taken yet
    second = ops.pending(ops.lead("ann@example.com", firstName="B"), arrived=1.0)
    second.not_before = 6.0
    window.add(second)
    assert window.take(2.0) == []
    third = ops.pending(ops.lead("ann@example.com", firstName="C"), arrived=3.0)
    window.add(third)
    assert window.take(3.0) == [], "ann is held until her last retry may go"
    assert window.take(6.0) == [first, second, third]


def test_the_retries_of_one_window_look_at_the_ready_writes_once(ops: OpFactory,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog during Marketo trouble: a window's 300 failed upserts come back while 1,000 others wait. Each
    retry scanning the ready ones was 300,000 look-ups (50,000 ready and 3,000 retries took minutes); one pass
    per ``extend`` is 1,300."""
    window = _window()
    waiting = [ops.pending(ops.lead(f"w{i}@example.com", firstName="W"), arrived=1.0) for i in range(1_000)]
    retries = [ops.pending(ops.lead(f"r{i}@example.com", firstName="R"), arrived=0.0) for i in range(300)]
    for p in retries:
        p.not_before = 5.0
    window.extend(waiting)
    calls = 0
    real = window_module.same_record

    def counting(op: MarketoOperation) -> Hashable | None:
        nonlocal calls
        calls += 1
        return real(op)

    monkeypatch.setattr(window_module, "same_record", counting)
    window.extend(retries)
    assert calls <= len(retries) + len(waiting)
    assert window.take(1.0) == waiting[:300], "other emails go on"
    assert window.take(5.0) == retries, "the retries, oldest first, once their backoff ended"


def test_a_write_whose_backoff_ended_comes_back_ready_and_holds_nothing(ops: OpFactory) -> None:
    """An operation handed back after its backoff ended (the planner deferred it, the lane gate returned it)
    keeps its old ``not_before``: it is ready, and it does not hold the record's later writes."""
    window = _window()
    retried = ops.pending(ops.lead("ann@example.com", firstName="Old"), arrived=0.0)
    retried.not_before = 2.0
    window.add(retried)
    assert window.take(3.0) == [retried]
    later = ops.pending(ops.lead("ann@example.com", firstName="New"), arrived=1.0)
    window.extend([retried, later])  # deferred by the planner, both
    assert window.take(3.0) == [retried, later]
