"""The sink's per-call and per-batch paths (issue #22, session 11) against the per-record paths they replace:
the same bytes, the same offsets, the same shaped records, for a varied set of operations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from kmsync_contracts import encode, utc_now
from kmsync_contracts.marketo_ops import ProgramMemberData
from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo.errors import ErrorClass
from kmsync_marketo.lead_schema import LeadShaped, shape_lead
from kmsync_marketo.outcomes import Outcome
from kmsync_marketo.schema import (
    ENGAGEMENT_OBJECT,
    SYSTEM_FIELDS,
    FieldInfo,
    ObjectSchema,
    Shaped,
    cut,
    shape_record,
)
from kmsync_sink.decisions import Decision, outcome_json, outcome_jsons, to_dead_letter, to_outcome
from kmsync_sink.durable import Message
from kmsync_sink.executor import WindowExecutor
from kmsync_sink.memory import ActivityWrites, LeadCache
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.offsets import OffsetTracker
from kmsync_sink.publishing import OutcomePublisher

from .conftest import MUNCHKIN


def _decisions(ops: Any) -> list[Decision]:
    """Every kind and status, ids the outcome takes from the answer or the cache, sessions present and absent,
    attempts 0-3, and values only validation takes as they come (a ReasonCode, a padded reason)."""
    obj_no_entry = ops.obj("h@x.com", entry="")
    out = [
        Decision(ops.pending(ops.lead("a@x.com")), "created", marketo_id="17", request_id="e4a1#18c"),
        Decision(ops.pending(ops.lead("b@x.com")), "updated", marketo_id="not-a-number"),
        Decision(ops.pending(ops.lead("c@x.com")), "failed", marketo_id="18", reason_code="1003",
                 reason="lead refused", retryable=False),
        Decision(ops.pending(ops.activity("d@x.com", entry="1_e")), "created", marketo_id="g-1", request_id="r#1"),
        Decision(ops.pending(ops.obj("e@x.com", entry="1_f")), "skipped", reason_code="1037",
                 reason="lower step Zoë \u2028 \"q\" \x1f \\ /"),
        Decision(ops.pending(obj_no_entry), "updated", marketo_id="guid-2"),
        Decision(ops.pending(ops.status("f@x.com")), "failed", reason_code=ReasonCode.INSTANCE_UNKNOWN,
                 reason="not in the tenants file", retryable=True),
        Decision(ops.pending(ops.status("g@x.com", status="Attended")), "updated", api="bulk"),
        Decision(ops.pending(ops.lead("i@x.com")), "failed", reason_code="1003", reason=" padded by Marketo \n"),
        Decision(ops.pending(ops.lead("j@x.com")), "skipped", marketo_id="007", reason_code="1005",
                 reason="Lead already exists"),
        Decision(ops.pending(ProgramMemberData(**ops._base("k@x.com", MUNCHKIN, None), program_id=1001,
                                               granular_status="Pre-event visit", label_rank=(3, 1))),
                 "updated", request_id="r#9"),
    ]
    for i, d in enumerate(out):
        d.pending.attempts = i % 4
    return out


def _known(ops_known: dict[str, int]) -> Callable[[str, str], int | None]:
    return lambda munchkin_id, email: ops_known.get(email)


@pytest.mark.parametrize("decided_at", [
    datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
    datetime(2026, 12, 6, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
])
def test_a_calls_outcomes_are_the_bytes_of_each_validated_outcome(ops: Any, decided_at: datetime) -> None:
    decisions = _decisions(ops)
    known = {"a@x.com": 99, "b@x.com": 4, "c@x.com": 5, "d@x.com": 6, "f@x.com": 7}
    written = outcome_jsons(decisions, decided_at, _known(known))
    expected = [encode(to_outcome(d, decided_at, known.get(d.pending.op.email))) for d in decisions]
    assert written == expected
    assert written == [outcome_json(d, decided_at, known.get(d.pending.op.email)) for d in decisions]
    assert b'"lead_id":17' in written[0]  # a lead upsert's own id, not the cache's 99


def test_a_call_with_an_outcome_validation_refuses_is_refused_as_one_by_one(ops: Any) -> None:
    lone = Decision(ops.pending(ops.lead("a@x.com")), "failed", reason_code="1003", reason="lone \ud800 surrogate")
    zero = Decision(ops.pending(ops.lead("b@x.com")), "created", marketo_id="0")  # lead id 0 from an odd answer
    for d in (lone, zero):
        with pytest.raises(ValidationError):
            outcome_json(d, utc_now())
        with pytest.raises(ValidationError):
            outcome_jsons([_decisions(ops)[0], d], utc_now(), _known({}))


def test_a_publications_messages_are_each_decisions_outcome_and_dead_letter(ops: Any) -> None:
    publisher = OutcomePublisher("results", "dlq", OffsetTracker(), SinkMetrics())
    known = {"a@x.com": 99, "d@x.com": 6}
    publisher.known_lead_id = _known(known)
    decisions = _decisions(ops)
    now = utc_now()
    expected: list[Message] = []
    for d in decisions:
        key = d.pending.op.munchkin_id.encode()
        expected.append(Message("results", encode(to_outcome(d, now, known.get(d.pending.op.email))), key))
        if d.failed:
            expected.append(Message("dlq", encode(to_dead_letter(d, now)), key))
    assert publisher._messages(decisions, now) == expected


def test_offsets_marked_done_together_are_those_marked_one_by_one() -> None:
    reads = [("a", 0, o) for o in range(10)] + [("a", 1, o) for o in range(5)] + [("b", 0, o) for o in range(4)]
    done = [("a", 0, 3), ("a", 1, 0), ("a", 0, 0), ("a", 0, 1), ("b", 0, 0), ("a", 1, 1), ("a", 0, 2),
            ("c", 9, 1), ("a", 0, 7), ("b", 0, 1)]
    one, many = OffsetTracker(), OffsetTracker()
    for t in (one, many):
        for r in reads:
            t.read(*r)
    for d in done:
        one.done(*d)
    many.done_many(done)  # type: ignore[arg-type]
    for tp in (("a", 0), ("a", 1), ("b", 0)):
        assert many.committable(*tp) == one.committable(*tp)
        assert many.open_count(*tp) == one.open_count(*tp)
    assert many.committable("a", 0) == 4 and many.committable("a", 1) == 2 and many.committable("b", 0) == 2


# ----- shaping: the fast path against ``cut`` applied to every value (what shaping did before session 11)
def _shaped_by_cut(values: dict[str, Any], lookup: Callable[[str], FieldInfo | None]) -> Shaped:
    out: dict[str, Any] = {}
    omitted: list[str] = []
    truncated: list[tuple[str, int, int]] = []
    for name, value in values.items():
        info = lookup(name)
        if info is None:
            omitted.append(name)
            continue
        new, before = cut(value, info)
        if before is not None:
            truncated.append((info.name, before, len(new.encode()) if info.data_type == "text" else len(new)))
        out[info.name] = new
    return Shaped(out, tuple(omitted), tuple(truncated))


_VALUES: list[Any] = ["", "short", "x" * 10, "x" * 11, "é" * 10, "é" * 11, "€" * 300, "€" * 1000, "a" * 255,
                      "a" * 256, 7, 7.5, True, None, 12345678901]


def _object() -> ObjectSchema:
    return ObjectSchema(ENGAGEMENT_OBJECT, "eng_c", "", {
        "entry_id": FieldInfo("entry_id", "string"), "leadLink": FieldInfo("leadLink", "link"),
        "entry_name": FieldInfo("entry_name", "string", 10), "notes": FieldInfo("notes", "text", 1000),
        "plays": FieldInfo("plays", "integer"), "site": FieldInfo("site", "url", 11),
        "marketoGUID": FieldInfo("marketoGUID", "string"),
    }, ("entry_id", "leadLink"), "leadLink", ("Lead", "id"))


def test_a_shaped_record_is_what_cutting_every_value_gives() -> None:
    obj = _object()
    names = ["entry_id", "personId", "entry_name", "notes", "plays", "site", "marketoGUID", "no_such_field"]
    assert "marketoGUID" in SYSTEM_FIELDS
    for value in _VALUES:
        record = {n: value for n in names}
        assert shape_record(obj, record) == _shaped_by_cut(record, obj._find_writable)
    assert shape_record(obj, {"entry_name": "x" * 11}).truncated == (("entry_name", 11, 10),)
    assert shape_record(obj, {"notes": "€" * 1000}).truncated == (("notes", 3000, 999),)


def _lead_by_cut(fields: dict[str, FieldInfo], record: dict[str, Any]) -> LeadShaped:
    values: dict[str, Any] = {}
    dropped: list[tuple[str, str]] = []
    truncated: list[tuple[str, int, int]] = []
    for name, value in record.items():
        info = fields.get(name)
        if name == "email" or (info is not None and info.updateable and value is None):
            values[name] = value
            continue
        if info is None or not info.updateable:
            dropped.append((name, "no such lead field in this instance" if info is None else "read-only"))
            continue
        new, before = cut(value, info)
        if before is not None:
            truncated.append((name, before, len(new.encode()) if info.data_type == "text" else len(new)))
        values[name] = new
    return LeadShaped(values, tuple(dropped), tuple(truncated))


def test_a_shaped_lead_is_what_cutting_every_value_gives() -> None:
    fields = {"email": FieldInfo("email", "email"), "title": FieldInfo("title", "string", 10),
              "bio": FieldInfo("bio", "text", 1000), "score": FieldInfo("score", "integer"),
              "site": FieldInfo("site", "url"), "locked": FieldInfo("locked", "string", updateable=False)}
    for value in _VALUES:
        record = {"email": "a@x.com", "title": value, "bio": value, "score": value, "site": value,
                  "locked": value, "missing": value}
        assert shape_lead(fields, record) == _lead_by_cut(fields, record)


# ----- a call's decisions: answered records decided without the failure and note layers
class _Schema:
    def __init__(self) -> None:
        self.stale = 0

    def mark_stale(self) -> None:
        self.stale += 1


def test_an_answered_record_is_decided_as_the_three_layers_decide_it(ops: Any) -> None:
    outcomes = [Outcome(seq=0, status="created", marketo_id="g-1", request_id="r#1"),
                Outcome(seq=0, status="updated", marketo_id="g-2"),
                Outcome(seq=0, status="skipped", reason_code="1037", reason="lower step", marketo_status="skipped"),
                Outcome(seq=0, status="failed", reason_code="1004", reason="lead not found",
                        classification=ErrorClass.RETRY_SOON),
                Outcome(seq=0, status="failed", reason_code="1006", reason="field not found",
                        classification=ErrorClass.PERMANENT),
                Outcome(seq=0, status="failed", reason_code="1003", reason="bad value",
                        classification=ErrorClass.PERMANENT)]
    shapes = [None, Shaped({}), Shaped({}, truncated=(("entry_name", 53, 40),)), Shaped({}, omitted=("x",))]

    def executor(with_schema: bool) -> WindowExecutor:
        schema = _Schema() if with_schema else None
        out = WindowExecutor(object(), LeadCache(10), ActivityWrites(), schema=schema)  # type: ignore[arg-type]
        out.cache.put("a@x.com", 5)
        return out

    for with_schema in (False, True):
        for o in outcomes:
            for shaped in shapes:
                p = ops.pending(ops.obj("a@x.com"))
                slow, fast = executor(with_schema), executor(with_schema)
                layered = slow._noted(slow._schema_aware(slow._stale_aware(p, o, "a@x.com"), o), shaped)
                assert fast._decided(p, o, "a@x.com", shaped) == layered
                # ... and with the layers' side effects: a gone lead's cached id forgotten (1004), a schema
                # marked stale (1006): skipped, the record would be retried with the same stale id.
                assert fast.cache.peek("a@x.com") == slow.cache.peek("a@x.com"), (o.reason_code, shaped)
                if with_schema:
                    assert fast.schema.stale == slow.schema.stale, (o.reason_code, shaped)  # type: ignore[union-attr]
