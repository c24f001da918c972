"""The lean engine's state (issue #22): one input partition's store, written in quixstreams' OWN changelog format
on quixstreams' own changelog topics, so the quix and the lean engine take over each other's state (a rollout or
a rollback needs no migration).

What is shared is the changelog; the local RocksDB layout is ours. Everything below mirrors quixstreams 3.28.1
(its package ``quixstreams.state``; https://github.com/quixio/quix-streams), observed on the quix engine's own
changelogs:

- **key**: ``<prefix>|<state key>`` (``base/transaction.py`` ``PartitionTransaction._serialize_key`` and
  ``as_state``): the prefix is the message key as it is when bytes (the status and engagement inputs), else its
  JSON (the polls' session, a str: ``"<session>"``; a null key: ``null``); an empty prefix has no separator;
  the state key is JSON text (``"statuses:<member>"``). JSON is ``quixstreams.utils.json.dumps`` (orjson).
- **value**: ``<8-byte big-endian expiry ms><JSON value>`` (``rocksdb/ttl_codec.py`` ``encode_ttl_value``); the
  expiry is ``RocksDBPartitionTransaction._compute_stamp``'s (record timestamp + ttl rounded up to ms;
  ``SENTINEL_NEVER`` = 2**64-1 for no ttl or a negative record timestamp); a delete is a tombstone.
- **headers** (``base/transaction.py`` ``PartitionTransaction._prepare``): ``__column_family__: default``,
  ``__processed_tp_offsets__``: JSON ``{<input topic>: <offset of the last record processed>}``, and
  ``__ttl_stamped__: 0x01`` (the partition is in TTL mode); each key once per checkpoint with its last value.
- **the migration-done marker**: the first checkpoint of a store (quixstreams' "flip" into TTL mode on an empty
  store, ``RocksDBPartitionTransaction._write_migration_done_marker_to_cache``) also writes
  ``__ttl_migration_done__`` = 8-byte big-endian 2 under ``__column_family__: __ttl_system__`` (no stamped header),
  after the default records. A quix engine recovering a changelog without it produces it itself at the end of its
  recovery (``RocksDBStorePartition.complete_recovery``, the empty-census branch); we write it like a quix flip.
- **expiry** (``RocksDBPartitionTransaction._get_bytes``): an entry whose stamp is ``<= high water`` reads as
  absent, where the high water is the partition's highest record timestamp seen by a state read or write so far
  (``RocksDBStorePartition.advance_high_water``: timestamps < 0 or >= 10**15 ignored; the current record's is
  included, since a read advances it first; a delete does not advance it). It is persisted with each write and
  None after a cold start (nothing expires then). The sweep (``sweep_expired_into_cache``, run at each checkpoint
  whose transaction changed the store) tombstones entries whose stamp is ``<= high water`` on the changelog.
- **recovery** (``state/recovery.py`` ``RecoveryPartition.recover_from_changelog_message``,
  ``RocksDBStorePartition.recover_from_changelog_message``): a record without ``__column_family__`` is an error;
  one whose processed offset is ``>=`` the group's committed offset of that topic is skipped (under exactly-once a
  changelog record commits with its input's offsets, so only after the group's offsets were moved back by hand;
  the lean engine applies every record); other column families (the marker) carry no state; a stamped record whose
  stamp is ``<=`` the high water the store had before the replay is deleted rather than kept.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from quixstreams.state.metadata import (
    CHANGELOG_CF_MESSAGE_HEADER,
    CHANGELOG_PROCESSED_OFFSETS_MESSAGE_HEADER,
    CHANGELOG_TTL_STAMPED_HEADER,
    TTL_MIGRATION_DONE_KEY,
    TTL_SYSTEM_CF_NAME,
)
from quixstreams.state.rocksdb import RocksDBOptions
from quixstreams.state.rocksdb.metadata import STATE_FORMAT_VERSION
from quixstreams.state.rocksdb.ttl_codec import SENTINEL_NEVER
from rocksdict import Rdict, ReadOptions, WriteBatch

from kmsync_transform.engine_options import (
    ROCKSDB_BLOCK_CACHE_BYTES,
    ROCKSDB_MAX_WRITE_BUFFERS,
    ROCKSDB_WRITE_BUFFER_BYTES,
)

log = logging.getLogger("kmsync.transform")

#: quixstreams' JSON (``quixstreams.utils.json.dumps``): orjson with these options.
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_dumps = orjson.dumps
_loads = orjson.loads
_STAMP = struct.Struct(">Q")
_pack = _STAMP.pack
_unpack_from = _STAMP.unpack_from
STAMP_BYTES = _STAMP.size
#: The bound of a plausible stamp and high water (quixstreams.state.rocksdb.ttl_codec._MAX_PLAUSIBLE_STAMP_MS).
MAX_PLAUSIBLE_MS = 10**15
#: "No high water yet" (quixstreams' None): below every stamp, so nothing expires.
NO_HIGH_WATER = -1
#: quixstreams' sweep budget per checkpoint (RocksDBOptions.max_evictions_per_flush's default).
QUIX_SWEEP_LIMIT = 150_000
#: The marker's value: quixstreams' STATE_FORMAT_VERSION as 8 bytes (``int_to_bytes``).
MARKER_VALUE = _pack(STATE_FORMAT_VERSION)
DEFAULT_CF = "default"
_CF_DEFAULT = DEFAULT_CF.encode()
_CF_SYSTEM = TTL_SYSTEM_CF_NAME.encode()
#: Our local layout: the values in the default column family as quixstreams keeps them (key → stamped value), the
#: expiry index (stamp || key → b"") and our metadata in two more.
INDEX_CF, META_CF = "lean_expiry_index", "lean_meta"
_NEXT_OFFSET, _HIGH_WATER, _MARKER = b"changelog_next_offset", b"high_water_ms", b"marker_on_changelog"
#: Changelog records read in a recovery before what they changed is written (with the offset reached).
RECOVERY_CHUNK = 20_000
Headers = list[tuple[str, bytes]]
ChangelogRecord = tuple[bytes, bytes | None, Headers]


class LeanStoreError(RuntimeError):
    """A store cannot be used or recovered as it is (the message says why and what to do)."""


def quix_changelog_name(group_id: str, topic: str, store: str = "default") -> str:
    """The changelog quixstreams keeps for the store of ``topic``'s stream (``TopicManager._internal_name`` and
    ``_format_nested_name``): ``changelog__<group>--<topic>--<store>``, where an internal topic of the group
    (``repartition__<group>--<polls>--session``) is nested as ``repartition.<polls>.session``. Observed: the polls'
    store is ``changelog__<group>--repartition.<polls topic>.session--default``."""
    if f"__{group_id}--" in topic:
        topic = topic.replace(f"__{group_id}", "").replace("--", ".")
    return f"changelog__{group_id}--{topic}--{store}"


def default_options() -> RocksDBOptions:
    """The quix engine's RocksDB options (engine_options.py's ROCKSDB_* constants)."""
    return RocksDBOptions(write_buffer_size=ROCKSDB_WRITE_BUFFER_BYTES,
                          max_write_buffer_number=ROCKSDB_MAX_WRITE_BUFFERS,
                          block_cache_size=ROCKSDB_BLOCK_CACHE_BYTES)


def quix_stamp(ttl: timedelta | None, timestamp: int) -> int:
    """The expiry a write gets (``RocksDBPartitionTransaction._compute_stamp``, including its refusals)."""
    if ttl is None:
        return SENTINEL_NEVER
    if ttl <= timedelta(0):
        raise ValueError(f"ttl must be a positive timedelta or None, got {ttl!r}")
    expiry = timestamp + ttl_ms(ttl)
    if expiry <= 0:
        raise ValueError(f"ttl={ttl!r} on a record of timestamp {timestamp} gives a non-positive expiry")
    if expiry >= MAX_PLAUSIBLE_MS:
        raise ValueError(f"ttl={ttl!r} on a record of timestamp {timestamp} gives an implausible expiry")
    if timestamp < 0:  # no position in event time (Kafka's NO_TIMESTAMP): stored without a TTL
        return SENTINEL_NEVER
    return expiry


def ttl_ms(ttl: timedelta) -> int:
    """A positive timedelta in ms, rounded up (``quixstreams.state.rocksdb.transaction._ttl_to_ms``)."""
    micros = ttl.days * 86_400_000_000 + ttl.seconds * 1_000_000 + ttl.microseconds
    return -(-micros // 1000)


class LeanStore:
    """One input partition's state: a local RocksDB plus the changes of the checkpoint in hand (staged; nothing
    reaches RocksDB before ``apply``). Keys and values are the bytes quixstreams writes (see the module)."""

    def __init__(self, path: Path, changelog: str, partition: int, options: RocksDBOptions | None = None) -> None:
        self.changelog, self.partition, self.path = changelog, partition, path
        self._options = options or default_options()
        self._open()

    def _open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        opts = self._options.to_options()
        opts.create_missing_column_families(True)
        self._db = Rdict(str(self.path), opts, column_families={INDEX_CF: opts, META_CF: opts})
        self._index = self._db.get_column_family(INDEX_CF)
        self._index_cf = self._db.get_column_family_handle(INDEX_CF)
        self._meta_cf = self._db.get_column_family_handle(META_CF)
        meta = self._db.get_column_family(META_CF)
        stored = meta.get(_HIGH_WATER)
        #: The partition's event-time high water (NO_HIGH_WATER: none yet); the clock of expiry and of the sweep.
        self.high_water_ms: int = NO_HIGH_WATER if stored is None else _unpack_from(stored)[0]
        stored = meta.get(_NEXT_OFFSET)
        self._next_offset: int | None = None if stored is None else _unpack_from(stored)[0]
        self._marker = meta.get(_MARKER) is not None
        del meta
        self._persisted_high_water = self.high_water_ms
        #: The checkpoint in hand: key → stamped value, None for a delete (the last change of a key wins).
        self._staged: dict[bytes, bytes | None] = {}
        self._index_drops: list[bytes] = []  # stale index entries the sweep met (written with the stage)
        self._marker_staged = False
        self._recovery: _Recovery | None = None

    @property
    def db(self) -> Rdict:
        """The local RocksDB (its default column family), for store_upkeep.py's compaction after an expiry."""
        return self._db

    # ----- the checkpoint in hand
    def advance(self, timestamp_ms: int) -> None:
        """Move the high water to a record's timestamp (``advance_high_water``: only forward, only plausible)."""
        if self.high_water_ms < timestamp_ms < MAX_PLAUSIBLE_MS:
            self.high_water_ms = timestamp_ms

    def get(self, key: bytes, now_ms: int) -> bytes | None:
        """The value's bytes (without the stamp), the staged change first; None when absent, deleted, or expired:
        stamp ``<= now_ms`` (pass ``high_water_ms``, quixstreams' clock; NO_HIGH_WATER expires nothing)."""
        raw = self._staged.get(key, _UNSTAGED)
        if raw is _UNSTAGED:
            raw = self._db.get(key)
        if raw is None:
            return None
        stamp = _unpack_from(raw)[0]
        if stamp <= now_ms:  # the sentinel is above every plausible clock
            return None
        return raw[STAMP_BYTES:]

    def put(self, key: bytes, value: bytes, expires_ms: int) -> None:
        """Stage a write: ``value`` (serialized) expiring at ``expires_ms`` (SENTINEL_NEVER: never)."""
        self._staged[key] = _pack(expires_ms) + value

    def delete(self, key: bytes) -> None:
        self._staged[key] = None

    @property
    def changed(self) -> bool:
        """Whether the checkpoint in hand changed this store (quixstreams sweeps only then)."""
        return bool(self._staged)

    def sweep(self, now_ms: int, limit: int = QUIX_SWEEP_LIMIT) -> int:
        """Stage deletes of expired entries (stamp ``<= now_ms``), visiting at most ``limit`` index entries (stale
        ones included, as quixstreams' budget); returns how many were staged. Each becomes a changelog tombstone.
        To do what quixstreams does (``sweep_expired_into_cache``), call it before ``changelog_records`` with
        ``now_ms=high_water_ms`` when ``changed``; ``sweep_due`` does exactly that. A key staged in this checkpoint
        is not evicted (its committed stamp is stale)."""
        if now_ms < 0 or limit <= 0:
            return 0
        read = ReadOptions()
        if now_ms + 1 < SENTINEL_NEVER:
            read.set_iterate_upper_bound(_pack(now_ms + 1))
        evicted = visited = 0
        staged, db = self._staged, self._db
        index_keys = cast(Iterable[bytes], self._index.keys(from_key=b"", read_opt=read))
        for index_key in index_keys:
            if visited >= limit:
                break
            visited += 1
            stamp, key = _unpack_from(index_key)[0], index_key[STAMP_BYTES:]
            raw = db.get(key)
            current = None if raw is None else _unpack_from(raw)[0]
            if current == stamp and (key not in staged or staged[key] is None):
                staged[key] = None
                evicted += 1
            self._index_drops.append(index_key)
        return evicted

    def sweep_due(self, limit: int = QUIX_SWEEP_LIMIT) -> int:
        """quixstreams' prepare-time sweep: against the high water, only when the checkpoint changed the store."""
        return self.sweep(self.high_water_ms, limit) if self._staged else 0

    def changelog_records(self, processed_offsets: Mapping[str, int] | None) -> list[ChangelogRecord]:
        """Each staged change once, as quixstreams produces it: (key, stamped value or None, headers); writes
        first, then deletes, then the migration-done marker when this changelog may not carry it yet.
        ``processed_offsets``: input topic → offset of the LAST record processed (not the next one: a quix engine
        recovering skips a record whose offset is >= the group's committed offset)."""
        offsets = _dumps(None if processed_offsets is None else dict(processed_offsets), option=_JSON_OPTIONS)
        headers: Headers = [(CHANGELOG_CF_MESSAGE_HEADER, _CF_DEFAULT),
                            (CHANGELOG_PROCESSED_OFFSETS_MESSAGE_HEADER, offsets),
                            (CHANGELOG_TTL_STAMPED_HEADER, b"\x01")]
        staged = self._staged
        records: list[ChangelogRecord] = [(k, v, headers) for k, v in staged.items() if v is not None]
        wrote = bool(records)
        records += [(k, None, headers) for k, v in staged.items() if v is None]
        if wrote and not self._marker:
            records.append((TTL_MIGRATION_DONE_KEY, MARKER_VALUE, [
                (CHANGELOG_CF_MESSAGE_HEADER, _CF_SYSTEM), (CHANGELOG_PROCESSED_OFFSETS_MESSAGE_HEADER, offsets)]))
            self._marker_staged = True
        return records

    def apply(self, changelog_next: int | None) -> None:
        """After the checkpoint's transaction committed: the staged changes, their index entries, the high water
        and the next changelog offset to recover from (None: unchanged) in one WriteBatch; the stage is cleared.
        Nothing is written when nothing changed."""
        moved = self.high_water_ms != self._persisted_high_water or changelog_next not in (None, self._next_offset)
        if not (self._staged or self._index_drops or self._marker_staged or moved):
            return
        batch = WriteBatch(raw_mode=True)
        for index_key in self._index_drops:
            batch.delete(index_key, self._index_cf)
        self._stage_writes(batch, self._staged)
        meta = self._meta_cf
        if changelog_next is not None:
            batch.put(_NEXT_OFFSET, _pack(changelog_next), meta)
        if self.high_water_ms >= 0:
            batch.put(_HIGH_WATER, _pack(self.high_water_ms), meta)
        if self._marker_staged:
            batch.put(_MARKER, b"\x01", meta)
        self._db.write(batch)
        if changelog_next is not None:
            self._next_offset = changelog_next
        self._marker = self._marker or self._marker_staged
        self._persisted_high_water = self.high_water_ms
        self.discard()

    def discard(self) -> None:
        """Drop the checkpoint in hand (its transaction was aborted), the high water its records raised included:
        the records are read again after a rewind, and must find the entries the first pass found."""
        self.high_water_ms = self._persisted_high_water
        self._staged = {}
        self._index_drops = []
        self._marker_staged = False

    def _stage_writes(self, batch: WriteBatch, changes: Mapping[bytes, bytes | None]) -> None:
        """Each change into ``batch`` with its index entry; the entry of the value it replaces is deleted first."""
        if not changes:
            return
        keys = list(changes)
        index = self._index_cf
        olds = cast(list[bytes | None], self._db[cast(Any, keys)])
        for key, old in zip(keys, olds, strict=True):
            if old is not None:
                stamp = _unpack_from(old)[0]
                if stamp != SENTINEL_NEVER:
                    batch.delete(old[:STAMP_BYTES] + key, index)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
                continue
            batch.put(key, value)
            if _unpack_from(value)[0] != SENTINEL_NEVER:
                batch.put(value[:STAMP_BYTES] + key, b"", index)

    # ----- recovery from the changelog
    def recovery_start(self) -> int:
        """The changelog offset to read from (0 for a new store) and the start of a recovery. Every record is
        applied: quixstreams' skip of a record whose processed offset is not below the group's committed offset
        (``RecoveryPartition._should_apply_changelog``) is not done; under exactly-once a changelog record and its
        input's offsets commit in one transaction, so it would skip one only after the group's offsets were moved
        back by hand."""
        self._recovery = _Recovery(self.high_water_ms)
        return self._next_offset or 0

    def recover(self, key: bytes, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None,
                offset: int) -> None:
        """Apply one changelog record (at ``offset``) of a recovery ``recovery_start`` began."""
        recovery = self._recovery
        if recovery is None:
            raise LeanStoreError(f"{self.changelog}[{self.partition}]: recover() before recovery_start()")
        change = recovery.change(key, value, headers, offset, self.changelog)
        if change is not None:
            recovery.changes[key] = change[1]
        recovery.read += 1
        # Written every RECOVERY_CHUNK records read, with the offset reached: a recovery cut short (a timeout, a
        # kill) goes on from there, even over a changelog that rewrites a few keys many times.
        if recovery.read >= RECOVERY_CHUNK:
            self._write_recovered(recovery, offset + 1)

    def recovered(self, next_offset: int) -> None:
        """The recovery reached ``next_offset`` (the changelog's end): write what is left and where to go on."""
        recovery = self._recovery
        if recovery is None:
            raise LeanStoreError(f"{self.changelog}[{self.partition}]: recovered() before recovery_start()")
        self._write_recovered(recovery, next_offset)
        self._recovery = None

    def _write_recovered(self, recovery: _Recovery, next_offset: int) -> None:
        batch = WriteBatch(raw_mode=True)
        self._stage_writes(batch, recovery.changes)
        batch.put(_NEXT_OFFSET, _pack(next_offset), self._meta_cf)
        if recovery.marker:
            batch.put(_MARKER, b"\x01", self._meta_cf)
        self._db.write(batch)
        self._next_offset = next_offset
        self._marker = self._marker or recovery.marker
        recovery.changes, recovery.read = {}, 0

    def close(self) -> None:
        """Close RocksDB (its column family objects are dropped first: they hold its lock)."""
        self._index = self._index_cf = self._meta_cf = None  # type: ignore[assignment]
        self._db.close()

    def reset(self) -> None:
        """Empty the store, to be recovered from the changelog's start: its changelog is not the one it was
        written from (deleted and created again, so the store's offset is beyond the end)."""
        self.close()
        Rdict.destroy(str(self.path))
        self._open()


_UNSTAGED: Any = object()


class _Recovery:
    """What one recovery of a store has read: the changes not written yet and whether it met the marker."""

    def __init__(self, frontier: int) -> None:
        #: The high water before the replay (``_recovery_frontier_ms``): older stamps are dropped, not kept.
        self.frontier = frontier
        self.changes: dict[bytes, bytes | None] = {}
        #: Records read since the last write.
        self.read = 0
        self.marker = False

    def change(self, key: bytes, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None, offset: int,
               changelog: str) -> tuple[bytes, bytes | None] | None:
        """(key, stamped value or None) a changelog record makes, None when it changes no state."""
        found = dict(headers or ())
        cf = found.get(CHANGELOG_CF_MESSAGE_HEADER)
        if not cf:
            raise LeanStoreError(f"{changelog} offset {offset}: no {CHANGELOG_CF_MESSAGE_HEADER} header; "
                                 "not a quixstreams changelog record")
        if cf != _CF_DEFAULT:  # quixstreams' system column family: the migration-done marker, no state
            self.marker = self.marker or (cf == _CF_SYSTEM and key == TTL_MIGRATION_DONE_KEY)
            return None
        if value is None:
            return key, None
        if not found.get(CHANGELOG_TTL_STAMPED_HEADER) or len(value) < STAMP_BYTES:
            # Written before the store was in TTL mode (legacy, unstamped): kept without an expiry.
            return key, _pack(SENTINEL_NEVER) + value
        stamp = _unpack_from(value)[0]
        if stamp != SENTINEL_NEVER and stamp <= self.frontier:
            return key, None  # expired against the high water the store had (quixstreams drops it the same way)
        return key, value


class LeanState:
    """keyed.py's ``KeyedState`` for the current record, as quixstreams' ``TransactionState`` over a TTL store:
    ``bind`` it to the record's store, message key and timestamp. Keys and values are serialized as quixstreams
    does; a read or a write advances the store's high water to the record's timestamp first."""

    __slots__ = ("_ttl", "_ttl_ms", "prefix", "store", "timestamp")

    def __init__(self) -> None:
        self.store: LeanStore = _UNBOUND
        self.prefix = b""
        self.timestamp = NO_HIGH_WATER
        self._ttl: timedelta | None = None
        self._ttl_ms = 0

    def bind(self, store: LeanStore, prefix: Any, timestamp_ms: int) -> None:
        """The record's state: ``prefix`` is its message key as the engine deserialized it (bytes for the status
        and engagement inputs, the session str for repartitioned polls, None for a null key)."""
        self.store = store
        key = prefix if prefix.__class__ is bytes else _dumps(prefix, option=_JSON_OPTIONS)
        self.prefix = key + b"|" if key else b""
        self.timestamp = timestamp_ms

    def get(self, key: str, default: Any = None) -> Any:
        store = self.store
        ts = self.timestamp
        if store.high_water_ms < ts < MAX_PLAUSIBLE_MS:
            store.high_water_ms = ts
        raw = store.get(self.prefix + _dumps(key), store.high_water_ms)
        return default if raw is None else _loads(raw)

    def exists(self, key: str) -> bool:
        store = self.store
        ts = self.timestamp
        if store.high_water_ms < ts < MAX_PLAUSIBLE_MS:
            store.high_water_ms = ts
        return store.get(self.prefix + _dumps(key), store.high_water_ms) is not None

    def set(self, key: str, value: Any, ttl: timedelta | None = None) -> None:
        store = self.store
        ts = self.timestamp
        if store.high_water_ms < ts < MAX_PLAUSIBLE_MS:
            store.high_water_ms = ts
        if ttl is None:
            stamp = SENTINEL_NEVER
        elif ttl is self._ttl and ts >= 0 and 0 < ts + self._ttl_ms < MAX_PLAUSIBLE_MS:
            stamp = ts + self._ttl_ms  # the common case: the retention, on a plausible record timestamp
        else:
            stamp = quix_stamp(ttl, ts)
            self._ttl, self._ttl_ms = ttl, ttl_ms(ttl)
        store._staged[self.prefix + _dumps(key)] = _pack(stamp) + _dumps(value, option=_JSON_OPTIONS)

    def delete(self, key: str) -> None:
        self.store._staged[self.prefix + _dumps(key)] = None


class _Unbound:
    """LeanState's store before a record binds one."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("no record's state is bound")


_UNBOUND: Any = _Unbound()


def recover_stores(bootstrap: str, stores: Iterable[LeanStore], timeout_s: float) -> None:
    """Bring each store up to the end of its changelog partition, read from its ``recovery_start()`` with a
    consumer of its own (assigned, read_committed, nothing committed; the Python client requires a group.id, which
    is never joined). The end is the partition's high watermark read uncommitted, read again whenever the position
    reaches it: read_committed stops at the last stable offset, so a transaction still open at the tail (a previous
    owner's, until it commits or the broker aborts it after its transaction.timeout.ms) is waited for; an aborted
    one is passed. Raises LeanStoreError after ``timeout_s``."""
    todo = {(s.changelog, s.partition): s for s in stores}
    if not todo:
        return
    config = {"bootstrap.servers": bootstrap, "group.id": "kmsync-transform-lean-recovery",
              "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest"}
    reader = Consumer({**config, "isolation.level": "read_committed"})
    probe = Consumer({**config, "isolation.level": "read_uncommitted"})  # the true high watermark
    try:
        _Recoverer(reader, probe, todo, time.monotonic() + timeout_s, timeout_s).run()
    finally:
        reader.close()
        probe.close()


class _Recoverer:
    def __init__(self, reader: Consumer, probe: Consumer, stores: dict[tuple[str, int], LeanStore],
                 deadline: float, timeout_s: float) -> None:
        self.reader, self.probe, self.stores = reader, probe, stores
        self.deadline, self.timeout_s = deadline, timeout_s
        self.ends: dict[tuple[str, int], int] = {}
        self.starts: dict[tuple[str, int], int] = {}

    def _high(self, topic: str, partition: int) -> int:
        left = max(self.deadline - time.monotonic(), 1.0)
        try:
            return int(self.probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=left)[1])
        except KafkaException as exc:
            raise LeanStoreError(f"recovery of {topic}[{partition}]: its high watermark could not be read: "
                                 f"{exc}") from exc

    def run(self) -> None:
        assignment = []
        for (topic, partition), store in list(self.stores.items()):
            start = store.recovery_start()
            high = self._high(topic, partition)
            if start > high:  # the changelog was deleted and created again: the store is of another one
                log.warning("%s[%d]: the store at %s expects changelog offset %d, beyond the changelog's end %d (the "
                            "changelog was deleted and created again): emptied, recovered from the start",
                            topic, partition, store.path, start, high)
                store.reset()
                start = store.recovery_start()
            if start == high:
                store.recovered(start)
                del self.stores[(topic, partition)]
                continue
            self.ends[(topic, partition)], self.starts[(topic, partition)] = high, start
            assignment.append(TopicPartition(topic, partition, start))
        if assignment:
            self.reader.assign(assignment)
            self._read()

    def _read(self) -> None:
        while self.stores:
            if time.monotonic() > self.deadline:
                raise LeanStoreError(f"recovery not done in {self.timeout_s:.0f} s: {self._left()}")
            for message in self.reader.consume(num_messages=10_000, timeout=0.2):
                self._one(message)
            self._check_ends()

    def _one(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            raise LeanStoreError(f"recovery of {message.topic()}[{message.partition()}]: {error}")
        store = self.stores.get((message.topic(), message.partition()))
        if store is not None:
            offset = message.offset()
            assert offset is not None
            store.recover(message.key(), message.value(), message.headers(), offset)

    def _check_ends(self) -> None:
        where = list(self.stores)
        positions = self.reader.position([TopicPartition(t, p) for t, p in where])
        for (topic, partition), position in zip(where, positions, strict=True):
            if position.offset < self.ends[(topic, partition)]:
                continue
            high = self._high(topic, partition)  # more may have been written (or an open transaction ended)
            if position.offset < high:
                self.ends[(topic, partition)] = high
                continue
            self.stores.pop((topic, partition)).recovered(position.offset)

    def _left(self) -> str:
        where = list(self.stores)
        positions = self.reader.position([TopicPartition(t, p) for t, p in where])
        return "; ".join(f"{t}[{p}] at offset {max(pos.offset, self.starts[(t, p)])} of {self.ends[(t, p)]} (a "
                         "transaction still open at the tail stops a read_committed reader until it ends)"
                         for (t, p), pos in zip(where, positions, strict=True))
