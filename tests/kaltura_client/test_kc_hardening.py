"""The client never sends the secret or a KS over plain http, escapes what it puts in URLs, and its
parsers turn hostile input into field-level errors (never an exception)."""

from __future__ import annotations

import io
import json

import pytest
from pydantic import SecretStr, ValidationError

from kmsync_kaltura import KalturaSettings
from kmsync_kaltura.csv_reports import iter_report_csv
from kmsync_kaltura.errors import CsvHeaderError, NotificationParseError
from kmsync_kaltura.models import PollAnswerRow
from kmsync_kaltura.notifications import MAX_NESTING, parse_notification
from kmsync_kaltura.rows import Located, RowError
from kmsync_kaltura.urls import check_entry_id, path_segment

HEADER = b"\xef\xbb\xbfentry_id,poll_id,poll_type,question,user_id,email,answer,answered_at\n"
GOOD = b"1_abc,p1,crowd vote,Q?,u1,u1@acme.com,Yes,2025-06-16T14:00:00.000Z\n"


def settings(url: str) -> KalturaSettings:
    return KalturaSettings(service_url=url, user_profile_url="https://user.us.ovp.kaltura.com/api/v1",
                           partner_id=1, admin_secret=SecretStr("s"))


def test_the_client_refuses_plain_http_except_to_loopback() -> None:
    with pytest.raises(ValidationError, match="must be https"):
        settings("http://www.kaltura.com")
    assert settings("http://127.0.0.1:9000").service_url == "http://127.0.0.1:9000"
    assert settings("https://www.kaltura.com").service_url == "https://www.kaltura.com"


def test_entry_ids_are_checked_and_escaped() -> None:
    assert check_entry_id("1_abcd1234") == "1_abcd1234"
    for bad in ("1_a;virtualeventid=9", "../x", "a,b", "", "x" * 65):
        with pytest.raises(ValueError, match="not a Kaltura entry id"):
            check_entry_id(bad)
    assert path_segment("../a b?c#d/e") == "..%2Fa%20b%3Fc%23d%2Fe"


def outcomes(data: bytes, max_line: int = 1024) -> list[Located[PollAnswerRow] | RowError]:
    return list(iter_report_csv(io.BytesIO(data), PollAnswerRow, max_line_bytes=max_line))


def test_over_long_lines_bad_utf8_and_huge_cells_are_bad_rows_with_their_lines() -> None:
    huge_quoted = b'1_abc,p1,"' + b"x" * 200_000 + b'",Q,u,e@a.com,Y,2025-06-16T14:00:00Z\n'
    data = HEADER + GOOD + b"y" * 5000 + b"\n" + b"1_abc,p1,\xff\xfe,Q,u,u@a.com,Y,x\n" + GOOD
    got = outcomes(data)
    assert [(o.line, type(o).__name__) for o in got] == [
        (2, "Located"), (3, "RowError"), (4, "RowError"), (5, "Located")]
    assert isinstance(got[1], RowError) and got[1].message == "row: line longer than 1024 bytes"
    assert isinstance(got[2], RowError) and got[2].message.startswith("row: not UTF-8")
    got = outcomes(HEADER + huge_quoted + GOOD, max_line=1_000_000)
    assert isinstance(got[0], RowError) and "field limit" in got[0].message
    assert isinstance(got[-1], Located)
    with pytest.raises(CsvHeaderError, match="unreadable header"):
        outcomes(b"\xff\xfe" + HEADER)


def test_deeply_nested_notifications_are_refused_with_a_field_message() -> None:
    deep = {"object": {"id": 1}, "eventNotificationJobId": 1}
    inner: dict[str, object] = deep["object"]  # type: ignore[assignment]
    for _ in range(MAX_NESTING + 5):
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]
    for body in (json.dumps(deep).encode(), b"[" * 100_000):
        with pytest.raises(NotificationParseError) as err:
            parse_notification(body)
        assert err.value.errors[0][0] == "body" and "nested deeper" in err.value.errors[0][1]
