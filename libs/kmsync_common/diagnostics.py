"""Diagnosing a stalled process: SIGUSR2 prints every asyncio task's stack to stderr.

An operator (or the chaos harness) sends ``kill -USR2 <pid>`` to a service that has stopped making
progress; each task's name, coroutine and innermost frames show what it is waiting for. Nothing
else changes: the process keeps running. Stacks carry code locations only, never record values.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime


def dump_tasks(limit: int = 8) -> None:
    """Print every asyncio task of the running loop (name, coroutine, innermost frames) to stderr."""
    out = sys.__stderr__
    tasks = asyncio.all_tasks()
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    print(f"----- {at} {len(tasks)} asyncio task(s) -----", file=out)
    for task in tasks:
        print(f"--- {task.get_name()} {task.get_coro()!r}", file=out)
        task.print_stack(limit=limit, file=out)
    if out is not None:
        out.flush()


def install_task_dump(loop: asyncio.AbstractEventLoop) -> None:
    """SIGUSR2 → ``dump_tasks`` on ``loop`` (a no-op where the platform has no SIGUSR2)."""
    sig = getattr(signal, "SIGUSR2", None)
    if sig is not None:
        loop.add_signal_handler(sig, dump_tasks)
