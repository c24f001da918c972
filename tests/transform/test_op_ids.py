"""Operation ids and content fingerprints are defined by json.dumps' text (op_ids.py): the encoders
built once and the orjson path of records (issue #22) give exactly that text, so no id changes."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsync_contracts.kaltura_records import AttendanceStatus
from kmsync_transform import op_ids
from kmsync_transform.op_ids import _SORTED, _orjson_text, _plain, content_fingerprint, content_text, op_id

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


# -- the orjson path of content fingerprints (op_ids.content_text): json's very bytes, or json's path ----------

def json_text(record: dict[Any, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


ANY_SCALAR = st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none())
#: What the orjson path takes: ASCII without DEL, 64-bit ints, floats 0 or of magnitude in [1e-4, inf).
PLAIN_TEXT = st.text(st.characters(max_codepoint=0x7E))
PLAIN_FLOAT = st.one_of(st.just(0.0), st.just(-0.0), st.floats(min_value=1e-4, allow_infinity=False),
                        st.floats(max_value=-1e-4, allow_infinity=False))
PLAIN_SCALAR = st.one_of(PLAIN_TEXT, st.integers(-2**63, 2**64 - 1), PLAIN_FLOAT, st.booleans(), st.none())


@settings(max_examples=3000, deadline=None)
@given(st.dictionaries(st.text(), ANY_SCALAR, max_size=12))
def test_any_record_has_json_bytes(record: dict[str, Any]) -> None:
    """Whatever a record holds (non-ASCII, DEL, nan, inf, tiny floats, big ints), the bytes are json's."""
    assert content_text(record) == json_text(record)


@settings(max_examples=3000, deadline=None)
@given(st.dictionaries(PLAIN_TEXT, PLAIN_SCALAR, max_size=12))
def test_plain_records_take_the_orjson_path_with_json_bytes(record: dict[str, Any]) -> None:
    assert _orjson_text(record, _SORTED) == json_text(record)
    assert _plain(record.values())


class Kind(StrEnum):
    A = "a"


class Number(IntEnum):
    ONE = 1


EDGES: list[Any] = [
    *map(chr, range(128)), "\u00e9", "\u2028", "\U0001f600", "a\x7fb", "",
    2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63, -2**63 - 1, 10**30,
    1e-4, math.nextafter(1e-4, 0), math.nextafter(1e-4, 1), -1e-4, 1e-5, 5e-324, 2.2250738585072014e-308,
    1e16, math.nextafter(1e16, 0), 1e22, 1.7976931348623157e308, 0.1 + 0.2, 0.0, -0.0,
    float("nan"), float("inf"), float("-inf"), True, False, None,
    AttendanceStatus.ATTENDED, Kind.A, Number.ONE, type("Text", (str,), {})("x"),
]


@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_edges_have_json_bytes(value: Any) -> None:
    for record in ({"k": value}, {"a": 1, "k": value, "z": "zz"}):
        assert content_text(record) == json_text(record)


@pytest.mark.parametrize("key", [type("Key", (str,), {})("k"), Kind.A, "\u00e9", "\x7f", "Z", "_"])
def test_edge_keys_have_json_bytes(key: str) -> None:
    record: dict[str, Any] = {key: 1, "a": 2, "\u00ff": 3, "A": 4}
    assert content_text(record) == json_text(record)


@pytest.mark.parametrize("key", [1, 2**70, True, None, 1.5])
def test_keys_of_other_types_have_json_bytes(key: Any) -> None:
    """orjson refuses a key that is not str: json's text then (json writes it as a string)."""
    assert content_text({key: 1}) == json_text({key: 1})


def test_values_json_cannot_encode_still_fail() -> None:
    """A record json refuses (a datetime, which orjson would write) is refused as before."""
    with pytest.raises(TypeError):
        content_fingerprint({"at": datetime(2026, 11, 27, tzinfo=UTC)})  # type: ignore[dict-item]


def test_an_engagement_record_takes_the_orjson_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The capacity workload's records (ASCII text, counts, fractions) never reach json's encoder."""
    record = RECORDS[0] | {"x": 1, "mic_on": 3.0, "combined_live_engaged_users_play_time_ratio": 0.03}
    expected = content_fingerprint(record)
    monkeypatch.setattr(op_ids, "_encode_content", None)
    assert content_fingerprint(record) == expected
