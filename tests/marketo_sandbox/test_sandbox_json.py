"""The sandbox's faster JSON paths (issue #22) mean what the standard library's meant: every request body parses to
the same value (or is refused alike), and the activity attributes' size limit (1049) cuts where it cut."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from marketo_sandbox.api_activities import MAX_ATTRIBUTE_BYTES, _attributes_bytes_over
from marketo_sandbox.server import _json_or_none

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
)
_ATTRIBUTES = st.lists(st.fixed_dictionaries({"apiName": st.text(max_size=12), "value": _SCALARS}), max_size=20)


def _exact_over(attrs: list[Any]) -> bool:
    return len(json.dumps(attrs).encode()) > MAX_ATTRIBUTE_BYTES


@settings(max_examples=400, deadline=None)
@given(_ATTRIBUTES, st.integers(min_value=0, max_value=70_000), st.sampled_from(["a", "é", "\u2028", "😀", "\x01", "\x7f"]))
def test_the_size_limit_cuts_where_the_standard_encoder_measured(attrs: list[Any], pad: int, char: str) -> None:
    """Attributes of any values, padded to around the limit and around a quarter of it (where the quick measure
    hands over to the exact one) with characters whose escapes are longest (DEL: 1 byte in orjson's text, 6 in the
    standard encoder's)."""
    for length in (pad, pad // 6, MAX_ATTRIBUTE_BYTES // 6 - 10 + pad % 20, MAX_ATTRIBUTE_BYTES // 12 + pad % 20):
        padded = [*attrs, {"apiName": "pad", "value": char * length}]
        assert _attributes_bytes_over(padded) is _exact_over(padded)


def test_the_limit_is_still_enforced_and_not_below_it() -> None:
    one = [{"apiName": "a", "value": "x" * (MAX_ATTRIBUTE_BYTES - 40)}]
    assert not _attributes_bytes_over(one)
    assert _attributes_bytes_over([{"apiName": "a", "value": "x" * MAX_ATTRIBUTE_BYTES}])
    assert _attributes_bytes_over([{"apiName": "a", "value": "\u00e9" * (MAX_ATTRIBUTE_BYTES // 5)}])  # 6 bytes each


@settings(max_examples=300, deadline=None)
@given(st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=4), max_leaves=12))
def test_a_body_parses_to_what_the_standard_parser_gave(value: Any) -> None:
    raw = json.dumps(value).encode()  # NaN and Infinity as the standard encoder writes them, big integers too
    got, want = _json_or_none(raw, "application/json"), json.loads(raw)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=30) | st.floats(allow_nan=False), max_size=6))
def test_a_raw_utf8_body_parses_to_what_the_standard_parser_gave(value: Any) -> None:
    """Bodies as kmsync sends them: UTF-8, not ASCII-escaped (its encoder writes ``ensure_ascii=False``)."""
    raw = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert _json_or_none(raw, "application/json") == json.loads(raw)


def test_bodies_the_fast_parser_refuses_still_parse_and_bad_ones_are_none() -> None:
    assert _json_or_none(b'{"a": NaN, "b": 18446744073709551616}', "application/json") is not None
    assert _json_or_none('{"a": "\u00e9"}'.encode("utf-16"), "application/json") == {"a": "\u00e9"}
    assert _json_or_none(b'{"a": "\\ud800"}', "application/json") == {"a": "\ud800"}
    assert _json_or_none(b"\xef\xbb\xbf{}", "application/json") == {}
    assert _json_or_none(b'{"a": ', "application/json") is None
    assert _json_or_none(b"\xff\xfe\xfa", "application/json") is None
    assert _json_or_none(b'{"a":1}', "application/x-www-form-urlencoded") is None
