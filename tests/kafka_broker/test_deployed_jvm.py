"""The benchmark's broker runs with a released broker's JVM options (issue #22, session 8): kafka-server-start.sh's
1 GiB heap and kafka-run-class.sh's GC options, what the apache/kafka image of docker-compose.yml starts. The
bench measures what users run; the tests' brokers keep their smaller heap."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmsync_bench import stack
from kmsync_testing.kafka_broker import DEPLOYED_JVM_OPTIONS, KafkaBroker, restart_broker, start_broker


def _cmdline(broker: KafkaBroker) -> list[str]:
    return Path(f"/proc/{broker.process.pid}/cmdline").read_bytes().decode().split("\0")


def test_a_broker_started_as_deployed_keeps_those_options_across_a_restart(tmp_path: Path) -> None:
    broker = start_broker(tmp_path, jvm_options=DEPLOYED_JVM_OPTIONS)
    try:
        assert {"-Xmx1G", "-Xms1G", "-XX:InitiatingHeapOccupancyPercent=35"} <= set(_cmdline(broker))
        assert "-Xms128m" not in _cmdline(broker)
        restart_broker(broker)
        assert {"-Xmx1G", "-Xms1G", "-XX:InitiatingHeapOccupancyPercent=35"} <= set(_cmdline(broker))
    finally:
        broker.stop()


def test_the_benchmark_starts_its_broker_as_deployed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple[str, ...] | None] = []

    def fake_start(work_dir: Path, *, jvm_options: tuple[str, ...] | None = None) -> KafkaBroker:
        seen.append(jvm_options)
        return object()  # type: ignore[return-value]

    monkeypatch.setattr(stack, "start_broker", fake_start)
    stack.start_broker_retrying(tmp_path / "kafka")
    assert seen == [DEPLOYED_JVM_OPTIONS]
