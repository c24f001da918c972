"""Email normalisation: the lead's identity in Marketo is its email, so every operation uses one form."""

from __future__ import annotations

import re

# Deliberately simple: one "@", a non-empty local part, a dotted domain, no whitespace. Marketo
# rejects what it cannot store; transform only refuses what cannot possibly name a lead.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
MAX_EMAIL_CHARS = 255


def normalise_email(raw: str | None) -> str | None:
    """Trimmed and lower-cased, or None when the value cannot be a lead's email."""
    if raw is None:
        return None
    email = raw.strip().lower()
    if email.startswith("mailto:"):
        email = email[len("mailto:"):]
    if not email or len(email) > MAX_EMAIL_CHARS or not _EMAIL.match(email):
        return None
    return email

