"""Operation ids and content fingerprints are defined by json.dumps' text (op_ids.py): the encoders
built once (issue #22) give exactly that text, so no id changes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from kmsync_contracts.kaltura_records import AttendanceStatus
from kmsync_transform.op_ids import content_fingerprint, op_id

PARTS: list[tuple[Any, ...]] = [
    ("123-ABC-456", 1001, "ann@example.com", "Confirmed"),
    ("987-ZYX-654", "b\u00e9a.m\u00fcller@example.com", "Panel \u00e9t\u00e9 \U0001f600", 'quote " and \\ and \n'),
    ("m", 0, -1, 2**70, 1.5, -0.0, 1e21, float("nan"), float("inf"), True, False, None),
    ("m", datetime(2026, 11, 27, 9, 0, tzinfo=UTC), AttendanceStatus.ATTENDED, ("a", 1), ["b", {"c": 2}]),
    (),
]
RECORDS: list[dict[str, Any]] = [
    {"entry_id": "0_keynote", "email": "ann@example.com", "plays": 3, "vod_completion_rate": 0.25, "x": None},
    {"z": "\u00e9t\u00e9", "a": True, "m": False, "poll_1_answer": "Yes \U0001f600", "f": float("inf"), "n": 10**20},
    {},
]


def reference_op_id(kind: str, *parts: object) -> str:
    text = json.dumps([kind, *parts], default=str, separators=(",", ":"))
    return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


@pytest.mark.parametrize("parts", PARTS)
def test_op_ids_are_the_json_dumps_definition(parts: tuple[Any, ...]) -> None:
    assert op_id("lead_upsert", *parts) == reference_op_id("lead_upsert", *parts)


@pytest.mark.parametrize("record", RECORDS)
def test_fingerprints_are_the_json_dumps_definition(record: dict[str, Any]) -> None:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    assert content_fingerprint(record) == hashlib.sha256(text.encode()).hexdigest()[:32]
    assert content_fingerprint(dict(reversed(record.items()))) == content_fingerprint(record)


def test_an_id_is_the_same_after_an_unencodable_part() -> None:
    """A part json cannot encode fails the call and leaves nothing behind for the next one."""
    with pytest.raises(TypeError):
        content_fingerprint({"a": {"b": 1}, "c": object()})  # type: ignore[dict-item]
    assert op_id("k", "a") == reference_op_id("k", "a")
