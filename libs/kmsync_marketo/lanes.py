"""Which lane a Marketo call belongs to: live (pulls, webhooks) or backfill (history loads).

The instance limiter (limiter.py) serves the live lane first and gives the backfill lane a capped
share of the instance's budget (architecture.md principle 10). The lane travels with the asyncio
task that makes the call (a context variable), so every call a backfill window makes, the tasks it
spawns (concurrent calls, pipelined bulk jobs, their status polls) included, counts as backfill
without the client's methods taking a lane argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from kmsync_contracts.kaltura_records import Lane

__all__ = ["BACKFILL", "LIVE", "Lane", "current_lane", "in_lane", "set_lane"]
LIVE: Lane = "live"
BACKFILL: Lane = "backfill"

_CURRENT: ContextVar[Lane] = ContextVar("kmsync_marketo_lane", default=LIVE)


def current_lane() -> Lane:
    """The lane of the running task (live unless a caller said otherwise)."""
    return _CURRENT.get()


def set_lane(lane: Lane) -> None:
    """Mark the running task (and the tasks it creates from now on) as ``lane``."""
    _CURRENT.set(lane)


@contextmanager
def in_lane(lane: Lane) -> Iterator[None]:
    """Calls made inside the block (and tasks created in it) belong to ``lane``."""
    token = _CURRENT.set(lane)
    try:
        yield
    finally:
        _CURRENT.reset(token)
