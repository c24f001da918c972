"""Poll slots follow the poll's position in its session as ingest stamps it (docs/reference/kaltura-api.md
§11, docs/design/granular-statuses.md §5), not the order in which transform sees the polls."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from kmsync_config.tenants import TenantsConfig
from kmsync_contracts import PollResponse, encode
from kmsync_contracts.marketo_ops import CustomObjectUpsert
from kmsync_contracts.topics import POLL_RESPONSES
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.engine_lean import LeanTransform
from kmsync_transform.routing import route
from kmsync_transform.settings import TransformSettings
from kmsync_transform.transformer import StepResult, Transformer, TransformState

from .conftest import T0

QUESTIONS = {f"p{i}": f"Question {i}?" for i in range(1, 12)}


def positioned(poll_record: Callable[..., PollResponse], poll: str, position: int, **kw: Any) -> PollResponse:
    record = poll_record(poll, question=QUESTIONS[poll], **kw)
    return record.model_copy(update={"poll_position": position})


def run(tenants: TenantsConfig, records: list[PollResponse], state: TransformState | None = None) -> list[StepResult]:
    transformer = Transformer(tenants, state or TransformState.in_memory(), clock=lambda: T0)
    results = []
    for record in records:
        results.append(transformer.apply(_routed(tenants, record)))
    return results


def last_records(results: list[StepResult]) -> dict[str, dict[str, Any]]:
    """The last polls record written per person (email)."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        for op in r.ops:
            assert isinstance(op, CustomObjectUpsert)
            out[op.email] = dict(op.record)
    return out


def test_the_slot_is_the_position_not_the_arrival_order(
    tenants: TenantsConfig, poll_record: Callable[..., PollResponse],
) -> None:
    # Arrival order p3, p1, p2: numbered by arrival (the old rule), p3 would be poll_1.
    results = run(tenants, [positioned(poll_record, "p3", 3), positioned(poll_record, "p1", 1),
                            positioned(poll_record, "p2", 2)])
    record = last_records(results)["ann@example.com"]
    assert [record[f"poll_{n}_question"] for n in (1, 2, 3)] == ["Question 1?", "Question 2?", "Question 3?"]


def test_the_same_slots_after_a_rebuild_in_another_order(
    tenants: TenantsConfig, poll_record: Callable[..., PollResponse],
) -> None:
    records = [positioned(poll_record, f"p{i}", i, user=f"u{u}", email=f"user{u}@x.io", answer=f"a{u}-{i}")
               for u in range(4) for i in (5, 2, 7, 1)]
    first = last_records(run(tenants, records))
    shuffled = list(records)
    random.Random(7).shuffle(shuffled)
    assert last_records(run(tenants, shuffled)) == first  # a state rebuild into empty tables, another order
    assert first["user2@x.io"]["poll_7_answer"] == "a2-7" and "poll_3_answer" not in first["user2@x.io"]


def test_a_position_past_the_last_slot_is_a_decision_not_a_dead_letter(
    tenants: TenantsConfig, poll_record: Callable[..., PollResponse],
) -> None:
    (result,) = run(tenants, [positioned(poll_record, "p11", 11)])
    assert result.ops == [] and result.dead_letters == []
    (d,) = result.decisions
    assert (d.decision, d.detail) == ("too_many_polls", {"poll_id": "p11", "position": 11})


def test_a_moved_poll_leaves_its_old_slot_empty_and_is_a_decision(
    tenants: TenantsConfig, poll_record: Callable[..., PollResponse],
) -> None:
    state = TransformState.in_memory()
    run(tenants, [positioned(poll_record, "p1", 2), positioned(poll_record, "p2", 3)], state)
    # a later pull saw an earlier poll: p1 is now first, p2 second, the new p3 third
    results = run(tenants, [positioned(poll_record, "p1", 1), positioned(poll_record, "p2", 2),
                            positioned(poll_record, "p3", 3)], state)
    moved = results[0]
    (op,) = moved.ops
    assert isinstance(op, CustomObjectUpsert)
    assert op.record["poll_1_question"] == "Question 1?"
    assert op.record["poll_2_question"] is None and op.record["poll_2_answer"] is None  # the slot it left
    assert op.record["poll_3_question"] == "Question 2?"  # p2 not re-stamped yet
    (d,) = moved.decisions
    assert (d.decision, d.op_id, d.detail) == ("poll_moved", op.op_id,
                                               {"poll_id": "p1", "from_position": 2, "to_position": 1})
    final = last_records(results)["ann@example.com"]
    assert [final[f"poll_{n}_question"] for n in (1, 2, 3)] == ["Question 1?", "Question 2?", "Question 3?"]
    assert [d.detail["poll_id"] for r in results for d in r.decisions] == ["p1", "p2"]


def test_with_polls_clear_empty_slots_off_a_moved_poll_leaves_its_old_slot_out(
    tenants: TenantsConfig, poll_record: Callable[..., PollResponse], monkeypatch: Any,
) -> None:
    """Whether a null clears a custom object field is UNCONFIRMED (docs/reference/marketo-api.md §5.1 says so for
    leads): KMSYNC_POLLS_CLEAR_EMPTY_SLOTS=false writes no null; the slot keeps the moved poll's old copy."""
    monkeypatch.setenv("KMSYNC_POLLS_CLEAR_EMPTY_SLOTS", "false")
    settings = TransformSettings()
    assert settings.polls_clear_empty_slots is False
    steps = LeanTransform(settings, tenants).steps  # the default engine hands the setting to its Transformer
    transformer = Transformer(tenants, TransformState.in_memory(), clock=lambda: T0, **steps.options)
    assert transformer.polls.clear_left_slots is False
    for record in (positioned(poll_record, "p1", 2), positioned(poll_record, "p2", 3)):
        transformer.apply(_routed(tenants, record))
    moved = transformer.apply(_routed(tenants, positioned(poll_record, "p1", 1)))
    (op,) = moved.ops
    assert isinstance(op, CustomObjectUpsert)
    assert op.record["poll_1_question"] == "Question 1?" and op.record["poll_3_question"] == "Question 2?"
    assert not [k for k in op.record if k.startswith("poll_2_")], op.record
    (d,) = moved.decisions
    assert (d.decision, d.detail) == ("poll_moved", {"poll_id": "p1", "from_position": 2, "to_position": 1})


def _routed(tenants: TenantsConfig, record: PollResponse) -> Any:
    routed = route(POLL_RESPONSES, encode(record), SourceRef(), tenants, T0).routed
    assert routed is not None
    return routed
