"""Transform's state stores after an expiry: compacted, and the memory they held given back (issue #14).

quixstreams deletes expired entries (a RocksDB tombstone per entry, and per entry of its TTL index). RocksDB
keeps those tombstones, the deleted values under them, the memtables that took them and the table files'
index blocks until a compaction, which a small store that has gone quiet rarely triggers: a long-running
replica's memory and local state directory grew with every event that expired (docs/benchmarks.md,
"Transform: state retention, memory and recovery"). So, on quixstreams' main loop (between polls, where
partitions are assigned and revoked, so never concurrently with a rebalance), every CHECK_SECONDS:

1. each store partition whose default column family is at least TOMBSTONE_SHARE tombstones is compacted
   (every column family, whole key range: RocksDB flushes the memtables into it, drops the tombstones
   and the values they delete; what the store holds does not change, so the changelog, its offsets and
   exactly-once are untouched);
2. after a compaction, the block cache is emptied (its blocks belong to the table files the compaction
   just replaced; RocksDB leaves them to age out, so the cache only grew) and glibc's malloc_trim gives
   the freed native memory back to the operating system.

`configure_malloc()` (at start) fixes glibc's mmap threshold: otherwise glibc raises it after the first
large block is freed, and the memtables' arena blocks and librdkafka's buffers then come from the heap,
where freed memory stays fragmented and resident.
"""

from __future__ import annotations

import ctypes
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from quixstreams import Application
from quixstreams.state.rocksdb import RocksDBStorePartition
from rocksdict import BottommostLevelCompaction, CompactOptions, Rdict

log = logging.getLogger("kmsync.transform")

#: How often the stores' tombstones are looked at (a few property reads per store partition).
CHECK_SECONDS = 10.0
#: A store partition is compacted when at least this share of its default column family's entries are
#: tombstones: an expired event's, not the odd deleted entry of a large store.
TOMBSTONE_SHARE = 0.25
#: glibc's M_MMAP_THRESHOLD (mallopt parameter -3) and the value it is fixed at (its initial default).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024

_DELETIONS = re.compile(r"# deletions=(\d+)")


@dataclass(frozen=True)
class StoreAccess:
    """What the upkeep needs of an engine's stores: quixstreams' have no public API for it (``quix_internals``);
    the lean engine's are its own (engine_lean.py)."""

    #: Runs a callable on the main loop after every poll.
    register_periodic_task: Callable[[Callable[[], None]], None]
    #: The assigned store partitions: (path, the RocksDB database as its default column family).
    partitions: Callable[[], list[tuple[str, Rdict]]]
    #: The process-wide block cache of a capacity (rocksdict.Cache).
    block_cache: Callable[[int], Any]


def quix_internals(app: Application) -> StoreAccess:
    """Every reach into quixstreams 3.28's private parts, in this one function (tests/transform/
    test_store_upkeep.py fails if they move): Application._dataframe_registry (the periodic tasks its
    run loop calls), Application._state_manager.stores ({stream: {store name: store}}, each store's
    `partitions`, each partition's `_db` Rdict) and options._shared_block_cache (one cache per capacity)."""
    from quixstreams.state.rocksdb.options import _shared_block_cache

    def partitions() -> list[tuple[str, Rdict]]:
        stores = [store for by_name in app._state_manager.stores.values() for store in by_name.values()]
        found = [cast(RocksDBStorePartition, p) for store in stores for p in store.partitions.values()]
        return [(p.path, p._db) for p in found]

    return StoreAccess(app._dataframe_registry.register_periodic_task, partitions, _shared_block_cache)


def lean_access(partitions: Callable[[], list[tuple[str, Rdict]]]) -> StoreAccess:
    """The lean engine's stores (engine_lean.py: it calls ``tick`` itself, between polls). Their RocksDB options are
    quixstreams' (``RocksDBOptions.to_options``), so their block cache is its process-wide one: the same private
    reach as ``quix_internals``."""
    from quixstreams.state.rocksdb.options import _shared_block_cache

    return StoreAccess(lambda task: None, partitions, _shared_block_cache)


def tombstones(db: Rdict) -> int:
    """Deletes the column family still carries: in its memtables and in its table files."""
    in_memory = sum(db.property_int_value(name) or 0
                    for name in ("rocksdb.num-deletes-active-mem-table", "rocksdb.num-deletes-imm-mem-tables"))
    found = _DELETIONS.search(db.property_value("rocksdb.aggregated-table-properties") or "")
    return in_memory + (int(found.group(1)) if found else 0)


def live_keys(db: Rdict) -> int:
    return db.property_int_value("rocksdb.estimate-num-keys") or 0


def compaction_due(dead: int, live: int, share: float = TOMBSTONE_SHARE) -> bool:
    return dead > 0 and dead >= share * (dead + live)


def compact(path: str, db: Rdict) -> None:
    """Every column family of one store partition, its whole key range, the last level included: a small
    store's one level is its last, and RocksDB by default leaves the last level's files as they are."""
    options = CompactOptions()
    options.set_bottommost_level_compaction(BottommostLevelCompaction.force_optimized())
    for name in Rdict.list_cf(path):
        db.get_column_family(name).compact_range(None, None, options)


def configure_malloc() -> bool:
    """Fix glibc's mmap threshold (see the module's docstring); False where the C library is not glibc."""
    mallopt = getattr(_libc(), "mallopt", None)
    return bool(mallopt is not None and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def release_free_memory() -> bool:
    """glibc's malloc_trim(0): free pages of every malloc arena back to the operating system."""
    trim = getattr(_libc(), "malloc_trim", None)
    return bool(trim is not None and trim(0))


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:  # pragma: no cover - every Linux process has a C library
        return None


@dataclass(frozen=True)
class UpkeepRound:
    partitions: int
    tombstones: int
    seconds: float


class StoreUpkeep:
    """`tick()` on every pass of the main loop; a round of `run()` every `check_seconds`."""

    def __init__(self, internals: StoreAccess, block_cache_bytes: int, *, check_seconds: float = CHECK_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.internals = internals
        self.block_cache_bytes = block_cache_bytes
        self.check_seconds = check_seconds
        self.clock = clock
        self._due = clock() + check_seconds
        #: Tombstones a partition still carried after its last compaction (RocksDB keeps one it cannot drop
        #: yet): it is compacted again only once the sweeps have added more.
        self._left: dict[str, int] = {}

    def tick(self) -> None:
        now = self.clock()
        if now >= self._due:
            self._due = now + self.check_seconds
            try:
                self.run()
            except Exception:  # the upkeep only gives memory back: a failed round must not stop transform
                log.warning("state upkeep round failed; processing continues, the next round in %.0f s",
                            self.check_seconds, exc_info=True)

    def run(self) -> UpkeepRound:
        started = time.monotonic()
        compacted = dropped = 0
        partitions = self.internals.partitions()
        self._left = {path: n for path, n in self._left.items() if any(path == p for p, _ in partitions)}
        for path, db in partitions:
            dead = tombstones(db)
            if dead > self._left.get(path, 0) and compaction_due(dead, live_keys(db)):
                compact(path, db)
                self._left[path] = left = tombstones(db)
                compacted += 1
                dropped += dead - left
        done = UpkeepRound(compacted, dropped, time.monotonic() - started)
        if compacted:
            cache = self.internals.block_cache(self.block_cache_bytes)
            cache.set_capacity(0)  # evicts every block no reader holds
            cache.set_capacity(self.block_cache_bytes)
            release_free_memory()
            log.info("state compacted after an expiry: %d store partitions, %d tombstones, %.2f s",
                     done.partitions, done.tombstones, done.seconds)
        return done
