"""The per-request context handed to endpoint handlers, and their reply type."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .envelope import MarketoError

if TYPE_CHECKING:
    from .instance import Instance


@dataclass
class Reply:
    """A non-envelope answer (CSV files, HTTP errors) or an envelope with a custom status."""

    body: Any
    status: int = 200
    content_type: str = "application/json"
    code: str | None = None  # the code to count this call under (defaults to str(status))


@dataclass
class Upload:
    filename: str
    content: bytes
    content_type: str


@dataclass
class Call:
    inst: Instance
    method: str
    path: str
    params: dict[str, str]
    args: dict[str, str]
    json: Any
    body: bytes
    now: float
    request_id: str
    client_id: str
    files: dict[str, Upload] = field(default_factory=dict)
    content_type: str = "application/json"
    #: A Sync Leads call applied late (an ``apply_after_seconds`` fault): the lookup values it found no lead for
    #: when it arrived; applied, it creates those leads even if another call created them meanwhile (§5.1).
    missing_on_arrival: frozenset[str] | None = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        v = self.args.get(name)
        if v is None and isinstance(self.json, dict) and name in self.json:
            raw = self.json[name]
            v = raw if isinstance(raw, str) else json.dumps(raw) if isinstance(raw, dict | list) else str(raw)
        return v if v is not None else default

    def int_param(self, name: str) -> int:
        raw = self.params[name]
        try:
            return int(raw)
        except ValueError:
            raise MarketoError("1001", f"Invalid value '{raw}'. Required of type 'integer'") from None

    def body_dict(self) -> dict[str, Any]:
        if self.body.strip() and self.content_type != "application/json" and self.json is None:
            raise MarketoError("612", "Invalid Content Type")  # §3.2: send Content-Type: application/json
        if not isinstance(self.json, dict):
            raise MarketoError("609", "Invalid JSON")
        return self.json


def input_records(body: dict[str, Any], limit: int | None = None) -> list[Any]:
    """The body's ``input`` list: ``701`` when missing or empty, ``1003`` when it has more than ``limit``."""
    records = body.get("input")
    if not isinstance(records, list) or not records:
        raise MarketoError("701", "input cannot be blank")
    if limit is not None and len(records) > limit:
        raise MarketoError("1003", f"Invalid data: input exceeds the limit of {limit} records")
    return records


def split_values(raw: str | None) -> list[str]:
    if raw is None:
        return []
    return [v.strip() for v in raw.split(",") if v.strip() != ""]


def int_arg(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise MarketoError("1001", f"Invalid value '{raw}'. Required of type 'integer'") from None


def encode_page(state: dict[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.b32encode(raw).decode().rstrip("=")


def decode_page(token: str) -> dict[str, Any]:
    try:
        pad = "=" * (-len(token) % 8)
        data = json.loads(base64.b32decode(token + pad))
    except (ValueError, json.JSONDecodeError):
        raise MarketoError("1003", "Invalid next page token") from None
    if not isinstance(data, dict):
        raise MarketoError("1003", "Invalid next page token")
    return data
