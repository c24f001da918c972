"""The one way tests wait: poll a condition until it holds or a deadline passes (never a fixed sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

#: How often a condition is polled. It bounds how late a wait notices the condition, nothing more.
POLL_INTERVAL = 0.05


async def wait_for(condition: Callable[[], Any], within: float = 20.0, what: str = "condition") -> Any:
    """Poll `condition` (sync, or returning an awaitable) until it is truthy and return its value;
    raise AssertionError naming `what` when `within` seconds pass first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)
