"""The stand-in for an email in logs and diagnostics: a keyed HMAC-SHA256, never a plain hash.

A plain SHA-256 of an address is reversed by hashing a list of known addresses; an HMAC under a
per-deployment secret key is not. The key is a secret given by reference in
``KMSYNC_EMAIL_HASH_SECRET`` (``{"env": "NAME"}`` or ``{"file": "/run/secrets/email-hash-key"}``,
docs/configuration.md). With the same key in every service, a person's hash is the same in every
log, so a trace can follow them; ``hash_email`` with that key finds them.

Unset, each process draws a random key and logs one warning: its hashes then match only within
that process (safe, but not correlatable across services). A reference that does not resolve is
refused at start-up by ``kmsync_config.CommonSettings``; should it fail later, the process falls
back to a random key rather than letting a log line raise.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
import threading

ENV_VAR = "KMSYNC_EMAIL_HASH_SECRET"
#: Hex digits kept from the HMAC (64 bits: collisions are negligible for tracing one person).
HEX_DIGITS = 16

log = logging.getLogger(__name__)
_lock = threading.Lock()
_key: bytes | None = None
_ephemeral = False


def _load_key() -> tuple[bytes, bool]:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        log.warning("%s is not set: emails in this process's logs are hashed with a random per-process key "
                    "(they cannot be matched across services); set it to the same reference in every service",
                    ENV_VAR)
        return secrets.token_bytes(32), True
    try:
        from kmsync_config.references import parse_secret_ref
        from kmsync_config.tenants import SecretRef

        ref = SecretRef.model_validate(parse_secret_ref(raw))
        return ref.resolve().get_secret_value().encode(), False
    except Exception as exc:  # never let a log line raise; start-up validation names the problem
        log.error("%s does not resolve (%s): using a random per-process key", ENV_VAR, type(exc).__name__)
        return secrets.token_bytes(32), True


def email_hash_key() -> bytes:
    """The key in use (loaded on first use)."""
    global _key, _ephemeral
    with _lock:
        if _key is None:
            _key, _ephemeral = _load_key()
        return _key


def key_is_ephemeral() -> bool:
    """True when no key is configured and this process drew a random one."""
    email_hash_key()
    return _ephemeral


def configure_email_hash_key(key: bytes | None) -> None:
    """Set the key (tools, tests); None forgets it so the next hash reads the environment again."""
    global _key, _ephemeral
    with _lock:
        _key, _ephemeral = key, False


def hash_email(email: str | None) -> str:
    """'email#' + 16 hex of HMAC-SHA256(key, normalised email); 'email#none' for no email."""
    if not email:
        return "email#none"
    key = _key  # loaded: no lock to take (it is only ever replaced whole)
    return _hashed(key if key is not None else email_hash_key(), email)


@functools.lru_cache(maxsize=8192)
def _hashed(key: bytes, email: str) -> str:
    """Remembered per key and email: the sink hashes a person's email for each of their outcomes (issue #22)."""
    digest = hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"email#{digest[:HEX_DIGITS]}"
