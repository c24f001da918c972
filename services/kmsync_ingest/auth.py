"""Who may upload: bearer tokens given by reference, several valid at once, compared in constant time.

Kaltura notifications authenticate with their signature (docs/reference/kaltura-api.md §2.4); everything else that
feeds data in (report uploads, an unsigned notification) needs ``Authorization: Bearer <token>``.
Tokens are resolved once at start; the comparison runs over every configured token whatever
matches, on SHA-256 digests of equal length, so neither timing nor length says which one is close.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from kmsync_config import ConfigError
from kmsync_config.references import resolve_values
from kmsync_ingest.errors import BadInput
from kmsync_ingest.settings import IngestSettings

#: Sent with every 401 (RFC 6750).
CHALLENGE = 'Bearer realm="kmsync-ingest"'


class Unauthorized(BadInput):
    def __init__(self, reason: str) -> None:
        super().__init__(401, "unauthorized", [f"Authorization: {reason}"])


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class UploadAuth:
    """The accepted tokens (as digests), or ``required=False`` for a local demo."""

    digests: tuple[bytes, ...]
    required: bool = True

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> UploadAuth:
        """Resolve KMSYNC_UPLOAD_TOKENS; ConfigError names each reference that does not resolve."""
        problems: list[str] = []
        tokens: list[str] = []
        for i, ref in enumerate(settings.upload_tokens):
            try:
                tokens += resolve_values((ref,))
            except ValueError as exc:
                problems.append(f"upload_tokens.{i}: {exc}")
        short = [i for i, t in enumerate(tokens) if len(t) < 16]
        if short:
            problems.append(f"upload_tokens: {len(short)} token(s) shorter than 16 characters; use 32 random bytes")
        if problems:
            raise ConfigError("environment (KMSYNC_UPLOAD_TOKENS)", problems)
        return cls(tuple(_digest(t) for t in tokens), settings.upload_auth == "required")

    @property
    def configured(self) -> bool:
        return bool(self.digests)

    def accepts(self, authorization: str | None) -> bool:
        try:
            self.check(authorization)
        except Unauthorized:
            return False
        return True

    def check(self, authorization: str | None) -> None:
        """Raise :class:`Unauthorized` with a one-line reason unless the header carries a valid token."""
        if not self.required:
            return
        if not self.digests:
            raise Unauthorized("no upload tokens are configured on this ingest (KMSYNC_UPLOAD_TOKENS)")
        if not authorization:
            raise Unauthorized("missing; send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("not a Bearer token")
        given = _digest(token.strip())
        matched = False
        for digest in self.digests:  # no early exit: every token is compared
            matched |= hmac.compare_digest(digest, given)
        if not matched:
            raise Unauthorized("token not accepted")
