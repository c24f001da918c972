"""apps/kmsync_bench/HangingTxnTool.java, the sink README's runbook tool: its abort never ends a live transaction
unless told exactly which one (a live transform checkpoint's operations would be dropped while its input offsets
commit)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kmsync_kafka.hanging import stable_and_end
from kmsync_testing.kafka_broker import KafkaBroker, libs_dir

TOOL = Path(__file__).parents[2] / "apps" / "kmsync_bench" / "HangingTxnTool.java"


def _tool(*args: str) -> list[dict[str, object]]:
    done = subprocess.run(["java", "-cp", f"{libs_dir()}/*", str(TOOL), *args], capture_output=True, text=True,
                          timeout=120, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.kafka
async def test_abort_leaves_a_live_transaction_alone_unless_given_its_start_offset(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    bootstrap, topic = kafka_broker.bootstrap, f"{topic_prefix}ops"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        await asyncio.to_thread(future.result)
    tp, target = TopicPartition(topic, 0), f"{topic}:0"
    live = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic_prefix}live",
                            transaction_timeout_ms=600_000)
    await live.start()
    try:
        await live.begin_transaction()
        await live.send_and_wait(topic, b"op", b"k", partition=0)
        await live.send_and_wait(topic, b"op", b"k", partition=0)  # the transaction starts at 0, not 1
        assert (await stable_and_end(bootstrap, [topic]))[tp].stable == 0
        # The runbook's command as written: the default minimum age (120 s) spares a transaction written just now.
        assert await asyncio.to_thread(_tool, "abort", bootstrap, target) == []
        # Told every age but another start offset: still spared.
        assert await asyncio.to_thread(_tool, "abort", bootstrap, "--min-age-ms=0", "--start-offset=1", target) == []
        assert (await stable_and_end(bootstrap, [topic]))[tp].open
        aborted = await asyncio.to_thread(_tool, "abort", bootstrap, "--min-age-ms=0", "--start-offset=0", target)
        assert [a["aborted"] for a in aborted] == [f"{topic}-0"]
    finally:
        await live.stop()
