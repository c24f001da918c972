"""The lane gate (lanes.py, issue #18), pure: one lane at a time per person, and never an older value over
a newer one across lanes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo.lanes import BACKFILL, LIVE
from kmsync_sink.lanes import LaneGate
from kmsync_sink.pending import PendingOp
from kmsync_sink.planner import object_key

from .conftest import T0


def _at(ops: Any, op: Any, minutes: int) -> Any:
    return op.model_copy(update={"emitted_at": T0 + timedelta(minutes=minutes)})


def test_a_person_the_other_lane_is_writing_waits_and_comes_back_when_it_ends(ops: Any) -> None:
    gate, resumed = LaneGate(), list[PendingOp]()
    gate.register(LIVE, resumed.extend)
    gate.register(BACKFILL, lambda ps: None)
    backfill = gate.admit(BACKFILL, [ops.pending(ops.lead("a@x.io")), ops.pending(ops.lead("b@x.io"))])
    assert len(backfill.send) == 2
    live = gate.admit(LIVE, [ops.pending(ops.status("a@x.io")), ops.pending(ops.status("c@x.io"))])
    assert [p.op.email for p in live.send] == ["c@x.io"] and live.waiting == 1
    assert not resumed and gate.waiting(LIVE) == 1
    gate.window_done(BACKFILL)
    assert [p.op.email for p in resumed] == ["a@x.io"] and gate.waiting(LIVE) == 0
    # Free now: the same person goes through.
    assert len(gate.admit(LIVE, resumed).send) == 1


def test_a_record_in_the_other_lanes_bulk_job_waits_for_the_job(ops: Any) -> None:
    gate, resumed = LaneGate(), list[PendingOp]()
    held = object_key(ops.obj("a@x.io"))
    gate.register(BACKFILL, lambda ps: None, holds=lambda key: key == held)
    gate.register(LIVE, resumed.extend)
    live = gate.admit(LIVE, [ops.pending(ops.obj("a@x.io")), ops.pending(ops.obj("b@x.io"))])
    assert [p.op.email for p in live.send] == ["b@x.io"] and live.waiting == 1
    gate.job_done(BACKFILL)
    assert [p.op.email for p in resumed] == ["a@x.io"]


def test_an_upsert_emitted_before_one_the_other_lane_sent_is_superseded(ops: Any) -> None:
    gate = LaneGate()
    for lane in (LIVE, BACKFILL):
        gate.register(lane, lambda ps: None)
    older = ops.pending(_at(ops, ops.obj("a@x.io", plays=1), 0))
    newer = ops.pending(_at(ops, ops.obj("a@x.io", plays=2), 5))
    assert gate.admit(LIVE, [newer]).send == [newer]
    gate.window_done(LIVE)
    out = gate.admit(BACKFILL, [older])
    assert out.send == [] and [d.pending for d in out.superseded] == [older]
    assert {(d.status, d.reason_code) for d in out.superseded} == {("skipped", ReasonCode.SUPERSEDED)}
    gate.window_done(BACKFILL)
    # Emitted later than what live sent: a newer value, written.
    later = ops.pending(_at(ops, ops.obj("a@x.io", plays=3), 9))
    assert gate.admit(BACKFILL, [later]).send == [later]
    gate.window_done(BACKFILL)
    # Within one lane Kafka's order is transform's: never superseded by the lane itself.
    assert gate.admit(BACKFILL, [older]).send == [older]
    # Another record, another entry.
    other = ops.pending(_at(ops, ops.obj("a@x.io", entry="1_other", plays=1), 0))
    gate.window_done(BACKFILL)
    assert gate.admit(LIVE, [other]).send == [other]


def test_the_gate_forgets_the_oldest_records_beyond_its_bound(ops: Any) -> None:
    gate = LaneGate(remember=2)
    for lane in (LIVE, BACKFILL):
        gate.register(lane, lambda ps: None)
    first = _at(ops, ops.obj("a@x.io"), 5)
    gate.admit(LIVE, [ops.pending(first)] + [ops.pending(_at(ops, ops.obj(f"{i}@x.io"), 5)) for i in range(2)])
    gate.window_done(LIVE)
    assert gate.admit(BACKFILL, [ops.pending(_at(ops, ops.obj("a@x.io"), 0))]).send  # forgotten: sent


def test_a_stop_returns_what_waits(ops: Any) -> None:
    gate = LaneGate()
    for lane in (LIVE, BACKFILL):
        gate.register(lane, lambda ps: None)
    gate.admit(BACKFILL, [ops.pending(ops.lead("a@x.io"))])
    waiting: PendingOp = ops.pending(ops.status("a@x.io"))
    gate.admit(LIVE, [waiting])
    assert gate.drop(LIVE) == [waiting] and gate.waiting(LIVE) == 0
