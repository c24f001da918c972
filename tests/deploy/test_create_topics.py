"""deploy/docker/create_topics.py (the compose `topics` service and the pods' init container)
creates every topic of the catalogue on a real Kafka broker with its partitions and configs, reading
KMSYNC_KAFKA_BOOTSTRAP and KMSYNC_TOPIC_PREFIX, and a second run changes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from kmsync_contracts.topics import ALL_TOPICS
from kmsync_kafka.launcher import KafkaBroker


def run_script(repo: Path, bootstrap: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KMSYNC_KAFKA_BOOTSTRAP": bootstrap, "KMSYNC_TOPIC_PREFIX": prefix}
    return subprocess.run([sys.executable, str(repo / "deploy/docker/create_topics.py"), "--timeout", "30"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


async def describe(bootstrap: str, names: list[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for resource in response.resources:
                _, _, _, name, entries = resource
                configs[name] = {e[0]: e[1] for e in entries}
        return partitions, configs
    finally:
        await admin.close()


def test_creates_the_catalogue_idempotently(kafka_broker: KafkaBroker, topic_prefix: str, repo: Path) -> None:
    first = run_script(repo, kafka_broker.bootstrap, topic_prefix)
    assert first.returncode == 0, first.stderr
    assert f"{len(ALL_TOPICS)} created, 0 already present" in first.stdout
    names = [topic_prefix + spec.name for spec in ALL_TOPICS]
    partitions, configs = asyncio.run(describe(kafka_broker.bootstrap, names))
    for spec in ALL_TOPICS:
        name = topic_prefix + spec.name
        assert partitions[name] == spec.partitions, name
        assert configs[name]["cleanup.policy"] == spec.cleanup_policy, name
        assert configs[name]["retention.ms"] == str(spec.retention_ms), name
    second = run_script(repo, kafka_broker.bootstrap, topic_prefix)
    assert second.returncode == 0, second.stderr
    assert f"0 created, {len(ALL_TOPICS)} already present" in second.stdout
