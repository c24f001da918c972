"""Logging for every service: one line per event, emails hashed, secrets never formatted.

Use `hash_email()` whenever an email would appear in a log line or a metric label: a keyed HMAC
(kmsync_common.email_hash), so a dictionary of addresses cannot reverse it.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from kmsync_common.email_hash import email_hash_key, hash_email

__all__ = ["LOG_FORMATS", "EmailHashingFormatter", "hash_email", "log_formatter", "setup_logging"]


#: KMSYNC_LOG_FORMAT: "text" (default, for terminals) or "json" (one JSON object per line, for
#: Kubernetes log stacks), formatted by python-json-logger.
LOG_FORMATS = ("text", "json")


#: What an email address looks like in a log line (the part before "@" and a dotted domain): wide on purpose,
#: a false positive only hashes a string that was not an address.
EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+-][A-Za-z0-9._%+'-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


class EmailHashingFormatter(logging.Formatter):
    """Any email left in a formatted line (an exception's text, a value a message did not hash) is replaced
    by its ``hash_email``: the last guard, behind hashing at every call site that logs a person."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        if "@" not in line:
            return line
        return EMAIL_IN_TEXT.sub(lambda m: hash_email(m.group(0)), line)


def log_formatter(service: str, fmt: str = "text") -> logging.Formatter:
    """The formatter of `fmt`; json lines carry time, service, level, logger and message (plus any
    `extra=` fields and the exception text). Either way an email in the line is hashed."""
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        return EmailHashingFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service}))
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
