"""Deterministic operation ids: the same source fact always yields the same op_id.

The sink uses op_id as its idempotence key and custom activities use it as the ledger id, so an id
must depend only on what the operation means, never on when or how often it was produced.
"""

from __future__ import annotations

import hashlib
import json

from kmsync_contracts.base import Scalar

# Built once: json.dumps(obj, **options) builds a JSONEncoder(**options) per call and returns its
# encode(obj), so these give the very same text without the per-call construction. The options are
# the ids' definition: changing one changes every id (tests/transform/test_golden_output.py).
_PARTS = json.JSONEncoder(default=str, separators=(",", ":"))
_CONTENT = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def op_id(kind: str, *parts: object) -> str:
    """`<kind>:<32 hex>` over the parts, JSON-encoded so ('a:b', 'c') and ('a', 'b:c') differ."""
    digest = hashlib.sha256(_PARTS.encode([kind, *parts]).encode())
    return f"{kind}:{digest.hexdigest()[:32]}"


def content_fingerprint(record: dict[str, Scalar]) -> str:
    """A digest of a record's content (key order does not matter)."""
    return hashlib.sha256(_CONTENT.encode(record).encode()).hexdigest()[:32]
