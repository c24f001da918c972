"""Marketo's response envelope, error codes and message strings (docs/reference/marketo-api.md §3, §4)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

# Response-level codes and their messages (docs/reference/marketo-api.md §2.1 "Exact message strings", §3.2).
MESSAGES: dict[str, str] = {
    "502": "Bad Gateway",
    "600": "Access token not specified",
    "601": "Access token invalid",
    "602": "Access token expired",
    "603": "Access denied",
    "604": "Request time-out",
    "605": "HTTP Method not supported",
    "607": "Daily quota reached",
    "608": "API Temporarily Unavailable",
    "609": "Invalid JSON",
    "610": "Requested resource not found",
    "611": "System error",
    "612": "Invalid Content Type",
    "613": "Invalid Multipart Request",
    "713": "Transient Error",
}

# Codes whose answers are not counted against the rate limit or the daily quota (docs/reference/marketo-api.md §2.1, [ERR-v1]).
FREE_CODES = frozenset({"601", "602", "604", "605", "608", "611"})


def rate_limit_message(limit: int, window: float) -> str:
    # Adobe's own typo "with in" is part of the message (docs/reference/marketo-api.md §2.1).
    return f"Max rate limit '{limit}' exceeded with in '{_num(window)}' secs"


def concurrency_message(limit: int) -> str:
    return f"Concurrent access limit '{limit}' reached"  # docs/reference/marketo-api.md §2.1 [ADF]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class MarketoError(Exception):
    """A response-level error: HTTP 200, ``success:false`` (docs/reference/marketo-api.md §3.1 level 2)."""

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = str(code)
        self.message = message if message is not None else MESSAGES.get(self.code, "Error")
        super().__init__(f"{self.code} {self.message}")


def reason(code: str, message: str) -> dict[str, str]:
    return {"code": str(code), "message": message}


class Ids:
    """Seeded generators for requestIds and GUIDs so runs under one --seed are reproducible."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"ids:{seed}")

    def request_id(self, now: float) -> str:
        # Looks like "e42b#14272d07d78": hex, '#', hex milliseconds (docs/reference/marketo-api.md §4.1).
        return f"{self._rng.getrandbits(16):x}#{int(now * 1000):x}"

    def guid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def token(self, pod: str) -> str:
        return f"{self.guid()}:{pod}"  # "<uuid>:<pod>" (docs/reference/marketo-api.md §1.2)


def iso(ts: float) -> str:
    """Lead DB datetime format, e.g. 2016-05-17T22:11:45Z."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def asset_iso(ts: float) -> str:
    """Asset API datetime format with the odd suffix, e.g. 2015-07-15T11:40:58Z+0000 (§5.3/§6.1)."""
    return iso(ts) + "+0000"


def ok(request_id: str, result: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"requestId": request_id}
    if result is not None:
        body["result"] = result
    body["success"] = True
    body.update(extra)
    return body


def fail(request_id: str, code: str, message: str) -> dict[str, Any]:
    return {"requestId": request_id, "success": False, "errors": [reason(code, message)]}


def asset_ok(request_id: str, result: list[Any] | None, warnings: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "success": True,
        "warnings": warnings or [],
        "errors": [],
        "requestId": request_id,
    }
    if result is not None:
        body["result"] = result
    return body


def asset_fail(request_id: str, code: str, message: str) -> dict[str, Any]:
    return {"success": False, "warnings": [], "errors": [reason(code, message)], "requestId": request_id}


NO_ASSETS_WARNING = "No assets found for the given search criteria."  # docs/reference/marketo-api.md §4.1
