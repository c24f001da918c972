"""Windows close on count, bytes or age; offsets commit only past decided records."""

from __future__ import annotations

import random

from kmsync_sink.decisions import Decision, RetryPolicy, settle, to_dead_letter, to_outcome
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.window import CloseReason, Window, WindowLimits


def test_window_closes_on_count(ops) -> None:
    w = Window(WindowLimits(max_records=3, max_age_seconds=100, max_bytes=10**9))
    for i in range(2):
        w.add(ops.pending(ops.lead(f"a{i}@x.com")))
    assert w.due(now=1.0) is None
    w.add(ops.pending(ops.lead("a3@x.com")))
    assert w.due(now=1.0) is CloseReason.COUNT
    assert len(w.take(now=1.0)) == 3
    assert len(w) == 0 and w.size_bytes == 0


def test_window_closes_on_age_and_reports_deadline(ops) -> None:
    w = Window(WindowLimits(max_records=100, max_age_seconds=5, max_bytes=10**9))
    w.add(ops.pending(ops.lead("a@x.com"), arrived=10.0))
    assert w.due(now=14.9) is None
    assert w.next_deadline(now=14.9) == 15.0
    assert w.due(now=15.0) is CloseReason.AGE


def test_window_closes_on_bytes_and_take_respects_cap(ops) -> None:
    one = ops.pending(ops.lead("a@x.com"))
    w = Window(WindowLimits(max_records=100, max_age_seconds=100, max_bytes=one.size * 2 + 1))
    w.add(one)
    w.add(ops.pending(ops.lead("b@x.com")))
    assert w.due(now=0) is None
    w.add(ops.pending(ops.lead("c@x.com")))
    assert w.due(now=0) is CloseReason.BYTES
    assert len(w.take(now=0)) == 2 and len(w) == 1


def test_records_in_backoff_stay_out_of_the_window(ops) -> None:
    w = Window(WindowLimits(max_records=1, max_age_seconds=1, max_bytes=10**9))
    p = ops.pending(ops.lead("a@x.com"))
    p.not_before = 30.0
    w.add(p)
    assert w.due(now=10.0) is None
    assert w.take(now=10.0) == []
    assert w.next_deadline(now=10.0) == 30.0
    assert w.due(now=30.0) is CloseReason.COUNT


def test_window_drop_keeps_only_owned_partitions(ops) -> None:
    w = Window(WindowLimits(max_records=100, max_age_seconds=100, max_bytes=10**9))
    w.add(ops.pending(ops.lead("a@x.com"), partition=0))
    w.add(ops.pending(ops.lead("b@x.com"), partition=1))
    dropped = w.drop(keep={("marketo.ops.v1", 0)})
    assert [p.source.partition for p in dropped] == [1] and len(w) == 1


def test_offsets_commit_only_past_decided_records() -> None:
    t = OffsetTracker()
    for off in range(5):
        t.read("t", 0, off)
    assert t.committable("t", 0) == 0
    t.done("t", 0, 1)
    t.done("t", 0, 2)
    assert t.committable("t", 0) == 0, "offset 0 undecided: nothing may be committed"
    t.done("t", 0, 0)
    assert t.committable("t", 0) == 3
    moved = t.to_commit()
    assert moved == {("t", 0): 3}
    t.mark_committed(moved)
    assert t.to_commit() == {}
    t.done("t", 0, 4)
    assert t.committable("t", 0) == 3
    t.done("t", 0, 3)
    assert t.to_commit() == {("t", 0): 5}


def test_forgotten_partition_commits_nothing() -> None:
    t = OffsetTracker()
    t.read("t", 3, 7)
    t.forget("t", 3)
    assert t.committable("t", 3) is None and t.to_commit() == {}


def test_only_retryable_failures_are_retried_with_growing_backoff(ops) -> None:
    policy = RetryPolicy(max_attempts=3, base_seconds=1.0, max_seconds=100.0)
    rng = random.Random(1)
    ok = ops.pending(ops.lead("ok@x.com"))
    transient = ops.pending(ops.lead("t@x.com"))
    permanent = ops.pending(ops.lead("p@x.com"))
    for p in (ok, transient, permanent):
        p.attempts = 1
    final, retry = settle([
        Decision(ok, "created", marketo_id="5"),
        Decision(transient, "failed", reason_code="604", retryable=True),
        Decision(permanent, "failed", reason_code="1003", reason="Invalid data"),
    ], now=100.0, policy=policy, rng=rng)
    assert retry == [transient] and 100.5 <= transient.not_before <= 101.0
    assert {d.pending.op.email for d in final} == {"ok@x.com", "p@x.com"}
    transient.attempts = 3
    final, retry = settle([Decision(transient, "failed", reason_code="604", retryable=True)],
                          now=0.0, policy=policy, rng=rng)
    assert retry == [] and final[0].reason_code == "604", "attempts exhausted: dead-lettered"
    assert policy.backoff(3, random.Random(0)) >= 2.0


def test_outcome_and_dead_letter_mapping(ops) -> None:
    p = ops.pending(ops.status("x@y.com", "Attended"))
    p.attempts = 2
    d = Decision(p, "failed", reason_code="1025", reason="Program status not found")
    out = to_outcome(d, decided_at=p.op.source_time)
    assert (out.op_id, out.kind, out.status, out.reason_code, out.attempts) == (
        p.op.op_id, "program_member_status", "failed", "1025", 2)
    dl = to_dead_letter(d, failed_at=p.op.source_time)
    assert dl.stage == "sink" and dl.reason_code == "1025"
    assert (dl.source_topic, dl.source_partition, dl.source_offset) == (
        p.source.topic, p.source.partition, p.source.offset)
    assert isinstance(dl.payload, dict) and dl.payload["op_id"] == p.op.op_id
    assert "kmsync dlq replay" in dl.reason


def test_dlq_filters_match_letter_and_payload_fields(ops) -> None:
    import pytest

    from kmsync_sink.dlq_cli import matches, parse_filters

    p = ops.pending(ops.lead("a@x.com", op_id="op-9"))
    letter = to_dead_letter(Decision(p, "failed", reason_code="1003", reason="Invalid data"), p.op.source_time)
    assert matches(letter, parse_filters(["reason_code=1003", "munchkin_id=111-AAA-111"]))
    assert matches(letter, parse_filters(["reason_code=604", "reason_code=1003"])), "OR within a field"
    assert not matches(letter, parse_filters(["reason_code=1003", "kind=custom_activity"])), "AND across"
    with pytest.raises(ValueError, match="field=value"):
        parse_filters(["reason_code"])


def backlog(ops, n: int, limits: WindowLimits) -> Window:
    w = Window(limits)
    for i in range(n):
        w.add(ops.pending(ops.obj(f"u{i:03d}@x.com", op_id=f"op{i:03d}"), arrived=float(i % 7)))  # one size
    return w


def test_a_backlog_window_of_a_bulk_instance_takes_up_to_the_bulk_caps(ops) -> None:
    bulk = WindowLimits(max_records=10, max_age_seconds=100, max_bytes=10**9, bulk_max_records=25,
                        bulk_max_bytes=10**9)
    w = backlog(ops, 40, bulk)
    reason = w.due(now=0.0)
    assert reason is CloseReason.COUNT
    taken = w.take(now=0.0)
    assert len(taken) == 25 and len(w) == 15
    assert [p.arrived for p in taken] == sorted(p.arrived for p in taken), "oldest first"
    assert w.size_bytes == sum(p.size for p in w.drop())
    # Without bulk caps (threshold 0) the same backlog window holds window_max_records.
    plain = backlog(ops, 40, WindowLimits(max_records=10, max_age_seconds=100, max_bytes=10**9))
    assert plain.due(now=0.0) is CloseReason.COUNT
    assert len(plain.take(now=0.0)) == 10


def test_a_bulk_instance_window_closes_on_count_only_at_the_bulk_size(ops) -> None:
    """More than window_max_records but fewer than the bulk size is no reason to close yet: the
    window keeps filling (a fast loop would otherwise send each backlog slice over REST, under the
    bulk threshold) until the bulk size or its age limit."""
    bulk = WindowLimits(max_records=10, max_age_seconds=5, max_bytes=10**9, bulk_max_records=25,
                        bulk_max_bytes=10**9)
    w = backlog(ops, 15, bulk)
    assert w.due(now=0.0) is None
    assert w.due(now=100.0) is CloseReason.AGE
    plain = backlog(ops, 15, WindowLimits(max_records=10, max_age_seconds=5, max_bytes=10**9))
    assert plain.due(now=0.0) is CloseReason.COUNT


def test_bulk_caps_apply_to_every_window_of_a_bulk_instance_and_bound_bytes_too(ops) -> None:
    one = ops.pending(ops.obj("u000@x.com", op_id="op000")).size
    limits = WindowLimits(max_records=10, max_age_seconds=5, max_bytes=10**9, bulk_max_records=25,
                          bulk_max_bytes=one * 18 + 1)
    assert backlog(ops, 20, limits).due(now=0.0) is CloseReason.BYTES, "under the bulk count, over its bytes"
    w = backlog(ops, 40, limits)
    assert w.due(now=100.0) is CloseReason.COUNT
    assert len(w.take(now=100.0)) == 18, "the bulk byte cap"
    assert len(w.take(now=100.0)) == 18
    assert len(w.take(now=100.0)) == 4
