"""Transform says when a hanging transaction stalls one of its input partitions, or one of the topics it writes,
for good (hanging_check.py).

A transaction a broker crash left open on a kaltura.* partition, unknown to its coordinator (docs/reference/
streaming.md §3.1), stops transform's read_committed consumer there for good; quixstreams says nothing and the lag
gauge counts only up to the last stable offset. Built here as a crash leaves it (kmsync_testing.hanging), under the
id of an ingest that is gone."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kmsync_contracts.topics import ATTENDEE_STATUS, TRANSFORM_DECISIONS
from kmsync_kafka import ensure_topics, topic_name
from kmsync_testing.hanging import Put, leave_hanging_transaction
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.hanging_check import watched_topics
from kmsync_transform.routing import INPUTS
from kmsync_transform.settings import TransformSettings

from .test_integration import EXACTLY_ONCE_ENGINES, transform_process

PREFIX = "inputs."
HANGING, COMMITTED = 3, 1



async def _metrics(port: int) -> str:
    async with httpx.AsyncClient() as http:
        try:
            return (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.TransportError:
            return ""


async def _reported(broker: KafkaBroker, tmp_path: Path, topic: str, gone_id: str, value: bytes,
                    engine: str = "quix") -> tuple[str, list[str]]:
    """Leaves a hanging transaction of ``gone_id`` on ``topic``[HANGING] (committed on [COMMITTED]), runs transform
    until its gauge says so; returns its metrics then and its ERROR lines about hanging transactions."""
    await leave_hanging_transaction(broker.bootstrap, gone_id, [Put(topic, COMMITTED, b"k", value)],
                                    [Put(topic, HANGING, b"k", value)])
    series = f'kmsync_transform_hanging_transaction{{partition="{HANGING}",topic="{topic}"}} 1.0'
    with transform_process(broker, PREFIX, tmp_path, gone_id, KMSYNC_TRANSFORM_ENGINE=engine,
                           KMSYNC_TRANSFORM_HANGING_CHECK_SECONDS="0.3",
                           KMSYNC_TRANSFORM_HANGING_AFTER_SECONDS="2") as running:
        async def reported() -> bool:
            return series in await _metrics(running.port)

        await wait_for(reported, within=90, what=f"the hanging-transaction gauge of {topic}[{HANGING}]")
        metrics = await _metrics(running.port)
        return metrics, [line for line in running.log.read_text().splitlines() if "ERROR" in line and "hanging" in line]


@pytest.mark.kafka
@pytest.mark.parametrize("engine", EXACTLY_ONCE_ENGINES)
async def test_transform_reports_a_hanging_transaction_on_its_input_by_log_and_metric(
    unverified_broker: KafkaBroker, tmp_path: Path, engine: str
) -> None:
    await ensure_topics(unverified_broker.bootstrap, INPUTS, PREFIX)
    statuses = topic_name(ATTENDEE_STATUS, PREFIX)
    metrics, errors = await _reported(unverified_broker, tmp_path, statuses, "ingest-gone-0", b"not a status", engine)
    # The partition whose transaction committed is not held: no series at all.
    assert f'partition="{COMMITTED}",topic="{statuses}"' not in metrics
    assert len(errors) == 1, errors
    assert f"{statuses}[{HANGING}] last stable offset 0 unmoved behind log end 1" in errors[0]


def test_the_check_watches_transform_s_own_outputs_changelogs_and_repartition_topic_too() -> None:
    # Nobody else reads transform.decisions.v1, transform.dlq.v1 or quixstreams' internal topics with a check: a
    # replica replaced under a new name would leave a hang there for good, unreported.
    group = f"{PREFIX}kmsync-transform"
    cluster = {f"changelog__{group}--{PREFIX}kaltura.polls.v1--default", f"repartition__{group}--polls",
               f"changelog__{PREFIX}other-app--x--default", f"{PREFIX}unrelated"}
    topics = watched_topics(TransformSettings(topic_prefix=PREFIX, transform_app_id="kmsync-transform"))(cluster)
    assert [topic_name(spec, PREFIX) for spec in INPUTS] == topics[:len(INPUTS)]
    assert set(topics[len(INPUTS):]) == {
        f"{PREFIX}marketo.ops.v1", f"{PREFIX}marketo.ops.backfill.v1", f"{PREFIX}transform.dlq.v1",
        f"{PREFIX}transform.decisions.v1", f"changelog__{group}--{PREFIX}kaltura.polls.v1--default",
        f"repartition__{group}--polls"}


# On the quix engine only: which topics the check watches does not depend on the engine (watched_topics, above),
# and that the lean engine runs the check at all is the input test's, run over both.
@pytest.mark.kafka
async def test_transform_reports_a_hanging_transaction_a_gone_replica_left_on_its_decisions_topic(
    unverified_broker: KafkaBroker, tmp_path: Path
) -> None:
    await ensure_topics(unverified_broker.bootstrap, [*INPUTS, TRANSFORM_DECISIONS], PREFIX)
    decisions = topic_name(TRANSFORM_DECISIONS, PREFIX)
    _, errors = await _reported(unverified_broker, tmp_path, decisions, "transform-replaced-pod", b"{}")
    assert any(f"{decisions}[{HANGING}] last stable offset 0 unmoved behind log end 1" in e for e in errors), errors
