"""Building and checking the URLs the client calls (pure logic).

Every URL that carries the admin secret or a KS must be https (docs/reference/kaltura-api.md §1.2: session.start
sends the secret in the body, later calls send the KS); plain http only to a loopback sandbox.
Values from input (entry ids) go into URL paths percent-escaped and into Kaltura's
``key=value;key=value`` string parameters only when they cannot break that format.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: Kaltura entry ids look like 1_abcd1234 (partner-scoped, [0-9a-z_]); we accept a little more.
_ENTRY_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def insecure_reason(url: str) -> str | None:
    """None when ``url`` may carry a secret (https, or http to a loopback host), else why not."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if not host:
        return "has no host"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and (host.lower() in _LOOPBACK or host.startswith("127.")):
        return None
    return "must be https:// (plain http only for a loopback host)"


def require_secure(url: str, what: str) -> str:
    reason = insecure_reason(url)
    if reason is not None:
        raise ValueError(f"{what} {reason}")
    return url


def path_segment(value: str) -> str:
    """``value`` escaped for one URL path segment (no '/', '?', '#', '..' escapes)."""
    return quote(value, safe="")


def check_entry_id(entry_id: str) -> str:
    """An entry id safe for report string parameters (``entry_ids=<id>;…``) and URLs."""
    if not _ENTRY_ID.match(entry_id):
        raise ValueError(f"entry id {entry_id[:40]!r} is not a Kaltura entry id (letters, digits, _ and -)")
    return entry_id
