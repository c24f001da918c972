"""lean_store.py: the lean engine's state, in quixstreams' own changelog format (issue #22).

Without a broker: staging, apply and discard; expiry and the sweep; recovery of every kind of record; and a twin
run of the golden inputs through quixstreams' own RocksDB transaction (as the quix engine drives it) and through
LeanState/LeanStore, checkpoint by checkpoint: the same changelog records (key, value, headers) and the same
local values, and each side recovers the other's records to its own state. With the broker: the quix engine's
changelogs recovered by ``recover_stores`` to the values quix's stores hold, a changelog tail with an open or an
aborted transaction, and a quix engine that resumes from a changelog lean wrote."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from quixstreams.state.rocksdb import RocksDBOptions, RocksDBStorePartition
from rocksdict import Options, Rdict

from kmsync_bench.transform_cpu import RETENTION, counted, operations, person, produce, tenants
from kmsync_common.clock import SystemClock
from kmsync_contracts.groups import TRANSFORM_APP_ID
from kmsync_contracts.topics import ATTENDEE_STATUS, MARKETO_OPS, POLL_RESPONSES, SESSION_ENGAGEMENT, TopicSpec
from kmsync_kafka import topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.engine_quix import QuixTransform
from kmsync_transform.keyed import Envelope, KeyedSteps, Output
from kmsync_transform.lean_store import (
    MARKER_VALUE,
    NO_HIGH_WATER,
    SENTINEL_NEVER,
    LeanState,
    LeanStore,
    LeanStoreError,
    quix_changelog_name,
    quix_stamp,
    recover_stores,
)
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.settings import TransformSettings

from .golden_inputs import inputs, sources
from .test_keyed_steps import message_key, steps

T0_MS = 1_796_000_000_000
STAMPED = [("__column_family__", b"default"), ("__processed_tp_offsets__", b'{"in":7}'), ("__ttl_stamped__", b"\x01")]
MARKER_HEADERS = [("__column_family__", b"__ttl_system__"), ("__processed_tp_offsets__", b'{"in":7}')]


def stamped(expires: int, value: Any) -> bytes:
    return expires.to_bytes(8, "big") + orjson.dumps(value)


def local_values(path: Path, cf: str = "default") -> dict[bytes, bytes]:
    """A RocksDB's column family as it is on disk (quix's store or ours)."""
    options = Options(raw_mode=True)
    db = Rdict(str(path), options, column_families={n: options for n in Rdict.list_cf(str(path), options)})
    try:
        family = db.get_column_family(cf)
        found = cast(dict[bytes, bytes], dict(family.items()))  # raw mode: bytes keys and values
        del family
        return found
    finally:
        db.close()


# ----- staging, apply, discard
def test_staged_changes_reach_rocksdb_only_when_applied_and_a_discard_drops_them(tmp_path: Path) -> None:
    store = LeanStore(tmp_path / "s", "changelog", 0)
    store.put(b"k1", b'"one"', SENTINEL_NEVER)
    store.put(b"k2", b'"two"', T0_MS + 1000)
    store.delete(b"k3")
    assert store.get(b"k1", NO_HIGH_WATER) == b'"one"' and store.get(b"k3", NO_HIGH_WATER) is None
    store.close()
    assert local_values(tmp_path / "s") == {}  # nothing on disk before the transaction committed
    store = LeanStore(tmp_path / "s", "changelog", 0)
    store.put(b"k1", b'"one"', SENTINEL_NEVER)
    store.put(b"k2", b'"two"', T0_MS + 1000)
    store.apply(12)
    store.put(b"k1", b'"changed"', SENTINEL_NEVER)
    store.delete(b"k2")
    store.discard()  # an aborted transaction
    assert store.get(b"k1", NO_HIGH_WATER) == b'"one"' and store.get(b"k2", NO_HIGH_WATER) == b'"two"'
    assert store.changelog_records({"in": 7}) == []
    store.delete(b"k1")
    store.apply(None)
    assert store.get(b"k1", NO_HIGH_WATER) is None
    store.close()
    assert local_values(tmp_path / "s") == {b"k2": (T0_MS + 1000).to_bytes(8, "big") + b'"two"'}
    store = LeanStore(tmp_path / "s", "changelog", 0)
    assert store.recovery_start() == 12  # the offset applied with the data; None left it as it was
    store.close()


def test_changelog_records_are_quixstreams_each_key_once_with_its_last_value_and_the_marker_once(
        tmp_path: Path) -> None:
    store = LeanStore(tmp_path / "s", "changelog", 0)
    store.put(b"a", b"1", T0_MS)
    store.put(b"a", b"2", T0_MS + 5)
    store.put(b"b", b"3", SENTINEL_NEVER)
    store.delete(b"b")
    store.delete(b"c")
    store.put(b"c", b"4", SENTINEL_NEVER)
    records = store.changelog_records({"in": 7})
    assert records == [(b"a", (T0_MS + 5).to_bytes(8, "big") + b"2", STAMPED),
                       (b"c", b"\xff" * 8 + b"4", STAMPED),
                       (b"b", None, STAMPED),
                       (b"__ttl_migration_done__", MARKER_VALUE, MARKER_HEADERS)]
    assert MARKER_VALUE == (2).to_bytes(8, "big")
    store.apply(4)
    store.put(b"e", b"6", SENTINEL_NEVER)
    assert [r[0] for r in store.changelog_records({"in": 9})] == [b"e"]  # the marker is written once
    store.discard()
    store.close()
    reopened = LeanStore(tmp_path / "s", "changelog", 0)
    reopened.put(b"d", b"5", SENTINEL_NEVER)
    assert [r[0] for r in reopened.changelog_records(None)] == [b"d"]
    assert reopened.changelog_records(None)[0][2][1] == ("__processed_tp_offsets__", b"null")
    reopened.close()


def test_a_checkpoint_that_changed_nothing_writes_nothing(tmp_path: Path) -> None:
    """The engine applies every store at every checkpoint; a store its records did not touch is not written."""
    store = LeanStore(tmp_path / "s", "changelog", 0)
    store.advance(T0_MS)
    store.put(b"k", b"1", SENTINEL_NEVER)
    store.apply(5)
    written = store._db.latest_sequence_number()
    store.apply(None)
    store.apply(5)
    assert store._db.latest_sequence_number() == written
    store.advance(T0_MS + 1)  # a record read state: its time is kept
    store.apply(None)
    assert store._db.latest_sequence_number() > written
    store.close()
    reopened = LeanStore(tmp_path / "s", "changelog", 0)
    assert reopened.high_water_ms == T0_MS + 1
    reopened.close()


# ----- LeanState: quixstreams' keys, values and stamps
def test_lean_state_serializes_keys_values_and_stamps_as_quixstreams(tmp_path: Path) -> None:
    store = LeanStore(tmp_path / "s", "changelog", 0)
    state = LeanState()
    retention = timedelta(days=30)
    state.bind(store, b"100:200:u1", T0_MS)
    state.set("statuses:m", {"status": "Attended"}, ttl=retention)
    state.bind(store, "123-ABC|200|0_keynote", T0_MS + 1)  # a repartitioned poll: the session, a str
    state.set("poll_slots:x", [1, 2], ttl=timedelta(milliseconds=0.5))  # rounded up to 1 ms
    state.bind(store, None, -1)  # a null key, Kafka's NO_TIMESTAMP
    state.set("statuses:m", "n", ttl=retention)
    state.bind(store, b"", T0_MS)
    state.set("activity_ledger:a", True)
    assert {k: v for k, v, _ in store.changelog_records(None) if k != b"__ttl_migration_done__"} == {
        b'100:200:u1|"statuses:m"': stamped(T0_MS + 30 * 86_400_000, {"status": "Attended"}),
        b'"123-ABC|200|0_keynote"|"poll_slots:x"': stamped(T0_MS + 2, [1, 2]),
        b'null|"statuses:m"': stamped(SENTINEL_NEVER, "n"),
        b'"activity_ledger:a"': stamped(SENTINEL_NEVER, True)}
    assert quix_stamp(retention, -1) == SENTINEL_NEVER and quix_stamp(None, T0_MS) == SENTINEL_NEVER
    for ttl, ts in ((timedelta(0), T0_MS), (timedelta(milliseconds=1), -5), (timedelta(days=1), 10**15)):
        with pytest.raises(ValueError):
            quix_stamp(ttl, ts)
    state.bind(store, b"100:200:u1", T0_MS)
    assert state.get("statuses:m") == {"status": "Attended"} and state.exists("statuses:m")
    state.delete("statuses:m")
    assert state.get("statuses:m", "gone") == "gone" and not state.exists("statuses:m")
    store.close()


# ----- expiry and the sweep
def test_an_entry_expires_at_the_high_water_of_record_times_and_the_sweep_tombstones_it(tmp_path: Path) -> None:
    store = LeanStore(tmp_path / "s", "changelog", 0)
    state = LeanState()
    hour = timedelta(hours=1)
    state.bind(store, b"p", T0_MS)
    state.set("old", 1, ttl=hour)
    state.set("kept", 2, ttl=hour)
    state.set("forever", 3)
    store.apply(1)
    assert store.high_water_ms == T0_MS
    state.bind(store, b"p", T0_MS + 3_600_000)  # exactly the stamp: expired (stamp <= high water)
    assert state.get("old") is None and not state.exists("old")
    state.bind(store, b"p", T0_MS + 10)  # an older record: the high water does not go back
    assert state.get("old") is None and state.get("forever") == 3 and store.high_water_ms == T0_MS + 3_600_000
    state.set("kept", 20, ttl=hour)  # re-written: staged, so the sweep leaves it
    assert store.sweep_due() == 1
    records = store.changelog_records({"in": 2})
    assert [(k, v) for k, v, _ in records if k != b"__ttl_migration_done__"] == [
        (b'p|"kept"', stamped(T0_MS + 10 + 3_600_000, 20)), (b'p|"old"', None)]
    store.apply(3)
    state.bind(store, b"p", T0_MS + 2 * 3_600_000)
    assert state.get("kept") is None  # expired in turn
    state.set("new", 4, ttl=hour)
    assert store.sweep(store.high_water_ms, limit=1) == 1  # the budget
    store.apply(4)
    store.close()
    assert set(local_values(tmp_path / "s")) == {b'p|"forever"', b'p|"new"'}
    index = local_values(tmp_path / "s", "lean_expiry_index")
    assert list(index) == [(T0_MS + 3 * 3_600_000).to_bytes(8, "big") + b'p|"new"']  # stale entries dropped


def test_nothing_expires_before_a_record_time_is_known(tmp_path: Path) -> None:
    store = LeanStore(tmp_path / "s", "changelog", 0)
    store.put(b"k", b"1", 5)  # long past
    store.apply(1)
    assert store.high_water_ms == NO_HIGH_WATER and store.get(b"k", store.high_water_ms) == b"1"
    assert store.sweep_due() == 0 and store.sweep(NO_HIGH_WATER, 10) == 0
    store.close()


# ----- recovery
def test_recovery_applies_stamped_legacy_and_tombstone_records(tmp_path: Path) -> None:
    old = LeanStore(tmp_path / "warm", "changelog", 0)
    old.advance(T0_MS)
    old.put(b"gone", b"0", SENTINEL_NEVER)
    old.apply(3)
    old.close()
    store = LeanStore(tmp_path / "warm", "changelog", 0)
    assert store.recovery_start() == 3
    legacy = [("__column_family__", b"default"), ("__processed_tp_offsets__", b'{"in":1}')]
    records: list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]] = [
        (b"live", stamped(T0_MS + 1, "v"), [*STAMPED[:1], ("__processed_tp_offsets__", b'{"in":2}'), *STAMPED[2:]]),
        (b"expired", stamped(T0_MS, "x"), [*STAMPED[:1], ("__processed_tp_offsets__", b'{"in":2}'), *STAMPED[2:]]),
        (b"legacy", b'"a legacy value"', legacy),
        (b"gone", None, legacy),
        (b"__ttl_migration_done__", MARKER_VALUE, MARKER_HEADERS[:1]),
    ]
    for offset, (key, value, headers) in enumerate(records, start=3):
        store.recover(key, value, headers, offset)
    store.recovered(8)
    assert store.get(b"live", store.high_water_ms) == b'"v"'
    assert store.get(b"legacy", store.high_water_ms) == b'"a legacy value"'  # no stamp to strip, no expiry
    for key in (b"expired", b"gone"):
        assert store.get(key, NO_HIGH_WATER) is None, key
    store.put(b"more", b"1", SENTINEL_NEVER)
    assert [r[0] for r in store.changelog_records(None)] == [b"more"]  # the marker was on the changelog
    store.discard()
    assert store.recovery_start() == 8
    with pytest.raises(LeanStoreError, match="__column_family__"):
        store.recover(b"k", b"v", [], 8)
    store.close()


def test_the_polls_store_changelog_is_named_as_quixstreams_names_it() -> None:
    group = "p.kmsync-transform"
    assert quix_changelog_name(group, "p.kaltura.attendee-status.v1") == \
        "changelog__p.kmsync-transform--p.kaltura.attendee-status.v1--default"
    assert quix_changelog_name(group, f"repartition__{group}--p.kaltura.poll-responses.v1--session") == \
        "changelog__p.kmsync-transform--repartition.p.kaltura.poll-responses.v1.session--default"


# ----- the twin run: quixstreams' transaction and lean's, over the same records
class Captured:
    """quixstreams' ChangelogProducer for one changelog partition: what it was asked to produce, headers as the
    broker keeps them (bytes)."""

    changelog_name = "changelog"
    partition = 0

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]] = []

    def produce(self, key: bytes, value: bytes | None = None, headers: Any = None, migration: bool = False,
                on_delivery: Any = None) -> None:
        as_bytes = [(k, v.encode() if isinstance(v, str) else v) for k, v in (headers or {}).items()]
        self.records.append((key, value, as_bytes))

    def flush(self, timeout: float | None = None, migration: bool = False) -> int:
        return 0


Record = tuple[TopicSpec, bytes, SourceRef, int]


def step(s: KeyedSteps, bind: Any, spec: TopicSpec, raw: bytes, source: SourceRef, ts: int) -> list[Output]:
    """One record as the quix engine runs it: statuses and engagement against their message key's state (a null
    Kafka key: None), polls routed, sent through the repartition envelope and stepped against their session's."""
    if spec is POLL_RESPONSES:
        routed = s.route_poll(raw, source)
        envelope = Envelope.decode(routed.key, routed.encode())
        return s.poll(envelope, bind(envelope.key, ts))
    prefix = None if source.key is None else message_key(raw).encode()
    return s.record(spec, raw, source, bind(prefix, ts))


class Twins:
    """The quix engine's store partition (quixstreams' RocksDBStorePartition and transactions, as its
    checkpoints drive them) and a LeanStore, fed the same records and checkpointed at the same points."""

    def __init__(self, root: Path, retention: timedelta) -> None:
        self.captured = Captured()
        self.quix = RocksDBStorePartition(str(root / "quix"), options=RocksDBOptions(),
                                          changelog_producer=self.captured)  # type: ignore[arg-type]
        self.lean = LeanStore(root / "lean", "changelog", 0)
        self.quix_steps, self.lean_steps = steps(TransformMetrics(), retention), steps(TransformMetrics(), retention)
        self.lean_state = LeanState()
        self.offset = -1

    def run(self, records: list[Record], checkpoint: int) -> list[tuple[list[Any], list[Any]]]:
        """The records in checkpoints of ``checkpoint``: per checkpoint (quix's changelog records, lean's)."""
        out = []
        for start in range(0, len(records), checkpoint):
            tx = self.quix.begin()
            for spec, raw, source, ts in records[start:start + checkpoint]:
                self.offset += 1
                q = step(self.quix_steps, partial(as_state, tx), spec, raw, source, ts)
                lean = step(self.lean_steps, self._bind, spec, raw, source, ts)
                assert q == lean, (spec.name, source)
            before = len(self.captured.records)
            tx.prepare(processed_offsets={"in": self.offset})
            tx.flush(changelog_offset=None)
            self.lean.sweep_due()
            lean_records = self.lean.changelog_records({"in": self.offset})
            self.lean.apply(self.offset + 1)
            out.append((self.captured.records[before:], lean_records))
        return out

    def _bind(self, prefix: Any, ts: int) -> LeanState:
        self.lean_state.bind(self.lean, prefix, ts)
        return self.lean_state

    def close(self) -> None:
        self.quix.close()
        self.lean.close()


def as_state(tx: Any, prefix: Any, timestamp: int) -> Any:
    return tx.as_state(prefix=prefix, timestamp=timestamp)  # as the quix engine's stateful steps get it


def golden_records(first_ms: int) -> list[Record]:
    """The golden inputs (every kind of state write and read), one ms apart from ``first_ms``."""
    items = inputs()
    return [(spec, raw, source, first_ms + n) for n, ((spec, raw), source) in enumerate(zip(items, sources(items),
                                                                                           strict=True))]


def canonical(records: list[Any]) -> list[Any]:
    """Changelog records in one order (quixstreams orders them by message key first, then deletes)."""
    return sorted(records, key=lambda r: (r[2][0][1] == b"__ttl_system__", r[1] is None, r[0]))


def test_quix_and_lean_write_the_same_changelog_records_and_values_for_the_same_records(tmp_path: Path) -> None:
    """Twice through the golden inputs, the second time two hours later under a one-hour retention: every entry
    of the first pass has expired (reads find nothing, the sweep tombstones what is not written again)."""
    twins = Twins(tmp_path, timedelta(hours=1))
    checkpoints = twins.run(golden_records(T0_MS), 7) + twins.run(golden_records(T0_MS + 7_200_000), 5)
    for n, (quix, lean) in enumerate(checkpoints):
        assert canonical(lean) == canonical(quix), f"checkpoint {n}"
    written = [r for quix, _ in checkpoints for r in quix]
    assert any(v is None for _, v, _ in written), "the sweep tombstoned nothing"
    assert [k for k, _, _ in written].count(b"__ttl_migration_done__") == 1
    assert len({k for k, _, _ in written}) > 15, "the golden inputs wrote few state entries"
    twins.close()
    assert local_values(tmp_path / "lean") == local_values(tmp_path / "quix")


def test_each_recovers_the_others_changelog_to_its_own_values(tmp_path: Path) -> None:
    twins = Twins(tmp_path / "twins", timedelta(hours=1))
    checkpoints = twins.run(golden_records(T0_MS), 6) + twins.run(golden_records(T0_MS + 7_200_000), 9)
    twins.close()
    quix_written = [r for quix, _ in checkpoints for r in quix]
    lean_written = [r for _, lean in checkpoints for r in lean]
    lean = LeanStore(tmp_path / "lean-from-quix", "changelog", 0)
    lean.recovery_start()
    for offset, (key, value, headers) in enumerate(quix_written):
        lean.recover(key, value, headers, offset)
    lean.recovered(len(quix_written))
    lean.close()
    quix = RocksDBStorePartition(str(tmp_path / "quix-from-lean"), options=RocksDBOptions(),
                                 changelog_producer=Captured())  # type: ignore[arg-type]
    for offset, (key, value, headers) in enumerate(lean_written):
        found = dict(headers)
        quix.recover_from_changelog_message(key=key, value=value, cf_name=found["__column_family__"].decode(),
                                            offset=offset, ttl_stamped=bool(found.get("__ttl_stamped__")))
    quix.complete_recovery()
    assert quix.uses_ttl_stamps  # quixstreams took lean's changelog as a TTL store's
    quix.close()
    expected = local_values(tmp_path / "twins" / "quix")
    assert local_values(tmp_path / "lean-from-quix") == expected
    assert local_values(tmp_path / "quix-from-lean") == expected
    assert len(expected) > 15


# ----- with the broker
class FixedNow(SystemClock):
    """The clock operations carry (emitted_at); state expiry runs on record times, not on this."""

    def now(self) -> datetime:
        return datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


def run_quix(broker: KafkaBroker, prefix: str, state_dir: Path, records: int, ops: int) -> TransformMetrics:
    """The quix engine in this process until it has read ``records`` input records and emitted ``ops``
    operations; then stopped (its checkpoint in hand is committed on the way out)."""
    settings = TransformSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, transform_state_dir=state_dir,
                                 transform_state_retention_seconds=int(RETENTION.total_seconds()))
    metrics = TransformMetrics()
    quix = QuixTransform(settings, tenants(), metrics=metrics, clock=FixedNow())

    def done() -> bool:
        read, emitted = counted(metrics)
        return read >= records and emitted >= ops

    def watch() -> None:
        asyncio.run(wait_for(done, within=150, what="the quix engine's records and operations"))
        assert quix.app is not None
        quix.app.stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    quix.run()
    watcher.join(timeout=10)
    assert done()
    return metrics


def stateful_topics(prefix: str) -> dict[str, int]:
    """The topics whose partitions keep a store in the quix engine (statuses, engagement, the polls'
    repartition topic) and their partitions."""
    group = f"{prefix}{TRANSFORM_APP_ID}"
    polls = topic_name(POLL_RESPONSES, prefix)
    return {topic_name(ATTENDEE_STATUS, prefix): ATTENDEE_STATUS.partitions,
            topic_name(SESSION_ENGAGEMENT, prefix): SESSION_ENGAGEMENT.partitions,
            f"repartition__{group}--{polls}--session": POLL_RESPONSES.partitions}


@pytest.mark.kafka
def test_the_quix_engines_changelogs_are_recovered_to_the_values_its_stores_hold_and_lean_writes_them_alike(
        kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path) -> None:
    """The quix engine over each person's statuses, snapshot and poll answer; then ``recover_stores`` from its three
    changelogs gives the values its own stores hold, byte for byte; and the same records (in each partition's
    order, with their timestamps; polls from the repartition topic it wrote) through LeanState and LeanStore
    give the records its changelogs keep: keys, stamped values, column family and stamped headers."""
    records = [r for i in range(6) for r in person(i)]
    asyncio.run(produce(kafka_broker.bootstrap, topic_prefix, records))
    run_quix(kafka_broker, topic_prefix, tmp_path / "quix", len(records), operations(6, engagement_only=False))
    group = f"{topic_prefix}{TRANSFORM_APP_ID}"
    quix_root = tmp_path / "quix" / group / "default"
    topics = stateful_topics(topic_prefix)
    stores = [LeanStore(tmp_path / "lean" / topic / str(p), quix_changelog_name(group, topic), p)
              for topic, partitions in topics.items() for p in range(partitions)]
    recover_stores(kafka_broker.bootstrap, stores, timeout_s=60)
    for store in stores:
        store.close()
    found = dict.fromkeys(topics, 0)
    for topic, partitions in topics.items():
        for p in range(partitions):
            quix_values = local_values(quix_root / topic / str(p)) if (quix_root / topic / str(p)).exists() else {}
            assert local_values(tmp_path / "lean" / topic / str(p)) == quix_values, (topic, p)
            found[topic] += len(quix_values)
    assert all(found.values()), f"a store kept nothing: {found}"
    replayed = replay_as_lean(kafka_broker, topic_prefix, tmp_path / "replay")
    for topic in topics:
        changelog = quix_changelog_name(group, topic)
        assert replayed[changelog] == last_records(kafka_broker, changelog), topic


#: A changelog's records as compared: (partition, key) → (value, column family header, stamped header).
Compacted = dict[tuple[int, bytes], tuple[bytes | None, bytes | None, bytes | None]]


def last_records(broker: KafkaBroker, changelog: str) -> Compacted:
    """The last record of each key on a changelog (what its compaction keeps), processed offsets left out (a
    checkpoint's boundaries are the engine's)."""
    out: Compacted = {}
    for m in asyncio.run(read_to_end(broker.bootstrap, changelog)):
        headers = dict(m.headers)
        assert m.key is not None
        out[(m.partition, m.key)] = (m.value, headers.get("__column_family__"), headers.get("__ttl_stamped__"))
    return out


def replay_as_lean(broker: KafkaBroker, prefix: str, root: Path) -> dict[str, Compacted]:
    """Every record the quix engine processed, again, in each partition's order and with its timestamp, through
    KeyedSteps over LeanState and LeanStore: statuses and engagement from their inputs, polls from the
    repartition topic the quix engine wrote (keyed by session). Per changelog: the records lean would write."""
    group = f"{prefix}{TRANSFORM_APP_ID}"
    keyed = KeyedSteps(tenants(), TransformMetrics(), clock=FixedNow().now, retention=RETENTION)
    state, out = LeanState(), dict[str, Compacted]()
    specs = {topic_name(ATTENDEE_STATUS, prefix): ATTENDEE_STATUS, topic_name(SESSION_ENGAGEMENT, prefix):
             SESSION_ENGAGEMENT}
    for topic in stateful_topics(prefix):
        changelog, stores = quix_changelog_name(group, topic), dict[int, LeanStore]()
        for m in asyncio.run(read_to_end(broker.bootstrap, topic)):
            store = stores.get(m.partition)
            if store is None:
                store = stores[m.partition] = LeanStore(root / topic / str(m.partition), changelog, m.partition)
            assert m.key is not None and m.value is not None
            if topic in specs:
                state.bind(store, m.key, m.timestamp)
                source = SourceRef(topic=topic, partition=m.partition, offset=m.offset, key=m.key.decode())
                keyed.record(specs[topic], m.value, source, state)
            else:
                state.bind(store, m.key.decode(), m.timestamp)  # the session: quixstreams' str key
                keyed.poll(Envelope.decode(m.key.decode(), m.value), state)
        compacted: Compacted = {}
        for partition, store in stores.items():
            for key, value, headers in store.changelog_records({topic: 0}):
                found = dict(headers)
                compacted[(partition, key)] = (value, found.get("__column_family__"), found.get("__ttl_stamped__"))
            store.close()
        out[changelog] = compacted
    return out


def changelog_topic(broker: KafkaBroker, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": "compact"})])[name].result(timeout=30)


def transactional(broker: KafkaBroker, tx_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": tx_id})
    producer.init_transactions(30)
    producer.begin_transaction()
    return producer


@pytest.mark.kafka
def test_recovery_passes_an_aborted_transaction_and_waits_for_an_open_one_at_the_tail(
        kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path) -> None:
    changelog = f"{topic_prefix}changelog"
    changelog_topic(kafka_broker, changelog)
    writer = transactional(kafka_broker, f"{topic_prefix}a")
    writer.produce(changelog, stamped(SENTINEL_NEVER, "one"), b"k1", headers=STAMPED)
    writer.commit_transaction(30)
    aborted = transactional(kafka_broker, f"{topic_prefix}b")
    aborted.produce(changelog, stamped(SENTINEL_NEVER, "never"), b"k2", headers=STAMPED)
    aborted.flush(30)
    aborted.abort_transaction(30)
    store = LeanStore(tmp_path / "s", changelog, 0)
    recover_stores(kafka_broker.bootstrap, [store], timeout_s=30)  # the abort marker is the tail: passed
    assert store.get(b"k1", NO_HIGH_WATER) == b'"one"' and store.get(b"k2", NO_HIGH_WATER) is None
    assert store.recovery_start() == 4  # k1, its commit marker, k2, its abort marker
    open_one = transactional(kafka_broker, f"{topic_prefix}c")
    open_one.produce(changelog, stamped(SENTINEL_NEVER, "three"), b"k3", headers=STAMPED)
    open_one.flush(30)
    with pytest.raises(LeanStoreError, match="offset 4 of 5"):
        recover_stores(kafka_broker.bootstrap, [store], timeout_s=3)  # read_committed stops before k3
    open_one.commit_transaction(30)
    recover_stores(kafka_broker.bootstrap, [store], timeout_s=30)
    assert store.get(b"k3", NO_HIGH_WATER) == b'"three"' and store.recovery_start() == 6
    store.close()


@pytest.mark.kafka
def test_a_store_ahead_of_a_changelog_created_again_is_emptied_and_recovered_from_its_start(
        kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path) -> None:
    """The store's offset is beyond the end of its changelog (the topic was deleted and created again): what it
    holds is of another changelog. It is emptied and recovered from the new one, not a start that fails for good."""
    changelog = f"{topic_prefix}changelog"
    changelog_topic(kafka_broker, changelog)
    writer = transactional(kafka_broker, f"{topic_prefix}a")
    for n in range(3):
        writer.produce(changelog, stamped(SENTINEL_NEVER, f"old{n}"), f"k{n}".encode(), headers=STAMPED)
    writer.commit_transaction(30)
    store = LeanStore(tmp_path / "s", changelog, 0)
    recover_stores(kafka_broker.bootstrap, [store], timeout_s=30)
    assert store.get(b"k2", NO_HIGH_WATER) == b'"old2"' and store.recovery_start() == 4
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    admin.delete_topics([changelog])[changelog].result(timeout=30)

    async def gone() -> bool:
        return changelog not in admin.list_topics(timeout=10).topics

    asyncio.run(wait_for(gone, within=30, what="the changelog deleted"))
    changelog_topic(kafka_broker, changelog)
    writer = transactional(kafka_broker, f"{topic_prefix}b")
    writer.produce(changelog, stamped(SENTINEL_NEVER, "new"), b"k0", headers=STAMPED)
    writer.commit_transaction(30)
    recover_stores(kafka_broker.bootstrap, [store], timeout_s=30)
    assert store.get(b"k0", NO_HIGH_WATER) == b'"new"'
    assert store.get(b"k2", NO_HIGH_WATER) is None  # the old changelog's entry is gone with it
    assert store.recovery_start() == 2
    store.close()


def test_a_discarded_checkpoint_takes_back_the_high_water_its_records_raised(tmp_path: Path) -> None:
    """A record late in an aborted checkpoint raised the partition's high water past an entry's expiry; after the
    rewind an earlier record is read again and must find the entry, as it did the first time (and as quixstreams
    or a restart would: the high water is only persisted with a commit)."""
    store, state = LeanStore(tmp_path / "s", "changelog", 0), LeanState()
    state.bind(store, b"person", T0_MS)
    state.set("activity_ledger:a", "sent", ttl=timedelta(seconds=60))
    store.apply(None)
    state.bind(store, b"person", T0_MS + 1_000)
    assert state.get("activity_ledger:a") == "sent"
    state.bind(store, b"other", T0_MS + 120_000)  # a later record of the same checkpoint
    assert state.get("activity_ledger:a") is None
    store.discard()  # the checkpoint aborted: its records are read again
    state.bind(store, b"person", T0_MS + 1_000)
    assert state.get("activity_ledger:a") == "sent"
    store.close()


def lean_pass(broker: KafkaBroker, prefix: str, root: Path, records: int) -> None:
    """What a lean engine commits for the first ``records`` input records (statuses and engagement), in one
    transaction: each store's changelog records, on the changelog topics the quix engine uses, and the consumed
    offsets of the transform group; no operations (a quix engine that takes over emits only its own)."""
    group = f"{prefix}{TRANSFORM_APP_ID}"
    specs = {topic_name(spec, prefix): spec for spec in (ATTENDEE_STATUS, SESSION_ENGAGEMENT)}
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for topic, spec in specs.items():  # as the quix engine creates them: compacted, the input's partitions
        name = quix_changelog_name(group, topic)
        admin.create_topics([NewTopic(name, spec.partitions, 1, config={"cleanup.policy": "compact"})])[name].result(30)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(t, p, 0) for t, spec in specs.items() for p in range(spec.partitions)])
    keyed = KeyedSteps(tenants(), TransformMetrics(), clock=FixedNow().now, retention=RETENTION)
    state, stores, last = LeanState(), dict[tuple[str, int], LeanStore](), dict[tuple[str, int], int]()
    deadline, read = time.monotonic() + 60, 0
    while read < records:
        assert time.monotonic() < deadline, f"read {read} of {records} input records"
        for m in consumer.consume(100, timeout=0.5):
            topic, partition, offset, key = m.topic(), m.partition(), m.offset(), m.key()
            assert topic is not None and partition is not None and offset is not None and key is not None
            store = stores.get((topic, partition))
            if store is None:
                store = stores[(topic, partition)] = LeanStore(root / topic / str(partition),
                                                               quix_changelog_name(group, topic), partition)
            state.bind(store, key, m.timestamp()[1])
            keyed.record(specs[topic], m.value() or b"", SourceRef(topic=topic, partition=partition, offset=offset,
                                                                   key=key.decode()), state)
            last[(topic, partition)], read = offset, read + 1
    producer = transactional(broker, f"{prefix}lean")
    for (topic, partition), store in stores.items():
        store.sweep_due()
        for key, value, headers in store.changelog_records({topic: last[(topic, partition)]}):
            producer.produce(store.changelog, value, key, partition=partition, headers=headers)
    producer.send_offsets_to_transaction([TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                                         consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
    for store in stores.values():
        store.apply(None)
        store.close()
    consumer.close()


@pytest.mark.kafka
def test_a_quix_engine_takes_over_the_state_lean_wrote(kafka_broker: KafkaBroker, topic_prefix: str,
                                                        tmp_path: Path) -> None:
    """Lean processes each person's statuses and final engagement snapshot; the same records come again and a quix
    engine on a fresh state directory takes over: recovered from lean's changelog, its state knows them, so
    only the idempotent custom object upserts come again (no status, no lead change, no second activity:
    tests/transform/test_repeated_input.py). Without lean's state every operation would be emitted again."""
    people = 4
    records = [r for i in range(people) for r in person(i) if r[0] is not POLL_RESPONSES]
    asyncio.run(produce(kafka_broker.bootstrap, topic_prefix, records))
    lean_pass(kafka_broker, topic_prefix, tmp_path / "lean", len(records))
    asyncio.run(produce(kafka_broker.bootstrap, topic_prefix, records))
    run_quix(kafka_broker, topic_prefix, tmp_path / "quix", len(records), people)
    ops = asyncio.run(read_to_end(kafka_broker.bootstrap, topic_name(MARKETO_OPS, topic_prefix)))
    assert Counter(orjson.loads(m.value)["kind"] for m in ops) == {"custom_object_upsert": people}
