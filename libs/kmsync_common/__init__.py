"""Runtime pieces every service shares: logging with hashed emails, health and metrics HTTP."""

from kmsync_common.email_hash import configure_email_hash_key, key_is_ephemeral
from kmsync_common.health import add_health_routes, start_health_server
from kmsync_common.logs import hash_email, setup_logging

__all__ = [
    "add_health_routes",
    "configure_email_hash_key",
    "hash_email",
    "key_is_ephemeral",
    "setup_logging",
    "start_health_server",
]
