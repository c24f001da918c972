"""The state topic's records rebuild the tables; staged changes reach memory only on commit."""

from __future__ import annotations

from collections.abc import Callable

from kmsync_contracts import AttendeeStatus, PollResponse, SessionEngagement
from kmsync_transform.routing import RoutedEngagement, RoutedPoll, RoutedStatus
from kmsync_transform.state import TABLES, Tables, record_key
from kmsync_transform.transformer import Transformer

from .conftest import MUNCHKIN, tenants_config


def test_state_records_rebuild_the_tables_a_replay_then_emits_nothing_new(
    status_record: Callable[..., AttendeeStatus], engagement_record: Callable[..., SessionEngagement],
    poll_record: Callable[..., PollResponse],
) -> None:
    tenants = tenants_config()
    routed = [
        RoutedStatus(email="ann@example.com", munchkin_id=MUNCHKIN, source={}, record=status_record("attended")),
        RoutedEngagement(email="ann@example.com", munchkin_id=MUNCHKIN, source={},
                         record=engagement_record(final=True, plays=1)),
        RoutedPoll(email="ann@example.com", munchkin_id=MUNCHKIN, source={}, record=poll_record("p1")),
    ]
    tables = Tables()
    staged = tables.stage()
    first = [Transformer(tenants, staged.transform_state()).apply(r) for r in routed]
    assert all(step.ops for step in first)
    assert len(tables) == 0, "nothing reaches memory before commit()"
    records = staged.records()
    staged.commit()
    assert {k.split(b":", 1)[0].decode() for k, _ in records} == set(TABLES)

    rebuilt = Tables()
    for key, value in records:
        rebuilt.load(key, value)
    assert rebuilt.data == tables.data
    # the same records again, against the rebuilt state: no activity, no status, no poll update
    again = [Transformer(tenants, rebuilt.stage().transform_state()).apply(r) for r in routed]
    assert [op for step in again for op in step.ops if op.kind != "custom_object_upsert"] == []
    assert again[1].ledger_hits == 1 and again[0].repeats == 1 and again[2].repeats == 1


def test_a_tombstone_deletes_and_foreign_keys_are_ignored() -> None:
    tables = Tables()
    tables.load(record_key("statuses", "k|a@x.io"), b'{"name":"Registered","step":30}')
    assert tables.data["statuses"] == {"k|a@x.io": {"name": "Registered", "step": 30}}
    tables.load(record_key("statuses", "k|a@x.io"), None)
    tables.load(b"other-table:x", b"1")
    tables.load(None, b"1")
    assert len(tables) == 0 and tables.ignored == 2
