"""Deterministic operation ids: the same source fact always yields the same op_id.

The sink uses op_id as its idempotence key and custom activities use it as the ledger id, so an id
must depend only on what the operation means, never on when or how often it was produced.
"""

from __future__ import annotations

import hashlib
import json

from kmsync_contracts.base import Scalar


def op_id(kind: str, *parts: object) -> str:
    """`<kind>:<32 hex>` over the parts, JSON-encoded so ('a:b', 'c') and ('a', 'b:c') differ."""
    digest = hashlib.sha256(json.dumps([kind, *parts], default=str, separators=(",", ":")).encode())
    return f"{kind}:{digest.hexdigest()[:32]}"


def content_fingerprint(record: dict[str, Scalar]) -> str:
    """A digest of a record's content (key order does not matter)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]
