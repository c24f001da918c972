"""Logging for every service: one line per event, emails hashed, secrets never formatted.

Use `hash_email()` whenever an email would appear in a log line or a metric label.
"""

from __future__ import annotations

import hashlib
import logging
import sys


def hash_email(email: str | None) -> str:
    """A stable, non-reversible stand-in for an email in logs: 'email#' + 12 hex of sha256."""
    if not email:
        return "email#none"
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"email#{digest[:12]}"


def setup_logging(service: str, level: str = "INFO") -> logging.Logger:
    """Plain-text logs to stderr with the service name; returns the service's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party clients log request URLs; Marketo's legacy access_token query parameter must never
    # reach a log, so keep HTTP client chatter at WARNING.
    for noisy in ("httpx", "httpcore", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(service)
