"""Deterministic operation ids: the same source fact always yields the same op_id.

The sink uses op_id as its idempotence key and custom activities use it as the ledger id, so an id
must depend only on what the operation means, never on when or how often it was produced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from math import inf
from typing import Any

import orjson

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


# A faster path to a record's bytes (issue #22; an op id's few parts gain nothing from it): orjson renders a
# flat record exactly as _encode_content does when its values are of these exact types (a subclass, such as
# an enum, takes the json path):
# - str of ASCII without DEL: json escapes DEL as \u007f and writes non-ASCII as \uXXXX escapes where
#   orjson writes both raw, so orjson's text must be ASCII without a DEL byte (it escapes the 32 control
#   characters, the quote and the backslash exactly as json does: every ASCII character is compared in
#   tests/transform/test_op_ids.py);
# - int within 64 bits (orjson refuses any other: the json path then);
# - float, finite and 0 or at least 1e-4 in magnitude: both write the shortest repr there (below 1e-4 orjson
#   writes 0.00001 where repr writes 1e-05; it writes nan and inf as null);
# - bool and None; dict keys of type str (orjson refuses others, see _SORTED), sorted by code point, which
#   for ASCII keys is the order of both.
# Anything else (a datetime, which orjson would write as ISO text and json via default=str or not at
# all, a nested container, a subclass) takes the json path above, as does any text that fails the check.
# Established for orjson 3.13.0 (requirements.lock); tests/transform/test_op_ids.py proves it again for
# whichever orjson is installed (property tests over any record and over this domain, its edges).
_PLAIN = frozenset({str, int, float, bool, type(None)})
_SMALLEST_PLAIN_FLOAT = 1e-4
#: Keys sorted; a key of a str subclass refused (orjson refuses keys of any other type), as are values of
#: a subclass of str, int, dict or list (the exact types are checked first anyway).
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _plain(values: Iterable[object]) -> bool:
    """Whether every value is of a type orjson renders as json does (floats within their range). A loop:
    set(map(type, values)) and a pass over the floats cost twice as much."""
    for v in values:
        t = type(v)
        if t is float:
            if not (v == 0.0 or _SMALLEST_PLAIN_FLOAT <= abs(v) < inf):  # type: ignore[arg-type]
                return False
        elif t not in _PLAIN:
            return False
    return True


def _orjson_text(value: object, option: int) -> bytes | None:
    """orjson's bytes of a value `_plain` accepted, when they are json's too (None: take the json path)."""
    try:
        text = orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:  # an int beyond 64 bits, a dict key that is not exactly str
        return None
    return text if text.isascii() and b"\x7f" not in text else None


def content_text(record: dict[str, Scalar]) -> bytes:
    """The bytes a content fingerprint hashes: json's sorted text of the record (the definition above)."""
    text = _orjson_text(record, _SORTED) if type(record) is dict and _plain(record.values()) else None
    return text if text is not None else "".join(_encode_content(record, 0)).encode()


def op_id(kind: str, *parts: object) -> str:
    """`<kind>:<32 hex>` over the parts, JSON-encoded so ('a:b', 'c') and ('a', 'b:c') differ."""
    digest = hashlib.sha256("".join(_encode_parts([kind, *parts], 0)).encode())
    return f"{kind}:{digest.hexdigest()[:32]}"


def content_fingerprint(record: dict[str, Scalar]) -> str:
    """A digest of a record's content (key order does not matter)."""
    return hashlib.sha256(content_text(record)).hexdigest()[:32]
