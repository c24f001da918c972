"""Deterministic operation ids: the same source fact always yields the same op_id.

The sink uses op_id as its idempotence key and custom activities use it as the ledger id, so an id
must depend only on what the operation means, never on when or how often it was produced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from kmsync_contracts.base import Scalar

# The ids' definition: ``json.dumps(obj, default=str, separators=(",", ":"))`` of [kind, *parts] and
# ``json.dumps(record, sort_keys=True, separators=(",", ":"))`` of a record (ASCII, as json escapes it).
# Changing either changes every id (tests/transform/test_golden_output.py). json.dumps builds an encoder
# per call and JSONEncoder.encode builds its C encoder per call (with a dict to detect cycles); these C
# encoders are built once, without the cycle check (ids are made of scalars and flat records), and give
# the very same text in about half the time (issue #22; tests/transform/test_op_ids.py compares them).
_PARTS = json.JSONEncoder(default=str, separators=(",", ":"))
_CONTENT = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_encode_parts: Callable[[Any, Any], Iterable[str]] = _PARTS.iterencode
_encode_content: Callable[[Any, Any], Iterable[str]] = _CONTENT.iterencode
if c_make_encoder is not None:  # CPython's _json; the pure-Python encoders above otherwise
    _encode_parts = c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True)
    _encode_content = c_make_encoder(None, _CONTENT.default, encode_basestring_ascii, None, ":", ",", True, False,
                                     True)


def op_id(kind: str, *parts: object) -> str:
    """`<kind>:<32 hex>` over the parts, JSON-encoded so ('a:b', 'c') and ('a', 'b:c') differ."""
    digest = hashlib.sha256("".join(_encode_parts([kind, *parts], 0)).encode())
    return f"{kind}:{digest.hexdigest()[:32]}"


def content_fingerprint(record: dict[str, Scalar]) -> str:
    """A digest of a record's content (key order does not matter)."""
    return hashlib.sha256("".join(_encode_content(record, 0)).encode()).hexdigest()[:32]
