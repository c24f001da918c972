"""A transform replica with a stable instance id ends, at start, what its previous incarnation left open
(services/kmsync_transform/left_open.py).

kmsync_bench.hanging_txn reproduced it: a broker SIGKILL under load left transform's transaction open on
marketo.ops.v1, transform.decisions.v1 and the polls' repartition topic while the coordinator had the id at
CompleteAbort; transform exited at the broker's restart, and its successor, under a new random transactional id,
could not end it: the sink stalled on that ops partition for good. Here the hanging state is built the way a crash
leaves it (kmsync_testing.hanging) under the replica's transactional id, and the replica is started for real."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import ValidationError

from kmsync_contracts.topics import MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DECISIONS, TRANSFORM_DLQ
from kmsync_kafka import ensure_topics, topic_name
from kmsync_kafka.hanging import Offsets, held_open, stable_and_end
from kmsync_kafka.reading import read_to_end
from kmsync_testing.hanging import Put, leave_hanging_transaction
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.left_open import transactional_id
from kmsync_transform.routing import INPUTS
from kmsync_transform.settings import TransformSettings

from .test_integration import EXACTLY_ONCE_ENGINES, transform_process

PREFIX = "inst."
INSTANCE = "transform-2"



async def _ready(port: int) -> bool:
    async with httpx.AsyncClient() as http:
        try:
            return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.TransportError:
            return False


async def _create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until its futures resolve
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        await asyncio.to_thread(future.result)


def test_an_instance_id_makes_the_transactional_id_stable_and_an_empty_one_keeps_quixstreams_random_id() -> None:
    assert transactional_id(TransformSettings(topic_prefix="p.", transform_instance_id="kmsync-transform-5d8f-x2")) \
        == "p.kmsync-transform-kmsync-transform-5d8f-x2"
    assert transactional_id(TransformSettings(topic_prefix="p.")) is None


def test_an_instance_id_that_is_no_pod_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="transform_instance_id"):
        TransformSettings(transform_instance_id="two words")


@pytest.mark.kafka
@pytest.mark.parametrize("engine", EXACTLY_ONCE_ENGINES)
async def test_a_restarted_replica_ends_the_transaction_its_previous_incarnation_left_hanging(
    unverified_broker: KafkaBroker, tmp_path: Path, engine: str
) -> None:
    bootstrap = unverified_broker.bootstrap
    settings = TransformSettings(kafka_bootstrap=bootstrap, topic_prefix=PREFIX, transform_instance_id=INSTANCE)
    tx_id = transactional_id(settings)
    assert tx_id == f"{PREFIX}{settings.transform_app_id}-{INSTANCE}"
    await ensure_topics(bootstrap, [*INPUTS, MARKETO_OPS, MARKETO_OPS_BACKFILL, TRANSFORM_DLQ, TRANSFORM_DECISIONS],
                        PREFIX)
    ops = topic_name(MARKETO_OPS, PREFIX)
    # One of quixstreams' state changelogs of the group (a store no step uses, so the engine leaves it alone).
    changelog = f"changelog__{PREFIX}{settings.transform_app_id}--unused--default"
    await _create(bootstrap, changelog)
    # The previous incarnation committed a checkpoint, then a crash left its next one open, unknown to the coordinator.
    await leave_hanging_transaction(bootstrap, tx_id, [Put(ops, 0, b"111-AAA-111", b"committed")],
                                    [Put(ops, 2, b"111-AAA-111", b"hanging"), Put(changelog, 0, b"k", b"hanging")])
    hanging = {TopicPartition(ops, 2), TopicPartition(changelog, 0)}
    assert set(await held_open(bootstrap, [ops, changelog])) == hanging
    # Another replica's checkpoint in progress on ops[3] while this one starts: not this id's, not a warning.
    other = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{PREFIX}other-replica")
    await other.start()
    try:
        await other.begin_transaction()
        await other.send_and_wait(ops, b"live", b"111-AAA-111", partition=3)
        with transform_process(unverified_broker, PREFIX, tmp_path, INSTANCE, KMSYNC_TRANSFORM_ENGINE=engine,
                               KMSYNC_TRANSFORM_INSTANCE_ID=INSTANCE) as running:
            await wait_for(lambda: _ready(running.port), within=90, what="the replica to start")
            # Ready comes after the start's clean-up: nothing of this id's holds the sink's partition or the changelog.
            assert await held_open(bootstrap, [ops, changelog]) == [TopicPartition(ops, 3)]
            lines = running.log.read_text().splitlines()
        await other.abort_transaction()
    finally:
        await other.stop()
    warnings = [line for line in lines if "WARNING" in line]
    ended = [line for line in warnings if "ended, aborted" in line]
    # The ended partitions are named, with what an abort of a committed transaction costs and how to re-drive it.
    assert len(ended) == 1 and f"{ops}[2]" in ended[0] and f"{changelog}[0]" in ended[0], warnings
    assert "CompleteCommit" in ended[0] and "kmsync reconcile --event <name> --fix" in ended[0]
    assert not [line for line in warnings if f"{ops}[3]" in line], warnings
    assert [line for line in lines if "INFO" in line and f"{ops}[3]" in line and "still held" in line]
    # Ended aborted: only the committed checkpoint's record is visible.
    assert [r.value for r in await read_to_end(bootstrap, ops)] == [b"committed"]
    # A partition no transaction held got nothing (no aborted record, no marker).
    assert (await stable_and_end(bootstrap, [ops]))[TopicPartition(ops, 1)] == Offsets(0, 0)
