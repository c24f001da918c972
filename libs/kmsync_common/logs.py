"""Logging for every service: one line per event, emails hashed, secrets never formatted.

Use `hash_email()` whenever an email would appear in a log line or a metric label: a keyed HMAC
(kmsync_common.email_hash), so a dictionary of addresses cannot reverse it.
"""

from __future__ import annotations

import logging
import os
import sys

from kmsync_common.email_hash import email_hash_key, hash_email

__all__ = ["LOG_FORMATS", "hash_email", "log_formatter", "setup_logging"]


#: KMSYNC_LOG_FORMAT: "text" (default, for terminals) or "json" (one JSON object per line, for
#: Kubernetes log stacks), formatted by python-json-logger.
LOG_FORMATS = ("text", "json")


def log_formatter(service: str, fmt: str = "text") -> logging.Formatter:
    """The formatter of `fmt`; json lines carry time, service, level, logger and message (plus any
    `extra=` fields and the exception text)."""
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                             rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                             static_fields={"service": service})
    if fmt != "text":
        raise ValueError(f"KMSYNC_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    return logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")


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
