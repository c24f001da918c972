"""The sink's per-call and per-batch paths (issue #22, session 11) against the per-record paths they replace:
the same bytes, the same offsets, the same shaped records, for a varied set of operations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
from kmsync_sink.executor import WindowExecutor
from kmsync_sink.memory import ActivityWrites, LeadCache


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
    for schema in (None, _Schema()):
        executor = WindowExecutor(object(), LeadCache(10), ActivityWrites(), schema=schema)  # type: ignore[arg-type]
        for o in outcomes:
            for shaped in shapes:
                p = ops.pending(ops.obj("a@x.com"))
                executor.cache.put("a@x.com", 5)
                layered = executor._noted(executor._schema_aware(executor._stale_aware(p, o, "a@x.com"), o), shaped)
                executor.cache.put("a@x.com", 5)
                assert executor._decided(p, o, "a@x.com", shaped) == layered
