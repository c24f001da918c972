"""transform.decisions.v1 against the real broker: `kmsync transform` (the quix engine, the default,
and the aiokafka worker) writes a forward-only skip as a TransformDecision on the topic, committed
(read_committed readers see it: on the quix engine it is part of the checkpoint's transaction)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from kmsync_common.metrics_text import sample_sum
from kmsync_contracts import AttendeeStatus, decode
from kmsync_contracts.outcomes import TransformDecision
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import ATTENDEE_STATUS, TRANSFORM_DECISIONS, TopicSpec
from kmsync_kafka import topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for

from .conftest import EVENT, MUNCHKIN, PARTNER, PROGRAM
from .test_integration import produce, transform_process

DEADLINE = 150.0  # group joins, topic creation and the first checkpoint on a loaded 2-core machine


async def committed_decisions(broker: KafkaBroker, prefix: str) -> list[TransformDecision]:
    records = await read_to_end(broker.bootstrap, topic_name(TRANSFORM_DECISIONS, prefix))
    return [decode(TRANSFORM_DECISIONS, m.value) for m in records]


@pytest.mark.parametrize("engine", ["quix", "worker"])
async def test_a_forward_only_skip_is_a_decision_on_the_topic(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
    status_record: Callable[..., AttendeeStatus], engine: str,
) -> None:
    items: list[tuple[TopicSpec, BaseModel | bytes]] = [
        (ATTENDEE_STATUS, status_record("registered")),
        (ATTENDEE_STATUS, status_record("unregistered", minutes=1)),
        (ATTENDEE_STATUS, status_record("registered", minutes=2, source_ref="profile 77 version 3")),  # skipped
        (ATTENDEE_STATUS, status_record("registered", user="u2", email="bob@x.io")),  # nothing to decide
    ]
    await produce(kafka_broker, topic_prefix, items)
    with transform_process(kafka_broker, topic_prefix, tmp_path, engine, KMSYNC_TRANSFORM_ENGINE=engine) as running:
        async def decided() -> list[TransformDecision] | None:
            found = await committed_decisions(kafka_broker, topic_prefix)
            return found or None

        found: list[TransformDecision] = await wait_for(decided, within=DEADLINE,
                                                        what=f"a decision on the topic (logs in {running.log})")
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{running.port}/metrics")).text
    (skip,) = found
    assert (skip.decision, skip.reason_code) == ("forward_only_skip", ReasonCode.FORWARD_ONLY_SKIP)
    assert (skip.detail["from_status"], skip.detail["to_status"]) == ("Un-registered", "Registered")
    assert (skip.partner_id, skip.virtual_event_id, skip.user_id, skip.email) == (PARTNER, EVENT, "u1",
                                                                                  "ann@example.com")
    assert (skip.munchkin_id, skip.program_id, skip.source_ref) == (MUNCHKIN, PROGRAM, "profile 77 version 3")
    assert skip.person_key.startswith("email#") and skip.source_topic == topic_name(ATTENDEE_STATUS, topic_prefix)
    assert sample_sum(metrics, "kmsync_transform_decisions_total",
                      {"decision": "forward_only_skip", "tenant": "acme-summit"}) == 1
