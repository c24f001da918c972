"""SIGUSR2 on a service prints each asyncio task's stack, so a stalled worker shows what it awaits."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from kmsync_common.diagnostics import install_task_dump


async def _parked_forever(event: asyncio.Event) -> None:
    await event.wait()


def test_sigusr2_prints_every_task_with_where_it_waits(capfd: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        install_task_dump(asyncio.get_running_loop())
        parked = asyncio.Event()
        task = asyncio.create_task(_parked_forever(parked), name="window-123-ABC-456")
        await asyncio.sleep(0)  # let the task start and park
        os.kill(os.getpid(), signal.SIGUSR2)
        await asyncio.sleep(0)  # the loop runs the signal handler on its next iteration
        await asyncio.sleep(0)
        parked.set()
        await task

    asyncio.run(main())
    err = capfd.readouterr().err
    assert "asyncio task(s) -----" in err
    assert "--- window-123-ABC-456" in err
    assert "_parked_forever" in err and "await event.wait()" in err
