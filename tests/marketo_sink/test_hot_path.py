"""The sink's hot path (issue #22): windows kept ordered instead of sorted on every take, and outcome
metrics counted with one labelled child per series and call; each keeps what it did before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from kmsync_contracts import decode, encode, utc_now
from kmsync_contracts.outcomes import RecordOutcome
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import MARKETO_OPS
from kmsync_sink import decisions
from kmsync_sink.decisions import Decision, outcome_json, outcome_values, to_outcome
from kmsync_sink.metrics import SinkMetrics, observe_many
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.publishing import OutcomePublisher
from kmsync_sink.window import CloseReason, Window, WindowLimits

from .conftest import count_validations


def _window(max_records: int = 100, max_bytes: int = 10**9) -> Window:
    return Window(WindowLimits(max_records=max_records, max_age_seconds=5, max_bytes=max_bytes))


def test_a_retried_or_deferred_operation_goes_back_to_its_place_by_arrival(ops: Any) -> None:
    w = _window(max_records=3)
    late = [ops.pending(ops.lead(f"l{i}@x.com"), arrived=10.0 + i) for i in range(3)]
    for p in late:
        w.add(p)
    early = ops.pending(ops.lead("early@x.com"), arrived=1.0)
    w.extend([early])  # deferred by the planner: older than everything the window holds
    assert w.due(now=11.0) is CloseReason.COUNT
    assert [p.arrived for p in w.take(now=11.0)] == [1.0, 10.0, 11.0]
    assert [p.arrived for p in w.take(now=20.0)] == [12.0]
    assert len(w) == 0 and w.size_bytes == 0


def test_backoffs_end_in_order_and_join_the_ready_ones_at_their_arrival(ops: Any) -> None:
    w = _window()
    fresh = ops.pending(ops.lead("fresh@x.com"), arrived=50.0)
    retried = [ops.pending(ops.lead(f"r{i}@x.com"), arrived=float(i)) for i in range(3)]
    for p, not_before in zip(retried, (70.0, 60.0, 80.0), strict=True):
        p.not_before = not_before
    w.extend(retried)
    w.add(fresh)
    assert w.oldest_ready(now=55.0) == 50.0 and w.next_deadline(now=55.0) == 55.0
    assert [p.arrived for p in w.take(now=65.0)] == [1.0, 50.0]  # r1's backoff ended, r0's and r2's not
    assert w.next_deadline(now=65.0) == 70.0
    assert w.due(now=69.0) is None and len(w) == 2
    assert [p.arrived for p in w.take(now=80.0)] == [0.0, 2.0]


def test_take_stops_at_the_byte_cap_and_keeps_the_rest_ordered(ops: Any) -> None:
    first = ops.pending(ops.lead("a@x.com"), arrived=1.0)
    w = _window(max_bytes=first.size * 2)
    w.add(first)
    for i, email in enumerate(("b@x.com", "c@x.com", "d@x.com")):
        w.add(ops.pending(ops.lead(email), arrived=2.0 + i))
    assert w.due(now=4.0) is CloseReason.BYTES
    assert [p.arrived for p in w.take(now=4.0)] == [1.0, 2.0]
    assert [p.arrived for p in w] == [3.0, 4.0] and w.size_bytes == sum(p.size for p in w)


def test_drop_keeps_waiting_and_ready_operations_of_kept_partitions(ops: Any) -> None:
    w = _window()
    kept_waiting = ops.pending(ops.lead("w@x.com"), arrived=1.0, partition=0)
    kept_waiting.not_before = 100.0
    w.extend([kept_waiting, ops.pending(ops.lead("r@x.com"), arrived=2.0, partition=0),
              ops.pending(ops.lead("gone@x.com"), arrived=3.0, partition=1)])
    dropped = w.drop(keep={("marketo.ops.v1", 0)})
    assert [p.op.email for p in dropped] == ["gone@x.com"]
    assert len(w) == 2 and w.size_bytes == kept_waiting.size + next(iter(w)).size
    assert w.next_deadline(now=3.0) == 7.0 and [p.arrived for p in w.take(now=100.0)] == [1.0, 2.0]


def test_offsets_read_out_of_order_still_commit_only_past_decided_records() -> None:
    t = OffsetTracker()
    for off in (5, 6, 2, 7):  # 2 behind what was read (a seek back): it goes to its place
        t.read("t", 0, off)
    assert t.committable("t", 0) == 2
    for off in (2, 5):
        t.done("t", 0, off)
    assert t.committable("t", 0) == 6
    t.done("t", 0, 6)
    t.done("t", 0, 7)
    assert t.committable("t", 0) == 8


def test_outcome_metrics_take_one_child_per_series_and_call(ops: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = SinkMetrics()
    publisher = OutcomePublisher("r", "d", OffsetTracker(), metrics)
    decisions = [Decision(ops.pending(ops.lead(f"a{i}@x.com")), "created") for i in range(5)]
    decisions += [Decision(ops.pending(ops.status(f"a{i}@x.com")), "updated") for i in range(3)]
    decisions.append(Decision(ops.pending(ops.lead("bad@x.com")), "failed", reason_code="1003"))
    asked: list[tuple[str, ...]] = []
    labels = metrics.outcomes.labels

    def counting(*values: str) -> Any:
        asked.append(values)
        return labels(*values)

    monkeypatch.setattr(metrics.outcomes, "labels", counting)
    publisher._count(decisions, utc_now())
    assert len(asked) == 3  # created leads, updated statuses, a failed lead: not one per record
    counted = {tuple(s.labels.values()): s.value for m in metrics.outcomes.collect() for s in m.samples
               if s.name.endswith("_total")}
    munchkin = decisions[0].pending.op.munchkin_id
    assert counted == {(munchkin, "lead_upsert", "created"): 5.0, (munchkin, "program_member_status", "updated"): 3.0,
                       (munchkin, "lead_upsert", "failed"): 1.0}
    latencies = [s.value for m in metrics.latency.collect() for s in m.samples if s.name.endswith("_count")]
    assert sorted(latencies) == [3.0, 5.0]


def _outcome_cases(ops: Any) -> list[tuple[Decision, int | None]]:
    return [
        (Decision(ops.pending(ops.lead("a@x.com")), "created", marketo_id="17", request_id="e4a1#18c"), None),
        (Decision(ops.pending(ops.activity("b@x.com", entry="1_e")), "created", marketo_id="g-1"), 9),
        (Decision(ops.pending(ops.obj("c@x.com")), "skipped", reason_code="1037", reason="lower step Zoë \u2028 \"q\" \x1f \\ /"), 12),
        (Decision(ops.pending(ops.status("d@x.com")), "failed", reason_code=ReasonCode.INSTANCE_UNKNOWN,
                  reason="not in the tenants file", retryable=True), None),
        (Decision(ops.pending(ops.lead("e@x.com")), "failed", reason_code="1003", reason=" padded by Marketo \n"), 3),
        (Decision(ops.pending(ops.lead("f@x.com")), "failed", reason_code="1003", reason="lone \ud800 surrogate"), 3),
    ]


def test_outcome_bytes_are_what_the_validated_contract_encodes_to(ops: Any) -> None:
    """The fast path (orjson of the fields, no model) writes the bytes of the validated model: UTC as Z,
    other offsets, microseconds or none, escapes; a padded reason and a ReasonCode as validation makes them."""
    times = [utc_now(), datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
             datetime(2026, 12, 6, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=-7, minutes=-30)))]
    assert tuple(outcome_values(_outcome_cases(ops)[0][0], times[0])) == tuple(RecordOutcome.model_fields)
    for decided_at in times:
        for d, known in _outcome_cases(ops):
            if "surrogate" in (d.reason or ""):  # orjson refuses it, and so does the contract, as before
                with pytest.raises(ValidationError):
                    to_outcome(d, decided_at, known)
                with pytest.raises(ValidationError):
                    outcome_json(d, decided_at, known)
                continue
            assert outcome_json(d, decided_at, known) == encode(to_outcome(d, decided_at, known))
    source = decode(MARKETO_OPS, encode(ops.lead("g@x.com").model_copy(
        update={"source_time": datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=timezone(timedelta(hours=2)))})))
    d = Decision(ops.pending(source), "updated", marketo_id="5")  # a source time as pydantic parsed it (TzInfo)
    assert outcome_json(d, times[0]) == encode(to_outcome(d, times[0]))


def test_an_outcome_of_valid_fields_is_not_validated_again(ops: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_validations(monkeypatch, RecordOutcome)
    now = utc_now()
    cases = _outcome_cases(ops)
    for d, known in cases[:3]:
        outcome_json(d, now, known)
    assert calls == []  # the first three need nothing of validation
    for d, known in cases[3:5]:
        outcome_json(d, now, known)
    assert len(calls) == 2  # a ReasonCode and a padded reason: validated as before


def test_an_outcome_validation_would_refuse_is_still_refused(ops: Any) -> None:
    d = Decision(ops.pending(ops.lead("a@x.com")), "created", marketo_id="0")  # lead id 0 from an odd answer
    with pytest.raises(ValidationError):
        outcome_json(d, utc_now())


def test_latencies_observed_together_are_the_histogram_of_observing_them_one_by_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    together, one_by_one = SinkMetrics(), SinkMetrics()
    values = [0.0, 0.1, 0.1000001, 0.5, 3.0, 86_400.0, 86_400.5, 1e9, 0.3] * 3
    batched = together.latency.labels("m", "lead_upsert")
    monkeypatch.setattr(batched, "observe", lambda *a: pytest.fail("observed one by one"))
    observe_many(batched, values)
    child = one_by_one.latency.labels("m", "lead_upsert")
    for v in values:
        child.observe(v)

    def samples(m: SinkMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in m.latency.collect() for s in f.samples
                if not s.name.endswith("_created")}

    got, want = samples(together), samples(one_by_one)
    assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k], rel=1e-12) for k in want)
    buckets = [v for (name, _), v in sorted(want.items()) if name.endswith("_bucket")]
    assert len(set(buckets)) > 4  # the values fall in several buckets, the +Inf one included


def test_the_outcome_fast_path_is_derived_from_the_contract() -> None:
    """outcome_json's checks are RecordOutcome's own (kmsync_contracts.trusted): every field understood,
    and only the identity fields the operation's contract validated under the same constraints are taken
    as given (tests/contracts/test_trusted.py shows a constraint the contract gains is checked)."""
    fast = decisions._OUTCOME
    assert fast.open and fast.orjson_writes, fast.reasons
    assert fast.given == {"op_id", "munchkin_id", "source_time", "partner_id", "virtual_event_id", "kind"}
