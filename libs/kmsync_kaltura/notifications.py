"""Inbound Kaltura HTTP notifications: signature check and body parsing (docs/reference/kaltura-api.md §2.3-§2.5, §7.2).

Kaltura signs with ``X-KALTURA-SIGNATURE`` = lowercase hex of HASH(secret + raw body) - a plain
concatenation, not HMAC - and names the hash in ``X-KALTURA-HASH-ALGO`` (sha1 default, sha256,
sha512; the template enum 1/2/3 is accepted too). The secret is the partner admin secret unless a
per-template secret is configured (UNCONFIRMED, §2.4), so callers pass whichever applies. Always
verify against the *raw* bytes received, before any parsing; comparison is constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Final
from urllib.parse import parse_qs

from pydantic import ValidationError

from kmsync_kaltura.errors import NotificationParseError, SignatureError
from kmsync_kaltura.models import HttpNotification

SIGNATURE_HEADER: Final = "X-KALTURA-SIGNATURE"
#: Deepest nesting of a notification body read (Kaltura's objects nest a few levels; a deeply nested
#: body is refused before validation, which would otherwise recurse).
MAX_NESTING: Final = 32
HASH_ALGO_HEADER: Final = "X-KALTURA-HASH-ALGO"

_ALGOS: Final = {
    "": "sha1", "sha1": "sha1", "sha-1": "sha1", "1": "sha1",
    "sha256": "sha256", "sha-256": "sha256", "2": "sha256",
    "sha512": "sha512", "sha-512": "sha512", "3": "sha512",
}


def normalise_algo(algo: str | None) -> str:
    """Header value → hashlib name; missing means sha1 (the template default). Unknown → SignatureError."""
    name = _ALGOS.get((algo or "").strip().lower())
    if name is None:
        raise SignatureError(f"unsupported {HASH_ALGO_HEADER}: {algo!r}")
    return name


def compute_signature(secret: str, raw_body: bytes, algo: str | None = "sha1") -> str:
    return hashlib.new(normalise_algo(algo), secret.encode("utf-8") + raw_body).hexdigest()


def check_signature(raw_body: bytes, signature: str | None, secret: str, algo: str | None = None) -> None:
    """Raise :class:`SignatureError` (reason: missing / unsupported algorithm / mismatch) unless valid."""
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    expected = compute_signature(secret, raw_body, algo)
    given = signature.strip().lower()
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace")):
        raise SignatureError("signature does not match the body")


def verify_signature(raw_body: bytes, signature: str | None, secret: str, algo: str | None = None) -> bool:
    """True when ``signature`` is HASH(secret + raw_body) under ``algo``; never raises."""
    try:
        check_signature(raw_body, signature, secret, algo)
    except SignatureError:
        return False
    return True


def parse_notification(raw_body: bytes, content_type: str | None = "application/json") -> HttpNotification:
    """A ``KalturaHttpNotification`` from a JSON body or the legacy form ``data=<url-encoded JSON>``.

    Raises :class:`NotificationParseError` with (field, message) pairs.
    """
    ctype = (content_type or "").split(";")[0].strip().lower()
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotificationParseError([("body", f"not UTF-8 ({exc.reason} at byte {exc.start})")]) from exc
    if ctype == "application/x-www-form-urlencoded":
        values = parse_qs(text, keep_blank_values=True).get("data")
        if not values:
            raise NotificationParseError([("data", "form body has no data field")])
        text = values[0]
    if _bracket_depth(text) > MAX_NESTING:
        raise NotificationParseError([("body", f"nested deeper than {MAX_NESTING} levels")])
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotificationParseError([("body", f"not valid JSON: {exc.msg} at position {exc.pos}")]) from exc
    except RecursionError:
        raise NotificationParseError([("body", f"nested deeper than {MAX_NESTING} levels")]) from None
    if not isinstance(payload, dict):
        raise NotificationParseError([("body", "must be a JSON object")])
    try:
        return HttpNotification.model_validate(payload)
    except ValidationError as exc:
        raise NotificationParseError([
            (".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()
        ]) from exc


def _bracket_depth(text: str) -> int:
    """Deepest bracket nesting outside JSON strings (an upper bound of the JSON nesting)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
