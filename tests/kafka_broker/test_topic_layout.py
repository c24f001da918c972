"""Co-partitioned topics (marketo.ops.v1 and marketo.ops.backfill.v1, issue #18): created alike, refused unalike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kmsync_contracts.topics import ALL_TOPICS, CO_PARTITIONED, MARKETO_OPS, MARKETO_OPS_BACKFILL, co_partition_problems
from kmsync_kafka.clients import TopicLayoutError, ensure_topics, topic_name
from kmsync_sink import cli as sink_cli
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.processes import free_port


def test_the_catalogue_declares_co_partitioned_topics_alike() -> None:
    assert (MARKETO_OPS, MARKETO_OPS_BACKFILL) in CO_PARTITIONED
    for group in CO_PARTITIONED:
        assert all(t in ALL_TOPICS for t in group)
        assert len({t.partitions for t in group}) == 1


def test_problems_name_both_topics_and_their_counts() -> None:
    assert co_partition_problems({"p.marketo.ops.v1": 12, "p.marketo.ops.backfill.v1": 12}, "p.") == []
    assert co_partition_problems({"p.marketo.ops.v1": 12}, "p.") == []  # the other not created yet
    [problem] = co_partition_problems({"p.marketo.ops.v1": 3, "p.marketo.ops.backfill.v1": 12}, "p.")
    assert "p.marketo.ops.v1 has 3" in problem and "p.marketo.ops.backfill.v1 has 12" in problem
    assert "--partitions 12" in problem


async def _create(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _partitions(bootstrap: str, name: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [topic] = await admin.describe_topics([name])
        return len(topic["partitions"])
    finally:
        await admin.close()


async def test_a_topic_is_created_with_its_existing_partners_partitions(kafka_broker: KafkaBroker,
                                                                       topic_prefix: str) -> None:
    await _create(kafka_broker.bootstrap, topic_name(MARKETO_OPS, topic_prefix), 3)
    await ensure_topics(kafka_broker.bootstrap, [MARKETO_OPS_BACKFILL], topic_prefix)  # as the sink does at start
    assert await _partitions(kafka_broker.bootstrap, topic_name(MARKETO_OPS_BACKFILL, topic_prefix)) == 3


async def test_existing_topics_of_different_sizes_are_refused(kafka_broker: KafkaBroker, topic_prefix: str) -> None:
    await _create(kafka_broker.bootstrap, topic_name(MARKETO_OPS, topic_prefix), 3)
    await _create(kafka_broker.bootstrap, topic_name(MARKETO_OPS_BACKFILL, topic_prefix), 2)
    with pytest.raises(TopicLayoutError, match=r"marketo\.ops\.v1 has 3.*marketo\.ops\.backfill\.v1 has 2"):
        await ensure_topics(kafka_broker.bootstrap, [MARKETO_OPS, MARKETO_OPS_BACKFILL], topic_prefix)


def test_the_sink_refuses_them_as_a_configuration_error(kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Exit 2 (README "Exit codes"): an operator must fix the topics; restarting the sink cannot.
    asyncio.run(_create(kafka_broker.bootstrap, topic_name(MARKETO_OPS, topic_prefix), 3))
    asyncio.run(_create(kafka_broker.bootstrap, topic_name(MARKETO_OPS_BACKFILL, topic_prefix), 2))
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(yaml.safe_dump({"marketo_instances": {"m": {
        "munchkin_id": "123-ABC-456", "endpoint": "http://127.0.0.1:9", "client_id": "x",
        "client_secret": {"env": "KMSYNC_TEST_UNUSED_SECRET"}}}, "events": []}))
    for name, value in {"KMSYNC_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "KMSYNC_TOPIC_PREFIX": topic_prefix,
                        "KMSYNC_HTTP_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    assert sink_cli.main(["--tenants", str(tenants)]) == 2
    err = capsys.readouterr().err
    assert "kmsync sink: configuration error:" in err and "marketo.ops.backfill.v1 has 2" in err
