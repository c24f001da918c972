"""Kaltura Sessions (KS): issuing and checking, in the v1 wire format (docs/reference/kaltura-api.md §1.2).

A KS is ``base64( hex(sha1(secret + info)) + "|" + info )`` with
``info = partnerId;partnerId;expiry;type;rand;userId;privileges``. Expiry is wall-clock unix seconds
(a KS outlives scenario time jumps, as a real one would). ``revoke_all`` lets tests force INVALID_KS
on a KS the client still holds, so its re-authentication path is exercised without waiting.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_TYPE_USER = 0
SESSION_TYPE_ADMIN = 2


@dataclass(frozen=True, slots=True)
class KsInfo:
    partner_id: int
    expiry: int
    session_type: int
    rand: str
    user_id: str
    privileges: str


class KsError(Exception):
    """Why a KS was refused (goes into the INVALID_KS message)."""


class KsAuthority:
    def __init__(self, partner_id: int, secret: str, *, wall: Callable[[], float] = time.time) -> None:
        self.partner_id = partner_id
        self._secret = secret
        self._wall = wall
        self._issued: set[str] = set()
        self._revoked: set[str] = set()
        #: Fault injection: refuse every KS (even fresh ones), as a partner with a broken secret sees.
        self.reject_all = False

    def issue(self, user_id: str, session_type: int, expiry_seconds: int, privileges: str = "") -> str:
        expiry = int(self._wall()) + expiry_seconds
        rand = secrets.token_hex(8)
        info = ";".join(
            [str(self.partner_id), str(self.partner_id), str(expiry), str(session_type), rand, user_id,
             privileges]
        )
        digest = hashlib.sha1((self._secret + info).encode()).hexdigest()
        self._issued.add(rand)
        return base64.b64encode(f"{digest}|{info}".encode()).decode()

    def check(self, ks: str | None) -> KsInfo:
        if not ks:
            raise KsError("MISSING_KS")
        try:
            raw = base64.b64decode(ks.encode(), validate=True).decode()
            digest, info = raw.split("|", 1)
            parts = info.split(";", 6)
            partner, _, expiry, stype, rand, user_id = parts[:6]
            privileges = parts[6] if len(parts) > 6 else ""
            parsed = KsInfo(int(partner), int(expiry), int(stype), rand, user_id, privileges)
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise KsError("INVALID_STR") from exc
        expected = hashlib.sha1((self._secret + info).encode()).hexdigest()
        if not hmac.compare_digest(expected, digest) or parsed.partner_id != self.partner_id:
            raise KsError("INVALID_SIGNATURE")
        if parsed.expiry <= self._wall():
            raise KsError("EXPIRED")
        if parsed.rand in self._revoked or self.reject_all:
            raise KsError("LOGOUT")
        return parsed

    def revoke_all(self) -> int:
        """Invalidate every KS issued so far; returns how many."""
        fresh = self._issued - self._revoked
        self._revoked |= self._issued
        return len(fresh)
