"""KMSYNC_LOG_FORMAT=json: one JSON object per log line for Kubernetes log stacks (issue #20 item 11)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kmsync_common.email_hash import configure_email_hash_key, hash_email
from kmsync_common.logs import log_formatter, setup_logging


def _emit(formatter: logging.Formatter, *, exc: bool = False) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("kmsync.test.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        if exc:
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                logger.exception("window failed for %s", "123-ABC-456")
        else:
            logger.warning("parked %s until %s", "123-ABC-456", "midnight", extra={"munchkin_id": "123-ABC-456"})
    finally:
        logger.handlers.clear()
    return stream.getvalue()


def test_json_lines_carry_time_service_level_logger_message_and_extras() -> None:
    line = _emit(log_formatter("sink", "json"))
    assert line.count("\n") == 1
    record = json.loads(line)
    assert record["service"] == "sink" and record["level"] == "WARNING"
    assert record["logger"] == "kmsync.test.logs"
    assert record["message"] == "parked 123-ABC-456 until midnight"
    assert record["munchkin_id"] == "123-ABC-456" and "time" in record


def test_an_exception_stays_inside_its_one_json_line() -> None:
    line = _emit(log_formatter("sink", "json"), exc=True)
    assert line.count("\n") == 1
    record = json.loads(line)
    assert "RuntimeError: boom" in record["exc_info"]


def test_text_is_the_default_and_an_unknown_format_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _emit(log_formatter("ingest")).split(" ")[2:4] == ["ingest", "WARNING"]
    monkeypatch.setenv("KMSYNC_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="KMSYNC_LOG_FORMAT must be one of text, json, got 'xml'"):
        setup_logging("ingest")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_email_in_an_exceptions_text_a_message_or_an_extra_is_hashed(fmt: str) -> None:
    """Call sites hash the emails they log; an exception's text (a client error quoting a record), an
    `extra=` field or a value nobody hashed must not carry one to the log either, and a JSON line stays
    valid JSON whatever escapes surround the address."""
    configure_email_hash_key(b"k" * 32)
    addresses = ["Ann.O-Neil+x@Example.co.uk", "jane@exämple.de", "bob@example.com", "eve@example.org",
                 "zoe@example.net"]
    try:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(log_formatter("sink", fmt))
        logger = logging.getLogger("kmsync.test.logs.emails")
        logger.handlers[:] = [handler]
        logger.propagate = False
        try:
            raise ValueError("record {'email': 'Ann.O-Neil+x@Example.co.uk'} refused:\njane@exämple.de")
        except ValueError:
            logger.exception("call failed for %s\tafter\u00a0eve@example.org (%s)", "bob@example.com",
                             "GET /leads?email=zoe%40example.net", extra={"who": ["bob@example.com"]})
        logger.handlers.clear()
        line = stream.getvalue()
        assert "@" not in line and "%40" not in line
        assert all(hash_email(a) in line for a in addresses), line
        if fmt == "json":
            record = json.loads(line)
            assert record["message"].startswith(f"call failed for {hash_email('bob@example.com')}\tafter")
            assert record["who"] == [hash_email("bob@example.com")]
            assert hash_email("jane@exämple.de") in record["exc_info"]
    finally:
        configure_email_hash_key(None)


def test_kafka_refs_and_times_with_an_at_sign_are_left_alone() -> None:
    from kmsync_common.logs import hash_emails_in

    for text in ("user-profile:123@2026-03-02T12:00:00.123+00:00", "target@12s", "job@1234:98765:u-1"):
        assert hash_emails_in(text) == text
