"""Every Marketo error code in one table, and the exceptions the client raises.

The table is the only place that says what a code means and what to do about it; the transport,
the REST operations, bulk import and the setup check all call :func:`classify`. This module is also
the one place where an httpx failure becomes a Marketo error (:func:`no_answer`) and where a Marketo
error becomes a failure with a reason code (:func:`failure_of`), for the client's outcomes and the sink.
Source: docs/reference/marketo-api.md §3.2 (response-level 5xx/6xx/7xx), §3.3 (record-level 1xxx), §10.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import httpx

from kmsync_contracts.reasons import ReasonCode


class ErrorClass(StrEnum):
    """What a caller should do when Marketo answers with a code."""

    #: Transient: retry the same request after a short backoff with jitter (seconds).
    RETRY_SOON = "retry-soon"
    #: Retry, but only after a long wait: the daily quota reset (607), a full import queue (1016).
    RETRY_LATER = "retry-later"
    #: The token is invalid or expired: get a token and replay the request once.
    REAUTH = "re-auth"
    #: Retrying the same request cannot succeed: fix the data, the permissions or the instance.
    PERMANENT = "permanent"
    #: Reported as a skip but nothing is wrong (1037: already in or past this status).
    NOT_AN_ERROR = "not-an-error"


Level = str  # "response" | "record" | "both"


@dataclass(frozen=True)
class CodeInfo:
    code: str
    meaning: str
    error_class: ErrorClass
    #: Where Marketo reports it: "response" (success:false), "record" (result[i].reasons) or "both".
    level: Level
    #: Marketo does not count a call answered with this code against rate or quota (§2.1, [ERR-v1]).
    not_counted: bool = False

    @property
    def ambiguous(self) -> bool:
        """A transient failure after which the write may have been applied (§10.4): replaying an
        insert-only write (custom activities) could duplicate it."""
        return self.code in AMBIGUOUS_CODES


_R, _L, _A, _P, _N = (
    ErrorClass.RETRY_SOON,
    ErrorClass.RETRY_LATER,
    ErrorClass.REAUTH,
    ErrorClass.PERMANENT,
    ErrorClass.NOT_AN_ERROR,
)

_ROWS: tuple[CodeInfo, ...] = (
    # --- response level, docs/reference/marketo-api.md §3.2 ---
    CodeInfo("500", "Internal server error (can be a malformed REST URL)", _R, "response"),
    CodeInfo("502", "Bad gateway, likely a timeout", _R, "response"),
    CodeInfo("600", "Empty access token (not in Adobe's table; UNCONFIRMED)", _A, "response"),
    CodeInfo("601", "Access token invalid", _A, "response", not_counted=True),
    CodeInfo("602", "Access token expired", _A, "response", not_counted=True),
    CodeInfo(
        "603",
        "Access denied: the API role lacks a permission, or an IP allowlist blocks the caller",
        _P,
        "response",
    ),
    CodeInfo(
        "604",
        "Request timed out (database contention); the write may have been applied",
        _R,
        "response",
        not_counted=True,
    ),
    CodeInfo("605", "HTTP method not supported", _P, "response", not_counted=True),
    CodeInfo("606", "Max rate limit exceeded (100 calls per 20 s, shared by the instance)", _R, "response"),
    CodeInfo("607", "Daily quota reached; resets at midnight US Central", _L, "response"),
    CodeInfo("608", "API temporarily unavailable", _R, "response", not_counted=True),
    CodeInfo("609", "Invalid JSON", _P, "response"),
    CodeInfo("610", "Requested resource not found (bad URI)", _P, "response"),
    # 611 is ambiguous (§3.2): retried a few times (bounded by the retry policy), then failed.
    CodeInfo("611", "System error (unhandled exception)", _R, "response", not_counted=True),
    CodeInfo("612", "Invalid content type", _P, "response"),
    CodeInfo("613", "Invalid multipart request", _P, "response"),
    CodeInfo("614", "Invalid subscription (usually temporary inaccessibility)", _R, "response"),
    CodeInfo("615", "Concurrent access limit reached (10 calls in flight, shared by the instance)", _R, "response"),
    CodeInfo("616", "Invalid subscription type (custom object metadata needs a higher tier)", _P, "response"),
    CodeInfo("701", "A required value cannot be blank", _P, "response"),
    CodeInfo("702", "No data found for the search", _P, "response"),
    CodeInfo("703", "The feature is not enabled for the subscription", _P, "response"),
    CodeInfo("704", "Invalid date format", _P, "response"),
    CodeInfo("709", "Business rule violation (assets)", _P, "response"),
    CodeInfo("710", "Parent folder not found", _P, "response"),
    CodeInfo("711", "Incompatible folder type", _P, "response"),
    CodeInfo("712", "Merge to person account operation is invalid", _P, "response"),
    CodeInfo("713", "Transient error: wait, then retry", _R, "response"),
    CodeInfo("714", "Unable to find the default record type (merge)", _P, "response"),
    CodeInfo("718", "ExternalSalesPersonID not found", _P, "response"),
    CodeInfo("719", "Lock wait timeout (clone program)", _R, "response"),
    # --- record level, docs/reference/marketo-api.md §3.3 (some also arrive response-level) ---
    CodeInfo("1001", "Invalid value: wrong type for the field", _P, "record"),
    CodeInfo("1002", "Missing value for a required parameter", _P, "record"),
    CodeInfo("1003", "Invalid data (also: too many results, empty bulk file)", _P, "both"),
    CodeInfo("1004", "Lead not found", _P, "record"),
    CodeInfo("1005", "Lead already exists", _P, "record"),
    CodeInfo("1006", "Field not found", _P, "both"),
    CodeInfo("1007", "Multiple leads match the lookup criteria", _P, "record"),
    CodeInfo("1008", "Access denied to partition", _P, "record"),
    CodeInfo("1009", "Partition name must be specified", _P, "record"),
    CodeInfo("1010", "Partition update not allowed", _P, "record"),
    CodeInfo("1011", "Field not supported (lookup field or filter type)", _P, "both"),
    CodeInfo("1012", "Invalid cookie value", _P, "record"),
    CodeInfo("1013", "Object not found (or membership not found)", _P, "record"),
    CodeInfo("1014", "Failed to create object", _R, "record"),
    CodeInfo("1015", "Lead not in list", _P, "record"),
    CodeInfo("1016", "Too many imports (bulk import queue full: 2 running, 10 queued)", _L, "both"),
    CodeInfo("1017", "Object already exists", _P, "record"),
    CodeInfo("1018", "CRM enabled: native CRM sync blocks the write", _P, "record"),
    CodeInfo("1019", "Import in progress into the target list", _R, "both"),
    CodeInfo("1020", "Too many clones to program", _R, "both"),
    CodeInfo("1021", "Company update not allowed through Sync Leads", _P, "record"),
    CodeInfo("1022", "Object in use", _R, "record"),
    CodeInfo("1025", "Program status not found in the program's channel", _P, "both"),
    CodeInfo("1026", "Custom object not enabled", _P, "both"),
    CodeInfo("1027", "Max activity type limit reached (10 custom activity types)", _P, "both"),
    CodeInfo("1028", "Max field limit reached (20 secondary attributes)", _P, "both"),
    # 1029 is retry-later for a full extract queue; its "Export daily quota" flavour waits for the
    # midnight reset too, so both are retry-later (§3.3, §10.6).
    CodeInfo("1029", "Too many jobs in the export queue / export daily quota exceeded", _L, "both"),
    CodeInfo("1035", "Unsupported filter type", _P, "both"),
    CodeInfo("1036", "Duplicate object found in input", _P, "record"),
    CodeInfo("1037", "Lead skipped: already in or past this status (or not in program)", _N, "record"),
    CodeInfo("1042", "Invalid runAt date", _P, "record"),
    CodeInfo("1048", "Custom object discard draft failed", _P, "both"),
    CodeInfo("1049", "Failed to create activity: attributes array over 65,536 bytes", _P, "record"),
    CodeInfo("1076", "Merge in CRM failed", _P, "record"),
    CodeInfo("1077", "Merge in CRM failed", _P, "record"),
    CodeInfo("1078", "Merge in CRM failed", _P, "record"),
    CodeInfo("1079", "Merge in CRM failed", _P, "record"),
    CodeInfo("1080", "More than 25 ids in Merge Leads", _P, "record"),
)

#: Transient codes that can follow work already done (timeouts, gateway errors, unhandled errors).
#: 608 (API temporarily unavailable) is not counted against the limits, which suggests it comes
#: before any work; Adobe does not say so, so for insert-only writes it is treated as ambiguous too
#: (one activity-log read to check, instead of a possible duplicate activity).
AMBIGUOUS_CODES = frozenset({"500", "502", "604", "608", "611", "713", "719"})

#: code (string, as Marketo sends it) → what it means and what to do.
ERROR_TABLE: dict[str, CodeInfo] = {row.code: row for row in _ROWS}


def classify(code: str | int | None) -> CodeInfo:
    """The table row for a code; an unknown code is permanent (never retried blindly)."""
    key = str(code).strip() if code is not None else ""
    found = ERROR_TABLE.get(key)
    if found is not None:
        return found
    return CodeInfo(key or "?", "Unknown Marketo code", ErrorClass.PERMANENT, "both")


def classify_http_status(status: int) -> ErrorClass | None:
    """HTTP-level outcome (§3.1): None for 200. 413/414 are permanent for that request."""
    if status == 200:
        return None
    if status in (401, 403):
        return ErrorClass.PERMANENT
    if status in (408, 429) or status >= 500:
        return ErrorClass.RETRY_SOON
    return ErrorClass.PERMANENT


class MarketoError(Exception):
    """Base class of everything the client raises."""


class MarketoAuthError(MarketoError):
    """Identity refused the credentials (HTTP 401) or kept returning unusable tokens."""


class MarketoHttpError(MarketoError):
    """A non-200 HTTP answer that retries did not fix (413 body too large, 414 URI too long, 5xx)."""

    def __init__(self, status: int, detail: str, maybe_applied: bool = False) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        #: The request may have been applied although no success came back (insert-only writes).
        self.maybe_applied = maybe_applied
        # status 0: no HTTP answer at all (timeout, connection reset): transient.
        self.error_class = (
            ErrorClass.RETRY_SOON if status == 0 else classify_http_status(status) or ErrorClass.PERMANENT
        )


class MarketoApiError(MarketoError):
    """A response-level error (HTTP 200, success:false) that retries did not fix."""

    def __init__(self, code: str, message: str, attempts: int = 1, maybe_applied: bool = False) -> None:
        self.info = classify(code)
        super().__init__(f"Marketo {code}: {message} ({self.info.error_class.value}, {attempts} attempt(s))")
        self.code = code
        self.message = message
        self.attempts = attempts
        #: The request may have been applied although no success came back (insert-only writes).
        self.maybe_applied = maybe_applied

    @property
    def error_class(self) -> ErrorClass:
        return self.info.error_class


class MarketoProtocolError(MarketoError):
    """Marketo answered something that is not the documented envelope (not JSON, no result...)."""


#: Said in an error's message when the request may have been applied and was not replayed.
MAYBE_APPLIED_NOTE = " (may have been applied; not replayed automatically)"


def reached_marketo(exc: httpx.HTTPError) -> bool:
    """Whether a request that got no answer may have reached Marketo: anything but a failed connect."""
    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def no_answer(exc: httpx.HTTPError, what: str, *, idempotent: bool = True) -> MarketoHttpError:
    """The one translation of an httpx failure without an HTTP answer (timeout, refused or reset
    connection) into a Marketo error: status 0, transient. A request that may have reached Marketo
    (anything but a failed connect) is flagged ``maybe_applied`` when it must not be replayed
    (``idempotent=False``: insert-only writes, docs/reference/marketo-api.md §10.4)."""
    maybe = reached_marketo(exc) and not idempotent
    return MarketoHttpError(0, f"{what}: {type(exc).__name__}{MAYBE_APPLIED_NOTE if maybe else ''}",
                            maybe_applied=maybe)


@dataclass(frozen=True)
class CallFailure:
    """What a failed call means for each record it carried."""

    #: Marketo's code, ``http_<status>`` (0: no answer at all) or one of kmsync's own (ReasonCode).
    code: str
    reason: str
    error_class: ErrorClass
    #: Marketo may have done the write although no success came back (docs/reference/marketo-api.md
    #: §10.4): the transport said so, a timeout-like code, an HTTP 5xx, no answer at all, or an answer
    #: that is not the documented envelope. Rejections before any work are certain.
    maybe_applied: bool


def failure_of(exc: MarketoError) -> CallFailure:
    """The one mapping from a Marketo error to what it means for the records of the call."""
    if isinstance(exc, MarketoAuthError):
        # Revoked or wrong credentials: retried with backoff (an admin may fix them), nothing sent.
        return CallFailure(ReasonCode.AUTH_REFUSED, str(exc), ErrorClass.RETRY_SOON, False)
    if isinstance(exc, MarketoApiError):
        return CallFailure(exc.code, exc.message or exc.info.meaning, exc.error_class,
                           exc.maybe_applied or exc.info.ambiguous)
    if isinstance(exc, MarketoHttpError):
        return CallFailure(f"http_{exc.status}", exc.detail, exc.error_class,
                           exc.maybe_applied or exc.status == 0 or exc.status >= 500)
    if isinstance(exc, MarketoProtocolError):
        return CallFailure(ReasonCode.PROTOCOL, str(exc), ErrorClass.RETRY_SOON, True)
    return CallFailure(ReasonCode.CLIENT_ERROR, f"{type(exc).__name__}: {exc}", ErrorClass.RETRY_SOON, False)
