"""The activity ledger's own intents against what a catch-up reads back (no broker: the reader's record handler).

A catch-up (at start and at every rebalance) reads marketo.activity-intents.v1 up to the ends it took when it
began, behind this process's own sends. An op id this process re-intended after its earlier tombstone (the
call was certainly not applied, so it is sent again) must not be dropped by that tombstone read back: its new
call may still be answered ambiguously, and without the intent a replay would send it blind (a duplicate).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiokafka.structs import ConsumerRecord

from kmsync_contracts import encode
from kmsync_contracts.outcomes import ActivityIntent, RecordOutcome
from kmsync_sink.ledger_reader import LedgerReader
from kmsync_sink.memory import ActivityWrites

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
TOPIC = "marketo.activity-intents.v1"


def intent(op_id: str, at: datetime) -> ActivityIntent:
    return ActivityIntent(op_id=op_id, munchkin_id="111-AAA-111", lead_id=5, activity_type_id=100001,
                          primary_attribute_value="1_abc", activity_date=T0, recorded_at=at)


def record(offset: int, op_id: str, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic=TOPIC, partition=0, offset=offset, timestamp=0, timestamp_type=0,
                          key=op_id.encode(), value=value, checksum=None, serialized_key_size=len(op_id),
                          serialized_value_size=len(value or b""), headers=())


async def test_a_tombstone_read_back_does_not_drop_the_intent_this_process_recorded_since() -> None:
    ledger = ActivityWrites()
    reader = LedgerReader("127.0.0.1:1", "marketo.results.v1", ledger, 1.0, intents_topic=TOPIC)
    first, again = intent("act", T0), intent("act", T0 + timedelta(minutes=5))
    # This process: intent, certainly not applied (resolved, tombstone sent), sent again (a new intent).
    ledger.intend(first, own=True)
    ledger.resolve("act")
    ledger.intend(again, own=True)
    # A catch-up now reads the first intent and its tombstone, not yet the new intent.
    reader._intent(record(10, "act", encode(first)))
    assert ledger.uncertain("act") == again, "an older intent read back does not move the verification earlier"
    reader._intent(record(11, "act", None))
    assert ledger.uncertain("act") == again, "the tombstone of the earlier call leaves the new call's intent"
    # Once this process resolves it, the record read back is another writer's news again.
    ledger.resolve("act")
    reader._intent(record(12, "act", encode(again)))
    assert ledger.uncertain("act") == again
    reader._intent(record(13, "act", None))
    assert ledger.uncertain("act") is None
    await reader.stop()


async def test_intents_and_tombstones_of_other_writers_are_taken_as_read() -> None:
    ledger = ActivityWrites()
    reader = LedgerReader("127.0.0.1:1", "marketo.results.v1", ledger, 1.0, intents_topic=TOPIC)
    theirs = intent("other", T0)
    reader._intent(record(1, "other", encode(theirs)))
    assert ledger.uncertain("other") == theirs
    ledger.add("other")  # marketo.results.v1 says written
    assert ledger.uncertain("other") is None
    reader._intent(record(2, "other", None))
    assert ledger.intent("other") is None
    await reader.stop()


async def test_only_written_activities_are_learned_from_the_results() -> None:
    """Other outcomes are passed over (most on their bytes, without decoding); a written activity, in any
    JSON spacing, is learned."""
    ledger = ActivityWrites()
    reader = LedgerReader("127.0.0.1:1", "marketo.results.v1", ledger, 1.0)

    def outcome(op_id: str, kind: str, status: str) -> bytes:
        return encode(RecordOutcome(op_id=op_id, munchkin_id="111-AAA-111", kind=kind, status=status,
                                    source_time=T0, decided_at=T0))

    written = outcome("act-1", "custom_activity", "created")
    assert reader._result(record(0, "k", written))
    assert reader._result(record(1, "k", written.replace(b'"kind":', b'"kind": ')))  # another writer's spacing
    assert not reader._result(record(2, "k", outcome("act-2", "custom_activity", "failed")))
    assert not reader._result(record(3, "k", outcome("obj-1", "custom_object_upsert", "created")))
    assert not reader._result(record(4, "k", b'{"kind":"custom_activity", not json'))
    assert not reader._result(record(5, "k", None))
    assert "act-1" in ledger and "act-2" not in ledger and "obj-1" not in ledger
    await reader.stop()
