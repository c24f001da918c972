"""Bulk CSV building, splitting and failure-file matching (pure)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from kmsync_marketo.bulk import FAILURE_COLUMN, build_csv_parts, match_rows, parse_result_file
from kmsync_marketo.client import chunk_records


def test_parts_stay_under_the_limit_and_keep_every_record_once() -> None:
    records = [{"email": f"user{i}@example.com", "firstName": "x" * (i % 50), "score": i} for i in range(2000)]
    parts, rejected = build_csv_parts(records, max_bytes=20_000, leading=("email",))
    assert not rejected and len(parts) > 3
    assert all(p.size <= 20_000 for p in parts)
    assert sorted(s for p in parts for s in p.seqs) == list(range(2000))
    for p in parts:
        rows = list(csv.reader(io.StringIO(p.text)))
        assert rows[0] == ["email", "firstName", "score"]  # every file repeats the header
        assert len(rows) - 1 == len(p.seqs)


def test_a_row_that_cannot_fit_is_failed_not_sent() -> None:
    parts, rejected = build_csv_parts([{"email": "a@x.io"}, {"email": "b@x.io", "blob": "y" * 5000}], 1000)
    assert [o.seq for o in rejected] == [1] and rejected[0].status == "failed"
    assert parts[0].seqs == [0]


def test_failure_rows_are_matched_back_to_their_records_even_with_duplicates() -> None:
    records = [
        {"email": "a@x.io", "leadScore": "1"},
        {"email": "b@x.io", "leadScore": "TEXT"},
        {"email": "a@x.io", "leadScore": "1"},  # identical row twice
        {"email": "c, d@x.io", "leadScore": "2"},  # needs quoting
    ]
    parts, _ = build_csv_parts(records, 10_000)
    failure_csv = (
        f"email,leadScore,{FAILURE_COLUMN}\n"
        "b@x.io,TEXT,Invalid data type in field Lead Score\n"
        "a@x.io,1,Duplicate\n"
        '"c, d@x.io",2,Invalid email\n'
    )
    matched, unmatched = match_rows(parts[0], parse_result_file(failure_csv, FAILURE_COLUMN))
    assert unmatched == 0
    assert matched == {1: "Invalid data type in field Lead Score", 0: "Duplicate", 3: "Invalid email"}


def test_unknown_failure_rows_are_counted_as_unmatched() -> None:
    parts, _ = build_csv_parts([{"email": "a@x.io"}], 10_000)
    _, unmatched = match_rows(parts[0], parse_result_file(f"email,{FAILURE_COLUMN}\nz@x.io,bad\n", FAILURE_COLUMN))
    assert unmatched == 1


def test_rest_chunks_respect_300_records_and_the_body_limit() -> None:
    small = [{"email": f"u{i}@x.io"} for i in range(700)]
    assert [len(c) for _, c in chunk_records(small)] == [300, 300, 100]
    assert [o for o, _ in chunk_records(small)] == [0, 300, 600]
    big = [{"email": f"u{i}@x.io", "notes": "z" * 9000} for i in range(250)]
    chunks = list(chunk_records(big))
    assert len(chunks) >= 3 and sum(len(c) for _, c in chunks) == 250


def test_a_body_made_of_its_records_own_bytes_is_what_encoding_the_whole_gives() -> None:
    """Each record is encoded once (its size and the body from the same bytes, issue #22)."""
    import json

    from kmsync_marketo.client import encoded_chunks, json_body

    records = [{"email": f"ü{i}@x.com", "firstName": "Zoë \"Q\"", "n": i, "f": i / 3, "none": None}
               for i in range(700)]
    for extra in ({"action": "createOrUpdate", "lookupField": "email"}, {}):
        chunks = list(encoded_chunks(records))
        assert [len(c) for _, c, _ in chunks] == [300, 300, 100]
        for _, chunk, encoded in chunks:
            whole = json.dumps({**extra, "input": chunk}, separators=(",", ":"), ensure_ascii=False).encode()
            assert json_body(extra, encoded) == whole


def test_records_are_encoded_by_orjson_and_what_it_refuses_by_the_standard_encoder(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """orjson encodes the records (issue #22); a value it refuses but JSON holds (an integer beyond 64 bits,
    a non-string key) is encoded as before, and what neither takes (a datetime) still fails."""
    import json

    from kmsync_marketo import client

    standard: list[Any] = []
    encoder = client._JSON

    class Counting:
        def encode(self, o: Any) -> str:
            standard.append(o)
            return encoder.encode(o)

    monkeypatch.setattr(client, "_JSON", Counting())
    plain = {"leadId": 7, "activityDate": "2026-12-06T12:00:00+00:00", "f": 1e16, "tiny": 5e-7, "t": "Zoë \u2028 \"q\""}
    assert json.loads(client.encode_record(plain)) == plain and standard == []
    assert client.encode_record(plain) == json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode(
        ).replace(b"5e-07", b"5e-7")  # the one difference: a small float's exponent
    huge = {"n": 2**70, 3: "int key"}
    assert client.encode_record(huge) == b'{"n":1180591620717411303424,"3":"int key"}' and standard == [huge]
    with pytest.raises(TypeError):
        client.encode_record({"at": datetime.now(UTC)})


def test_answers_are_read_by_orjson_and_what_it_refuses_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """A write's answer is parsed by orjson (issue #22); an answer orjson refuses but Python's json reads
    (a NaN, UTF-16) is read as before, one with an integer beyond 64 bits (which orjson rounds to a float)
    goes to the standard parser, and one that is not JSON fails."""
    import httpx

    from kmsync_marketo.errors import MarketoProtocolError
    from kmsync_marketo.transport import MarketoTransport, Request

    req = Request("POST", "/rest/v1/leads.json")
    body = {"requestId": "e42b#1", "success": True, "result": [{"seq": 0, "status": "updated", "id": 7}]}
    stdlib_json = httpx.Response.json
    monkeypatch.setattr(httpx.Response, "json", lambda self, **kw: pytest.fail("read by the standard parser"))
    assert MarketoTransport._read_body(req, httpx.Response(200, json=body)) == body
    monkeypatch.setattr(httpx.Response, "json", stdlib_json)
    nan = MarketoTransport._read_body(req, httpx.Response(200, content=b'{"n": NaN}'))
    assert nan["n"] != nan["n"]
    # orjson reads an integer beyond 64 bits as a rounded float without an error (1.2345678901234569e+23):
    # such a body, alone, must reach the standard parser and keep the exact integer.
    big = b'{"success":true,"result":[{"id":123456789012345678901234,"seq":0}]}'
    assert MarketoTransport._read_body(req, httpx.Response(200, content=big)) == {
        "success": True, "result": [{"id": 123456789012345678901234, "seq": 0}]}
    low = b'{"result":[{"id":-9223372036854775809,"edge":18446744073709551615}]}'  # 19 digits, beyond int64
    read = MarketoTransport._read_body(req, httpx.Response(200, content=low))
    assert read["result"][0] == {"id": -9223372036854775809, "edge": 18446744073709551615}
    assert all(type(v) is int for v in read["result"][0].values())
    utf16 = httpx.Response(200, content='{"m": "café"}'.encode("utf-16"))
    assert MarketoTransport._read_body(req, utf16) == {"m": "café"}
    with pytest.raises(MarketoProtocolError):
        MarketoTransport._read_body(req, httpx.Response(200, content=b"<html>"))
