"""kmsync_bench.sink_cpu (issue #22): the sink in-process against the session broker and the Marketo sandbox
as a process; every operation of a load gets its outcome, the CPU figure is positive, and the profile holds
the sink's own hot path."""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

import pytest

from kmsync_bench.config import CAPACITY_INSTANCE
from kmsync_bench.sandbox import instances_file, start_sandbox
from kmsync_bench.sink_cpu import load
from kmsync_bench.stack import sandbox_limits
from kmsync_cli.processes import ProcessGroup
from kmsync_testing.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


async def test_a_load_is_decided_in_full_and_profiled(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs")
    try:
        limits = {CAPACITY_INSTANCE: sandbox_limits()[CAPACITY_INSTANCE]}
        sandbox = start_sandbox(group, Path(sys.executable), instances_file(tmp_path / "instances.yaml", limits))
        profiler = cProfile.Profile(time.process_time)
        values = await load(kafka_broker.bootstrap, sandbox.instance_url(CAPACITY_INSTANCE), 400, 2, profiler)
    finally:
        group.stop_all()
    assert len(values) == 2 and all(v > 0 for v in values)  # load() raises unless all 400 ops were decided
    profiled = {(Path(f).name, name) for f, _, name in pstats.Stats(profiler).stats}  # type: ignore[attr-defined]
    assert ("routing.py", "route") in profiled and ("publishing.py", "publish") in profiled
