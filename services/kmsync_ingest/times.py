"""Kaltura's timestamps as ingest reads them: ISO 8601 strings (User Profile API) and Unix seconds
(api_v3 objects). Anything else, or a time without a zone, is None: never a guess."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_time(value: object) -> datetime | None:
    """An aware datetime from an ISO 8601 string ("Z" accepted); None if absent, unreadable or naive."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def unix_time(value: object) -> datetime | None:
    """A UTC datetime from Unix seconds (a number or its text); None if absent or out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
