"""Options the lean and the quix engine set alike: RocksDB's memory and the producer's linger.

Plain values, so that importing them loads neither engine (nor quixstreams' application)."""

from __future__ import annotations

#: RocksDB memory. quixstreams' defaults (64 MiB memtables, up to 3 per store partition, 1 GiB block
#: cache) suit large state; transform keeps small per-person entries in many store partitions
#: (two stateful inputs and the polls' repartition topic, times their partitions), where those
#: memtables hold every write and every expiry tombstone until they fill. Small memtables flush
#: often, so memory follows the live state; after an expiry store_upkeep.py compacts the stores and
#: empties this cache (measured in docs/benchmarks.md, "Transform: state retention, memory and recovery").
ROCKSDB_WRITE_BUFFER_BYTES = 2 * 1024 * 1024
ROCKSDB_MAX_WRITE_BUFFERS = 2
ROCKSDB_BLOCK_CACHE_BYTES = 32 * 1024 * 1024
#: How long librdkafka gathers produced records into a batch (linger.ms). Under exactly-once nothing
#: transform produces is visible before its checkpoint's transaction commits (read_committed readers,
#: docs/reference/streaming.md §3), and quixstreams flushes the producer before it commits, so a linger
#: up to the commit interval delays no reader; it only makes fewer, larger produce requests, each of
#: which the broker validates and appends as one transactional batch. Measured (issue #22, 10,000
#: engagement rows through the quix engine, back to back, load 1.5-2.5): the broker's CPU per 10,000 rows
#: 1.26 -> 0.84 s and 0.91 -> 0.68 s (medians, noisy), transform's own CPU unchanged, 5 ms -> 100 ms.
PRODUCER_LINGER_MS = 100
