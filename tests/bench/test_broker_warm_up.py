"""The bench warms the broker's JVM with section 4's load before it measures anything (issue #22, session 8):
a broker just started spends most of its first load's CPU compiling (JIT), which a deployed broker has done."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kmsync_bench import sections
from kmsync_bench.config import EFFICIENCY_INSTANCE, QUICK
from kmsync_bench.stack import EVENT_IDS, LIFTED, WARM_UP_INSTANCE, Stack, sandbox_limits
from kmsync_bench.workload import engagement_csv


class _Follower:
    """Outcomes arrive as soon as a report is uploaded: two operations per row."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, munchkin: str) -> int:
        return self.counts.get(munchkin, 0)


def test_warm_up_sends_section_4s_rows_thrice_through_an_instance_of_their_own(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    stack = Stack(tmp_path, QUICK)
    follower = _Follower()
    uploads: list[tuple[str, bytes]] = []
    instance_of = {"latency": EFFICIENCY_INSTANCE, "warm-up": WARM_UP_INSTANCE}

    async def upload(stack: Stack, csv: bytes, event: str, entry_id: str, exported_at: Any) -> None:
        uploads.append((event, csv))
        rows = csv.count(b"\n") - 1
        follower.counts[instance_of[event]] = follower.count(instance_of[event]) + 2 * rows

    monkeypatch.setattr(sections, "upload_report", upload)
    monkeypatch.setattr(Stack, "check_alive", lambda self: None)
    asyncio.run(sections.warm_up(stack, follower))  # type: ignore[arg-type]

    assert [event for event, _ in uploads] == ["latency", "warm-up"]
    rows = sections.BROKER_WARM_UP_ROUNDS * QUICK.capacity_rows
    assert sections.BROKER_WARM_UP_ROUNDS >= 3  # one round left the broker's C2 compiler busy (0.5 CPU s per 10k rows)
    assert uploads[1][1] == engagement_csv(rows, "jit")
    assert follower.count(WARM_UP_INSTANCE) == 2 * rows
    # Its own event and instance (section 4 counts its instance's outcomes), every limit lifted.
    assert EVENT_IDS["warm-up"] not in {EVENT_IDS[s] for s in ("latency", "capacity", "backfill")}
    assert sandbox_limits()[WARM_UP_INSTANCE]["rate_limit"] == LIFTED


def test_warm_up_fails_when_the_rows_never_come_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stack = Stack(tmp_path, QUICK.model_copy(update={"section_timeout_seconds": 0.5}))
    follower = _Follower()

    async def upload(stack: Stack, csv: bytes, event: str, entry_id: str, exported_at: Any) -> None:
        return None

    monkeypatch.setattr(sections, "upload_report", upload)
    monkeypatch.setattr(Stack, "check_alive", lambda self: None)
    with pytest.raises(RuntimeError, match=f"0 of {2 * sections.BROKER_WARM_UP_ROUNDS * QUICK.capacity_rows} operations"):
        asyncio.run(sections.warm_broker(stack, follower))  # type: ignore[arg-type]
