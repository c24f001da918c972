"""A producer partitioner that hashes each key once (issue #22).

aiokafka's default partitioner puts a keyed record on ``(murmur2(key) & 0x7fffffff) % partitions``
(docs/reference/streaming.md §3, Partitioner), computing murmur2 in pure Python on every send. The sink
keys every outcome, dead letter and intent by the Munchkin id, so it hashed the same few keys for every
record. :class:`CachedKeyPartitioner` returns exactly the default partitioner's partition (the same
murmur2) and remembers it per key and partition count; a record without a key still goes to a random
partition, as with the default.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.partitioner import DefaultPartitioner, murmur2

#: Keys remembered at most; past it the memory starts again (a sink has a handful of instances).
MAX_KEYS = 4096


class CachedKeyPartitioner:
    """Pass as ``partitioner=`` to ``reliable_producer``: the default partitioner's choice, computed once per key."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._index: dict[tuple[bytes, int], int] = {}
        self._max_keys = max_keys

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            partition: int = DefaultPartitioner()(key, all_partitions, available)
            return partition
        count = len(all_partitions)
        index = self._index.get((key, count))
        if index is None:
            if len(self._index) >= self._max_keys:
                self._index.clear()
            index = self._index[(key, count)] = (murmur2(key) & 0x7FFFFFFF) % count
        return all_partitions[index]
