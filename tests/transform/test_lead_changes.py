"""A profile edit reaches Marketo while the status stays (issue #16 §3): transform keeps a fingerprint of
the member's mapped lead fields next to its status and sends a lead upsert when it changes, once; state
written before the fingerprint existed still loads (unknown: sent once, then remembered)."""

from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from kmsync_contracts import AttendeeStatus, LeadUpsert
from kmsync_contracts.topics import ATTENDEE_STATUS, TopicSpec
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_transform.keyed import MemberTable, transform_state
from kmsync_transform.lead_fields import lead_key
from kmsync_transform.routing import RoutedStatus
from kmsync_transform.state import Tables, record_key
from kmsync_transform.transformer import StepResult, Transformer, TransformState

from .conftest import MUNCHKIN, PROGRAM, T0, tenants_config
from .test_integration import EXACTLY_ONCE_ENGINES, expected_ops, transform_process
from .test_keyed_steps import DictState
from .test_quix_engine import produce_at, wait_for_ops

ANN = "ann@example.com"
MEMBER = f"{MUNCHKIN}|{PROGRAM}|{ANN}"  # person_key of Ann in the conftest's event
PROFILE: dict[str, Any] = {"first_name": "Ann", "last_name": "Lee", "title": "CTO", "company": "Acme"}


def routed(record: AttendeeStatus) -> RoutedStatus:
    return RoutedStatus(email=ANN, munchkin_id=MUNCHKIN, source={}, record=record)


def step(state: TransformState, record: AttendeeStatus) -> StepResult:
    return Transformer(tenants_config(), state, clock=lambda: T0).apply(routed(record))


def leads(result: StepResult) -> list[LeadUpsert]:
    return [op for op in result.ops if isinstance(op, LeadUpsert)]


def edited(record: AttendeeStatus, minutes: int, **changes: Any) -> AttendeeStatus:
    """The same status re-pulled after a profile edit (Kaltura's updatedAt moves, the status time stays)."""
    return record.model_copy(update={**changes, "source_time": T0 + timedelta(minutes=minutes)})


def test_same_status_with_a_changed_company_sends_one_lead_upsert_then_nothing(
        status_record: Callable[..., AttendeeStatus]) -> None:
    state = TransformState.in_memory()
    first = status_record("registered", **PROFILE)
    assert [lead.fields["company"] for lead in leads(step(state, first))] == ["Acme"]
    assert leads(step(state, first)) == [], "an unchanged re-pull sends nothing"

    moved = edited(first, 5, company="Globex")
    result = step(state, moved)
    [lead] = result.ops  # the lead upsert only: no status, no label again
    assert isinstance(lead, LeadUpsert)
    assert lead.fields == {"firstName": "Ann", "lastName": "Lee", "title": "CTO", "company": "Globex"}
    assert (result.repeats, result.lead_changes) == (1, 1)
    assert step(state, moved).ops == [], "the same data again: nothing"
    assert step(state, edited(first, 9, company="Globex")).ops == [], "a later re-pull of the same data: nothing"


def test_a_cleared_answer_is_left_out_not_sent_empty(status_record: Callable[..., AttendeeStatus]) -> None:
    state = TransformState.in_memory()
    first = status_record("registered", **PROFILE)
    step(state, first)
    [lead] = leads(step(state, edited(first, 5, company="  ", title="VP")))
    assert lead.fields == {"firstName": "Ann", "lastName": "Lee", "title": "VP"}
    assert leads(step(state, edited(first, 6, company=None, title=None, first_name=None, last_name=None))) == [], \
        "nothing left to send: no email-only upsert"


def test_a_regression_does_not_send_its_possibly_older_lead_data(
        status_record: Callable[..., AttendeeStatus]) -> None:
    state = TransformState.in_memory()
    step(state, status_record("attended", **PROFILE))
    late = status_record("registered", **{**PROFILE, "company": "Old Corp"})
    result = step(state, late)
    assert (leads(result), result.regressions) == ([], 1)


def test_the_change_upserts_op_id_is_deterministic_and_not_a_forward_ones(
        status_record: Callable[..., AttendeeStatus]) -> None:
    first = status_record("registered", **PROFILE)
    records = [first, edited(first, 5, company="Globex"), edited(first, 7, company="Acme")]

    def op_ids() -> list[str]:
        state = TransformState.in_memory()
        return [lead.op_id for r in records for lead in leads(step(state, r))]

    ids = op_ids()
    assert len(ids) == len(set(ids)) == 3
    assert op_ids() == ids, "replayed into empty state: the same ids, so the sink's replays dedupe"


def old_state_records(status_record: Callable[..., AttendeeStatus]) -> list[tuple[bytes, bytes | None]]:
    """What the previous version wrote for Ann after `registered`: her status, no lead fingerprint."""
    state = TransformState.in_memory()
    step(state, status_record("registered", **PROFILE))
    state.statuses.pop(lead_key(MEMBER))
    assert state.statuses, "the status entry stays"
    return [(record_key("statuses", k), json.dumps(v).encode()) for k, v in state.statuses.items()]


def assert_unknown_sends_once(statuses: MutableMapping[str, Any], rest: TransformState,
                              record: AttendeeStatus) -> None:
    state = TransformState(statuses, rest.ledger, rest.poll_slots, rest.poll_answers)
    [lead] = leads(step(state, record))
    assert lead.fields["company"] == "Acme"
    assert lead_key(MEMBER) in statuses, "then remembered"
    assert step(state, record).ops == []


def test_worker_state_without_a_fingerprint_loads_and_sends_once(
        status_record: Callable[..., AttendeeStatus]) -> None:
    tables = Tables()
    for key, value in old_state_records(status_record):
        tables.load(key, value)
    assert tables.ignored == 0
    assert_unknown_sends_once(tables.data["statuses"], TransformState.in_memory(), status_record("registered", **PROFILE))


def test_quix_state_without_a_fingerprint_loads_and_sends_once(
        status_record: Callable[..., AttendeeStatus]) -> None:
    store = DictState()
    for key, value in old_state_records(status_record):
        assert value is not None
        store.set(key.decode(), json.loads(value))
    keyed = transform_state(store, timedelta(days=30))
    assert_unknown_sends_once(keyed.statuses, keyed, status_record("registered", **PROFILE))
    # The fingerprint now lives in the member's one entry (keyed.MemberTable), written with the retention
    # when the record ends (KeyedSteps flushes the tables after each record).
    assert isinstance(keyed.statuses, MemberTable)
    keyed.statuses.flush()
    assert "lead" in store.data[f"statuses:{MEMBER}"]
    assert store.ttls[f"statuses:{MEMBER}"] == timedelta(days=30), "the fingerprint expires with the status"


@pytest.mark.parametrize("engine", EXACTLY_ONCE_ENGINES)
async def test_an_engine_sends_a_profile_edit_once_across_a_restart(
        kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
        status_record: Callable[..., AttendeeStatus], engine: str) -> None:
    """Real broker, each exactly-once engine: registered (Acme), the same re-pulled, then Globex → two lead upserts.
    A second process (fresh state dir: the fingerprint recovered from the changelog) given the Globex
    record again, then Ann's `attended` (same key, so after it), sends only the attended's ops."""
    first = status_record("registered", user="u1", email=ANN, **PROFILE)
    moved = edited(first, 5, company="Globex")
    items: list[tuple[TopicSpec, BaseModel]] = [(ATTENDEE_STATUS, r) for r in (first, first, moved)]
    want = [op.op_id for op in expected_ops(list(items))]
    assert len(want) == 4  # lead + status + label of `registered`, then the edit's lead upsert
    later: list[tuple[TopicSpec, BaseModel]] = [
        (ATTENDEE_STATUS, moved),
        (ATTENDEE_STATUS, status_record("attended", user="u1", email=ANN, minutes=10, **{**PROFILE, "company": "Globex"}))]
    want_all = [op.op_id for op in expected_ops([*items, *later])]
    assert len(want_all) == len(want) + 2, "the re-pulled edit: nothing; attended: its lead upsert and status"
    await produce_at(kafka_broker, topic_prefix, items)
    with transform_process(kafka_broker, topic_prefix, tmp_path, "first", KMSYNC_TRANSFORM_ENGINE=engine):
        got = await wait_for_ops(kafka_broker, topic_prefix, lambda ids: set(want) <= set(ids), "Ann's ops", tmp_path)
    assert got == want
    await produce_at(kafka_broker, topic_prefix, later)
    with transform_process(kafka_broker, topic_prefix, tmp_path, "second", KMSYNC_TRANSFORM_ENGINE=engine):
        got = await wait_for_ops(kafka_broker, topic_prefix, lambda ids: set(want_all) <= set(ids),
                                 "the attended's ops", tmp_path)
    assert got == want_all, "the edit was not sent again after the restart"
