"""The activity ledger's intent records (memory.ActivityWrites, issue #22): a batch record is settled —
its key returned for a tombstone — only once every activity it listed is certain or held by a newer
record; and the intent-batch contract (kmsync_contracts.outcomes.ActivityIntentBatch)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from kmsync_contracts import ContractError, decode, encode
from kmsync_contracts.outcomes import ActivityIntent, ActivityIntentBatch, intent_batch_id
from kmsync_contracts.topics import ACTIVITY_INTENTS
from kmsync_sink.intents import LedgerIntents
from kmsync_sink.memory import ActivityWrites

T = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def intent(op_id: str, at: datetime = T) -> ActivityIntent:
    return ActivityIntent(op_id=op_id, munchkin_id="111-AAA-111", lead_id=5, activity_type_id=100001,
                          primary_attribute_value="1_abc", activity_date=T, recorded_at=at)


def test_a_batch_is_settled_only_when_every_activity_is_certain() -> None:
    ledger = ActivityWrites()
    assert ledger.intend_batch("b1", [intent("a"), intent("b")]) == []
    assert ledger.resolve("a") is None  # "b" still open
    assert ledger.uncertain("b") is not None and ledger.intent("a") is None
    assert ledger.resolve("b") == "b1"
    assert ledger.live_records() == {} and ledger.intents == 0
    assert ledger.resolve("b") is None  # resolved twice: settled once


def test_an_activity_sent_again_is_held_by_its_newer_batch() -> None:
    ledger = ActivityWrites()
    ledger.intend_batch("b1", [intent("a"), intent("b")])
    ledger.resolve("a")
    # "b" was ambiguous, verified absent and sent in a new call: b1 has nothing left to hold.
    later = T + timedelta(minutes=2)
    assert ledger.intend_batch("b2", [intent("b", later), intent("c", later)]) == ["b1"]
    assert ledger.uncertain("b") == intent("b", later)  # the newest call: verified only once it is old enough
    assert ledger.live_records() == {"b2": frozenset({"b", "c"})}
    # Read back in the other order (a start reads partitions in any order): the newest intent is kept.
    other = ActivityWrites()
    other.intend_batch("b2", [intent("b", later), intent("c", later)])
    assert other.intend_batch("b1", [intent("a"), intent("b")]) == []
    assert other.uncertain("b") == intent("b", later)


def test_a_tombstone_read_drops_only_what_its_record_holds() -> None:
    ledger = ActivityWrites()
    ledger.intend_batch("b1", [intent("a"), intent("b")])
    ledger.intend_batch("b2", [intent("b")])
    ledger.drop_record("b1")
    assert ledger.intent("a") is None and ledger.intent("b") is not None
    assert ledger.intend(intent("old")) == [] and ledger.live_records()["old"] == frozenset({"old"})


def test_the_executors_ledger_only_intents_are_batches_too() -> None:
    ledger = ActivityWrites()
    intents = LedgerIntents(ledger)
    asyncio.run(intents.record([intent("a"), intent("b")]))
    assert ledger.live_records() == {intent_batch_id(["b", "a"]): frozenset({"a", "b"})}
    intents.resolve(["a", "b"])
    assert ledger.live_records() == {} and ledger.intents == 0


def test_the_batch_id_is_its_op_ids_hash_and_both_shapes_decode() -> None:
    assert intent_batch_id(["a", "b"]) == intent_batch_id(["b", "a"]) != intent_batch_id(["a"])
    assert intent_batch_id(["a"]).startswith("batch:")
    batch = ActivityIntentBatch(batch_id=intent_batch_id(["a", "b"]), intents=(intent("a"), intent("b")))
    assert decode(ACTIVITY_INTENTS, encode(batch)) == batch
    assert decode(ACTIVITY_INTENTS, encode(intent("a"))) == intent("a")  # written by sinks before batches
    with pytest.raises(ContractError, match="batch_id"):
        decode(ACTIVITY_INTENTS, encode(batch).replace(b"batch:", b"batch:0"))
    twice = encode(ActivityIntentBatch.model_construct(batch_id=intent_batch_id(["a", "a"]),
                                                       intents=(intent("a"), intent("a"))))
    with pytest.raises(ContractError, match="listed twice"):
        decode(ACTIVITY_INTENTS, twice)
    with pytest.raises(ContractError, match="intents"):
        decode(ACTIVITY_INTENTS, b'{"schema_version":1,"batch_id":"batch:x","intents":[]}')


def test_a_record_read_after_a_newer_one_holding_its_activities_is_settled_and_its_tombstone_drops_nothing() -> None:
    """A start reads the topic's partitions in any order: b2 (the newest call of "b") before b1."""
    later = T + timedelta(minutes=2)
    ledger = ActivityWrites()
    ledger.intend_batch("b2", [intent("b", later)])
    assert ledger.intend_batch("b1", [intent("b")]) == ["b1"]  # b2 holds its only activity
    ledger.drop_record("b1")  # b1's tombstone, read after it
    assert ledger.uncertain("b") == intent("b", later)


def test_an_own_live_record_read_back_is_not_undone() -> None:
    """This process recorded b1 and resolved "a"; reading b1 back (a catch-up on assignment) brings "a"
    back, and a tombstone of b1 read before b1's newer record drops nothing; a newer intent of an open
    activity (the same batch sent by another replica) is taken."""
    ledger = ActivityWrites()
    ledger.intend_batch("b1", [intent("a"), intent("b")], own=True)
    ledger.resolve("a")
    assert ledger.intend_batch("b1", [intent("a"), intent("b")]) == []
    ledger.drop_record("b1")
    assert ledger.intent("a") is None and ledger.uncertain("b") == intent("b")
    later = T + timedelta(minutes=2)
    ledger.intend_batch("b1", [intent("a", later), intent("b", later)])
    assert ledger.uncertain("b") == intent("b", later) and ledger.intent("a") is None
    assert ledger.resolve("b") == "b1"
    ledger.drop_record("b1")  # no longer own once settled: its tombstone read back is applied
    assert ledger.live_records() == {}
