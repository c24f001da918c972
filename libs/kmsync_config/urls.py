"""URL rules for the endpoints kmsync sends credentials to (pure logic).

Marketo's identity call and Kaltura's ``session.start`` carry a client secret / the partner's admin
secret (docs/reference/kaltura-api.md §1.2), so their base URLs must be ``https://``. The one exception is a
loopback host, where the local sandboxes listen on plain HTTP.
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    return host.lower() in LOOPBACK_HOSTS or host.startswith("127.")


def https_problem(url: str) -> str | None:
    """Why ``url`` may not carry a secret (no https, no host, credentials in it), or None if it may.

    The message names the problem, not the URL: the caller's error says which value it was."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        _ = parts.port  # a bad port raises ValueError
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("https", "http"):
        return "must start with https://"
    if not host:
        return "has no host"
    if parts.username or parts.password:
        return "must not carry credentials (user:password@); secrets are given by reference"
    if parts.scheme == "http" and not is_loopback(host):
        return ("must start with https://, not http:// (plain http is accepted only for a loopback host: "
                "127.0.0.1, localhost, ::1)")
    return None
