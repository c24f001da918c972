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
def test_an_email_in_an_exceptions_text_or_a_message_is_hashed(fmt: str) -> None:
    """Call sites hash the emails they log; an exception's text (a client error quoting a record) or a
    value nobody hashed must not carry one to the log either."""
    configure_email_hash_key(b"k" * 32)
    try:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(log_formatter("sink", fmt))
        logger = logging.getLogger("kmsync.test.logs.emails")
        logger.handlers[:] = [handler]
        logger.propagate = False
        try:
            raise ValueError("record {'email': 'Ann.O-Neil+x@Example.co.uk'} refused")
        except ValueError:
            logger.exception("call failed for %s", "bob@example.com")
        logger.handlers.clear()
        line = stream.getvalue()
        assert "@" not in line
        assert hash_email("Ann.O-Neil+x@Example.co.uk") in line and hash_email("bob@example.com") in line
        if fmt == "json":
            assert json.loads(line)["message"] == f"call failed for {hash_email('bob@example.com')}"
    finally:
        configure_email_hash_key(None)
