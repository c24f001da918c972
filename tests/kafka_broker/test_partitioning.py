"""CachedKeyPartitioner (issue #22): the default partitioner's partition for every key, hashed once per key."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

import kmsync_kafka.partitioning as partitioning
from kmsync_kafka.partitioning import CachedKeyPartitioner


def test_the_same_partition_as_the_default_partitioner() -> None:
    cached, default = CachedKeyPartitioner(), DefaultPartitioner()
    for count in (1, 3, 6, 12):
        partitions = list(range(count))
        for i in range(300):
            key = f"{i}-AAA-{i * 7}".encode()
            assert cached(key, partitions, partitions) == default(key, partitions, partitions)
            assert cached(key, partitions, partitions) == default(key, partitions, partitions)  # remembered


def test_each_key_is_hashed_once_per_partition_count(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[bytes] = []
    murmur2 = partitioning.murmur2

    def counting(key: bytes) -> int:
        hashed.append(key)
        return murmur2(key)

    monkeypatch.setattr(partitioning, "murmur2", counting)
    p = CachedKeyPartitioner(max_keys=2)
    for _ in range(100):
        p(b"123-ABC-456", [0, 1, 2], [0, 1, 2])
    assert hashed == [b"123-ABC-456"]
    p(b"123-ABC-456", [0, 1, 2, 3], [0, 1, 2, 3])  # a topic grown: hashed again for its count
    p(b"other", [0, 1, 2], [0, 1, 2])  # past max_keys the memory starts again
    p(b"123-ABC-456", [0, 1, 2], [0, 1, 2])
    assert len(hashed) == 4


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert CachedKeyPartitioner()(None, [0, 1, 2], [2]) == 2
