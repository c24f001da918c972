"""Exceptions of the Kaltura client - one type per thing a caller handles differently.

* :class:`KalturaAPIError` - Kaltura answered with a ``KalturaAPIException`` (usually inside HTTP 200,
  docs/reference/kaltura-api.md §1.1); ``code``/``message``/``args`` are Kaltura's. Subclasses for the codes that
  matter: :class:`InvalidKSError` (the client re-authenticates once and retries before raising it),
  :class:`ReportResultLimitError` (the 12,000-row report cap, §3.3).
* :class:`KalturaRequestRejected` - HTTP 4xx with a validation message (User Profile service).
* :class:`KalturaTransportError` - network failure, timeout, HTTP 5xx, or a non-JSON answer: retryable
  (:class:`ReportNotReadyError`: a generated report is still not completed).
* :class:`KalturaResponseError` - a 2xx answer whose shape is not what Kaltura documents.
* :class:`CsvHeaderError` - a report file whose header lacks required columns (no row is usable).
* :class:`SignatureError` / :class:`NotificationParseError` - an inbound notification is refused.
"""

from __future__ import annotations

from typing import Any


class KalturaError(Exception):
    """Base of every error raised by kmsync_kaltura."""


class KalturaTransportError(KalturaError):
    """The request did not get a usable answer (network, timeout, 5xx, not JSON). Retryable."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ReportNotReadyError(KalturaTransportError):
    """A generated report did not complete within the configured number of status checks."""


class KalturaResponseError(KalturaError):
    """A successful HTTP answer whose body does not have the documented shape."""


class KalturaRequestRejected(KalturaError):
    """HTTP 4xx: Kaltura refused the request as malformed (not retryable as is)."""

    def __init__(self, message: str, *, status: int, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class KalturaAPIError(KalturaError):
    """A ``KalturaAPIException``: ``code`` is Kaltura's error code (e.g. ``INVALID_KS``)."""

    def __init__(self, code: str, message: str, args: Any = None, *, where: str = "") -> None:
        super().__init__(f"{code}: {message}" + (f" ({where})" if where else ""))
        self.code = code
        self.message = message
        self.kaltura_args = args
        self.where = where


class InvalidKSError(KalturaAPIError):
    """``INVALID_KS`` (expired, revoked or unknown KS) still failing after one re-authentication."""


class MissingKSError(KalturaAPIError):
    """``MISSING_KS``: the call was sent without a KS."""


class StartSessionError(KalturaAPIError):
    """``START_SESSION_ERROR``: partner id or admin secret is wrong."""


class ReportResultLimitError(KalturaAPIError):
    """A report page beyond Kaltura's 12,000-row cap was requested (docs/reference/kaltura-api.md §3.3)."""


_BY_CODE: dict[str, type[KalturaAPIError]] = {
    "INVALID_KS": InvalidKSError,
    "MISSING_KS": MissingKSError,
    "START_SESSION_ERROR": StartSessionError,
    "SEARCH_TOO_GENERAL": ReportResultLimitError,
}


def api_error(code: str, message: str, args: Any = None, *, where: str = "") -> KalturaAPIError:
    """The most precise exception type for a Kaltura error code."""
    return _BY_CODE.get(code, KalturaAPIError)(code, message, args, where=where)


class CsvHeaderError(KalturaError):
    """A report CSV's header misses required columns (or there is no header at all)."""

    def __init__(self, message: str, *, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []


class SignatureError(KalturaError):
    """A notification's X-KALTURA-SIGNATURE is missing, uses an unknown algorithm, or does not match."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotificationParseError(KalturaError):
    """A notification body is not a KalturaHttpNotification; ``errors`` holds (field, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors))
        self.errors = errors
