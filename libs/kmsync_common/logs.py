"""Logging for every service: one line per event, emails hashed, secrets never formatted.

Use `hash_email()` whenever an email would appear in a log line or a metric label: a keyed HMAC
(kmsync_common.email_hash), so a dictionary of addresses cannot reverse it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

from kmsync_common.email_hash import email_hash_key, hash_email

__all__ = ["LOG_FORMATS", "EmailHashingFormatter", "hash_email", "log_formatter", "setup_logging"]


#: KMSYNC_LOG_FORMAT: "text" (default, for terminals) or "json" (one JSON object per line, for
#: Kubernetes log stacks), formatted by python-json-logger.
LOG_FORMATS = ("text", "json")


#: What an email address looks like in log text: a local part and a dotted domain of any characters an
#: address can carry (Unicode included: internationalised addresses), around "@" or its URL encoding "%40".
#: Wide on purpose (a false positive only hashes a string that was not an address) and bounded (64 characters
#: before the "@", 63 per domain label), so a long run of such characters costs linear, not quadratic, time.
_ATOM = r"[^\s@\"'<>()\[\],;:\\/%=&?#|`{}]"
_LABEL = r"[^\s@\"'<>()\[\],;:\\/%=&?#|`{}.]"
EMAIL_IN_TEXT = re.compile(rf"{_ATOM}{{1,64}}(?:@|%40){_LABEL}{{1,63}}(?:\.{_LABEL}{{1,63}})*\.{_LABEL}{{2,63}}")


def hash_emails_in(text: str) -> str:
    """``text`` with every email in it replaced by its ``hash_email``."""
    if "@" not in text and "%40" not in text:
        return text
    return EMAIL_IN_TEXT.sub(lambda m: hash_email(m.group(0).replace("%40", "@")), text)


def _hash_values(value: Any) -> Any:
    if isinstance(value, str):
        return hash_emails_in(value)
    if isinstance(value, dict):
        return {k: _hash_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hash_values(v) for v in value]
    return value


class EmailHashingFormatter(logging.Formatter):
    """Text lines: any email left in the formatted line (an exception's text, a value a message did not
    hash) is replaced by its ``hash_email``: the last guard, behind hashing at every call site that logs a
    person."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return hash_emails_in(self.inner.format(record))


def _json_formatter(service: str) -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class EmailHashingJsonFormatter(JsonFormatter):
        """JSON lines: the same guard on every string value (message, exception text, ``extra=`` fields)
        before it is serialised, so escapes (``\\n``, ``\\u00a0``) never touch an address and the line
        stays valid JSON."""

        def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
            hashed: dict[str, Any] = _hash_values(log_record)
            return hashed

    return EmailHashingJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"service": service})


def log_formatter(service: str, fmt: str = "text") -> logging.Formatter:
    """The formatter of `fmt`; json lines carry time, service, level, logger and message (plus any
    `extra=` fields and the exception text). Either way an email in the line is hashed."""
    if fmt == "json":
        return _json_formatter(service)
    if fmt != "text":
        raise ValueError(f"KMSYNC_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    return EmailHashingFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))


def setup_logging(service: str, level: str = "INFO", fmt: str | None = None) -> logging.Logger:
    """Logs to stderr with the service name, as text or JSON lines (`fmt`, else KMSYNC_LOG_FORMAT);
    returns the service's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(service, fmt or os.environ.get("KMSYNC_LOG_FORMAT", "text").strip().lower()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party clients log request URLs; Marketo's legacy access_token query parameter must never
    # reach a log, so keep HTTP client chatter at WARNING.
    for noisy in ("httpx", "httpcore", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    email_hash_key()  # load the key now: a missing one is reported at start, not at the first email
    return logging.getLogger(service)
