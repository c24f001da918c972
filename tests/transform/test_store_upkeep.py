"""Transform's state stores after an expiry (issue #14): a store partition that is mostly tombstones is
compacted back to its live entries, the block cache emptied and freed memory given back; quixstreams'
private parts the upkeep reaches are where it expects them; end to end, a replica's stores hold no
tombstone of an expired event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from quixstreams import Application
from quixstreams.state.rocksdb import RocksDBOptions
from rocksdict import AccessType, Options, Rdict

from kmsync_contracts import AttendeeStatus, SessionEngagement
from kmsync_contracts.topics import ATTENDEE_STATUS, MARKETO_OPS, SESSION_ENGAGEMENT, TRANSFORM_DLQ, TopicSpec
from kmsync_kafka import ensure_topics
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.store_upkeep import (
    StoreAccess,
    StoreUpkeep,
    compact,
    compaction_due,
    live_keys,
    quix_internals,
    tombstones,
)

from .conftest import EVENT, LEGACY_EVENT, PARTNER
from .test_integration import expected_ops, transform_process
from .test_quix_engine import DEADLINE, INPUTS, produce_at, wait_for_ops


def _store(path: Path, *families: str) -> Rdict:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    db = Rdict(str(path), options)
    for name in families:
        db.create_column_family(name, options)
    return db


def _fill(db: Rdict, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        db[b"key-%06d" % i] = b"v" * 200


def _expire(db: Rdict, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        del db[b"key-%06d" % i]


def _sst_bytes(db: Rdict) -> int:
    return db.property_int_value("rocksdb.total-sst-files-size") or 0


def test_tombstones_counts_deletes_in_memtables_and_table_files_and_compaction_drops_them(tmp_path: Path) -> None:
    db = _store(tmp_path / "p0", "__ttl_index__")
    index = db.get_column_family("__ttl_index__")
    _fill(db, 500)
    _fill(index, 500)
    db.flush()
    index.flush()
    live_size = _sst_bytes(db)
    _expire(db, 500)
    _expire(index, 500)
    assert tombstones(db) == 500  # in the memtable
    db.flush()
    assert tombstones(db) == 500  # in a table file (rocksdb.aggregated-table-properties' "# deletions")
    assert live_keys(db) == 0 and _sst_bytes(db) > live_size  # the deleted values and their tombstones
    assert compaction_due(tombstones(db), live_keys(db))

    compact(str(tmp_path / "p0"), db)

    assert (tombstones(db), tombstones(index)) == (0, 0)
    assert (_sst_bytes(db), _sst_bytes(index)) == (0, 0)
    assert (db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0) < 64 * 1024  # the memtables flushed
    db.close()


def test_a_store_is_compacted_only_when_tombstones_are_a_large_share() -> None:
    assert not compaction_due(0, 0)
    assert not compaction_due(0, 1_000)
    assert not compaction_due(10, 1_000)  # the odd deleted entry of a large store
    assert compaction_due(250, 750)
    assert compaction_due(3, 0)


class _Cache:
    def __init__(self) -> None:
        self.capacities: list[int] = []

    def set_capacity(self, capacity: int) -> None:
        self.capacities.append(capacity)


def _internals(stores: list[tuple[str, Rdict]], cache: _Cache, tasks: list[Callable[[], None]]) -> StoreAccess:
    def block_cache(capacity: int) -> Any:
        return cache

    return StoreAccess(tasks.append, lambda: stores, block_cache)


def test_upkeep_compacts_the_expired_partition_then_empties_the_block_cache(tmp_path: Path) -> None:
    expired, busy = _store(tmp_path / "expired"), _store(tmp_path / "busy")
    _fill(expired, 300)
    _fill(busy, 1_000)
    for db in (expired, busy):
        db.flush()
    _expire(expired, 300)
    _expire(busy, 20)
    cache = _Cache()
    upkeep = StoreUpkeep(_internals([(str(tmp_path / "expired"), expired), (str(tmp_path / "busy"), busy)],
                                    cache, []), 8 << 20)

    done = upkeep.run()

    assert (done.partitions, done.tombstones) == (1, 300)
    assert tombstones(expired) == 0 and _sst_bytes(expired) == 0
    assert tombstones(busy) == 20  # 2 % tombstones: left to RocksDB
    assert cache.capacities == [0, 8 << 20]  # every cached block evicted, the capacity restored
    assert upkeep.run().partitions == 0  # nothing left to do
    assert cache.capacities == [0, 8 << 20]
    for db in (expired, busy):
        db.close()


def test_upkeep_runs_a_round_every_check_seconds_on_the_main_loop(tmp_path: Path) -> None:
    db = _store(tmp_path / "p")
    now = [100.0]
    upkeep = StoreUpkeep(_internals([(str(tmp_path / "p"), db)], _Cache(), []), 1 << 20, check_seconds=10,
                         clock=lambda: now[0])
    _fill(db, 10)
    _expire(db, 10)
    upkeep.tick()
    assert tombstones(db) == 10  # not due yet
    now[0] = 110.0
    upkeep.tick()
    assert tombstones(db) == 0
    db.close()


def test_a_failed_upkeep_round_is_logged_and_processing_goes_on(caplog: Any) -> None:
    def partitions() -> list[tuple[str, Rdict]]:
        raise RuntimeError("store closed")

    now = [0.0]
    upkeep = StoreUpkeep(StoreAccess(lambda task: None, partitions, lambda capacity: _Cache()), 1 << 20,
                         check_seconds=10, clock=lambda: now[0])
    now[0] = 10.0
    upkeep.tick()  # does not raise
    assert "state upkeep round failed" in caplog.text and "store closed" in caplog.text


def test_quixstreams_internals_are_where_the_upkeep_reaches_for_them(tmp_path: Path) -> None:
    """Fails when a quixstreams upgrade moves Application._dataframe_registry, _state_manager.stores,
    a store partition's `_db` or options._shared_block_cache (store_upkeep.quix_internals)."""
    capacity = 3 * 1024 * 1024 + 7  # a capacity no other test's cache has
    app = Application(broker_address="127.0.0.1:1", consumer_group="upkeep", state_dir=tmp_path,
                      use_changelog_topics=False, rocksdb_options=RocksDBOptions(block_cache_size=capacity))
    app._state_manager.register_store("topic-a", "default")
    app._state_manager.on_partition_assign("topic-a", 3, {})
    internals = quix_internals(app)
    try:
        [(path, db)] = internals.partitions()
        assert Path(path) == tmp_path / "upkeep" / "default" / "topic-a" / "3"
        _fill(db, 100)
        db.flush()
        assert all(db[b"key-%06d" % i] for i in range(100))
        assert internals.block_cache(capacity).get_usage() > 0  # the cache the store reads through
        ran: list[int] = []
        internals.register_periodic_task(lambda: ran.append(1))
        app._dataframe_registry.run_periodic_tasks()  # what Application.run's loop calls after each poll
        assert ran == [1]
    finally:
        app._state_manager.close()


def _state_stores(state_dir: Path) -> list[Path]:
    return sorted(p.parent for p in state_dir.rglob("CURRENT"))


def _store_contents(path: Path) -> tuple[int, list[bytes]]:
    """(tombstones over every column family, the default column family's keys) of a stopped replica's store."""
    options = Options(raw_mode=True)
    families = {name: Options(raw_mode=True) for name in Rdict.list_cf(str(path))}
    db = Rdict(str(path), options, column_families=families, access_type=AccessType.read_only())
    try:
        dead = sum(tombstones(db.get_column_family(name)) for name in families)
        return dead, [k for k in db.keys() if isinstance(k, bytes)]
    finally:
        db.close()


def _people(event: int, users: range, when: datetime) -> list[tuple[TopicSpec, BaseModel]]:
    out: list[tuple[TopicSpec, BaseModel]] = []
    for i in users:
        common = {"partner_id": PARTNER, "virtual_event_id": event, "user_id": f"upkeep-{i:03d}",
                  "email": f"p{i}@example.com", "source": "pull", "source_time": when, "ingested_at": when}
        out += [(ATTENDEE_STATUS, AttendeeStatus(**common, status="registered", status_time=when)),
                (SESSION_ENGAGEMENT, SessionEngagement(**common, entry_id="0_keynote", is_final=True, plays=1))]
    return out


@pytest.mark.parametrize("engine", ["quix", "lean"])
async def test_a_replicas_stores_hold_no_tombstone_of_an_expired_event(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, engine: str,
) -> None:
    """Event A (40 people, 10 hours old) expires when event B's records move the partition's time on:
    the replica compacts its stores, and after it stops they hold B's entries and no tombstone (without
    the upkeep: A's 80+ deletes and their index entries' stay in the memtables and table files)."""
    await ensure_topics(kafka_broker.bootstrap, INPUTS, topic_prefix, partitions=1)
    await ensure_topics(kafka_broker.bootstrap, [MARKETO_OPS, TRANSFORM_DLQ], topic_prefix)
    now = datetime.now(UTC)
    event_a, event_b = _people(EVENT, range(40), now), _people(LEGACY_EVENT, range(40, 42), now)
    a_ops, b_ops = [op.op_id for op in expected_ops(event_a)], [op.op_id for op in expected_ops(event_b)]
    await produce_at(kafka_broker, topic_prefix, event_a, now - timedelta(hours=10))
    state = tmp_path / "state"
    with transform_process(kafka_broker, topic_prefix, tmp_path, "upkeep", KMSYNC_TRANSFORM_ENGINE=engine,
                           KMSYNC_TRANSFORM_STATE_DIR=str(state), KMSYNC_TRANSFORM_STATE_RETENTION_SECONDS="3600",
                           KMSYNC_TRANSFORM_COMMIT_INTERVAL_MS="500") as running:
        await wait_for_ops(kafka_broker, topic_prefix, lambda got: set(a_ops) <= set(got), "event A's ops", tmp_path)
        await produce_at(kafka_broker, topic_prefix, event_b, now)
        await wait_for_ops(kafka_broker, topic_prefix, lambda got: set(b_ops) <= set(got), "event B's ops", tmp_path)

        async def compacted() -> bool:
            return "state compacted after an expiry" in running.log.read_text(errors="replace")

        await wait_for(compacted, within=DEADLINE, what=f"the stores compacted (log {running.log})")
    contents = [_store_contents(p) for p in _state_stores(state)]
    assert contents, f"no RocksDB store under {state}"
    assert sum(dead for dead, _ in contents) == 0
    keys = [k for _, found in contents for k in found]
    assert keys and not any(f"upkeep-{i:03d}".encode() in k for k in keys for i in range(40))
    assert any(b"upkeep-040" in k for k in keys)
