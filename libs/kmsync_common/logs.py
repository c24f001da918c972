"""Logging for every service: one line per event, emails hashed, secrets never formatted.

Use `hash_email()` whenever an email would appear in a log line or a metric label: a keyed HMAC
(kmsync_common.email_hash), so a dictionary of addresses cannot reverse it.
"""

from __future__ import annotations

import logging
import sys

from kmsync_common.email_hash import email_hash_key, hash_email

__all__ = ["hash_email", "setup_logging"]


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
    email_hash_key()  # load the key now: a missing one is reported at start, not at the first email
    return logging.getLogger(service)
