"""Runtime pieces every service shares: logging with hashed emails, health and metrics HTTP."""

from kmsync_common.health import add_health_routes, start_health_server
from kmsync_common.logs import hash_email, setup_logging

__all__ = ["add_health_routes", "hash_email", "setup_logging", "start_health_server"]
