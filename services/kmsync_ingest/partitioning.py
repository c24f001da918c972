"""The partition of a keyed record, exactly as Kafka's default partitioner picks it (pure logic).

Kafka (Java ``Utils.murmur2``/``toPositive``, and aiokafka's ``DefaultPartitioner``) puts a keyed
record on ``(murmur2(key) & 0x7fffffff) % partitions``. aiokafka computes murmur2 a byte at a time
in Python on every send; this module computes the same hash a 32-bit word at a time and remembers
it per key, so an attendee's records (the same partner:event:user key for each stream) hash once.
The partition must never differ from the default partitioner's: consumers and the transform's
state rely on every record of a key landing on one partition (tests/ingest compare the two).
"""

from __future__ import annotations

import struct
from functools import lru_cache

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """MurmurHash2 (32 bit, Kafka's seed) of ``data``, unsigned; equals aiokafka.partitioner.murmur2."""
    length = len(data)
    h = _SEED ^ length
    whole = length & ~3
    for (k,) in _WORDS.iter_unpack(data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra >= 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=65_536)
def _positive_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    """The partition (0 .. partitions-1) Kafka's default partitioner gives ``key``."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    return _positive_hash(key) % partitions
