"""transform.decisions.v1 against the real broker: `kmsync transform` (the quix and lean engines and the aiokafka
worker) writes a forward-only skip as a TransformDecision on the topic, committed
(read_committed readers see it: on the quix and lean engines it is part of the checkpoint's transaction), and
the quix and lean engines write every other kind of decision too, each counted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from kmsync_common.metrics_text import sample_sum
from kmsync_contracts import AttendeeStatus, PollResponse, decode
from kmsync_contracts.outcomes import TransformDecision
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import ATTENDEE_STATUS, POLL_RESPONSES, TRANSFORM_DECISIONS, TopicSpec
from kmsync_kafka import ensure_topics, topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for

from .conftest import EVENT, MUNCHKIN, PARTNER, PROGRAM
from .test_integration import EXACTLY_ONCE_ENGINES, produce, transform_process

DEADLINE = 150.0  # group joins, topic creation and the first checkpoint on a loaded 2-core machine


async def committed_decisions(broker: KafkaBroker, prefix: str) -> list[TransformDecision]:
    records = await read_to_end(broker.bootstrap, topic_name(TRANSFORM_DECISIONS, prefix))
    return [decode(TRANSFORM_DECISIONS, m.value) for m in records]


@pytest.mark.parametrize("engine", [*EXACTLY_ONCE_ENGINES, "worker"])
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


@pytest.mark.parametrize("engine", EXACTLY_ONCE_ENGINES)
async def test_every_transform_decision_kind_reaches_the_topic_and_its_counter(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
    status_record: Callable[..., AttendeeStatus], poll_record: Callable[..., PollResponse], engine: str,
) -> None:
    """One input record for each decision transform makes about polls and emails. The poll topic has one
    partition, so quixstreams re-keys by session in place instead of repartitioning (the step then gets the
    routed envelope itself, not its bytes); the lean engine goes through its repartition topic all the same."""

    def at(poll: str, position: int, **kw: Any) -> PollResponse:
        return poll_record(poll, **kw).model_copy(update={"poll_position": position})

    items: list[tuple[TopicSpec, BaseModel | bytes]] = [
        (ATTENDEE_STATUS, status_record("registered", user="u9", email="not-an-address")),  # unusable_email
        (POLL_RESPONSES, at("p1", 1, answer="a" * 1600)),                                     # truncated
        (POLL_RESPONSES, at("p11", 11)),                                                      # too_many_polls
        (POLL_RESPONSES, at("p2", 3)),
        (POLL_RESPONSES, at("p2", 2)),                                                        # poll_moved
    ]
    await ensure_topics(kafka_broker.bootstrap, [POLL_RESPONSES], topic_prefix, partitions=1)
    await produce(kafka_broker, topic_prefix, items)
    kinds = {"unusable_email", "truncated", "too_many_polls", "poll_moved"}
    with transform_process(kafka_broker, topic_prefix, tmp_path, "kinds", KMSYNC_TRANSFORM_ENGINE=engine) as running:
        async def all_kinds() -> list[TransformDecision] | None:
            found = await committed_decisions(kafka_broker, topic_prefix)
            return found if {d.decision for d in found} >= kinds else None

        found: list[TransformDecision] = await wait_for(all_kinds, within=DEADLINE,
                                                        what=f"every decision kind (logs in {running.log})")
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{running.port}/metrics")).text
    by_kind = {d.decision: d for d in found}
    assert sorted(d.decision for d in found) == sorted(kinds)  # each once
    assert by_kind["truncated"].detail == {"field": "poll_1_answer", "original_length": 1600, "kept_length": 1500}
    assert by_kind["too_many_polls"].detail == {"poll_id": "p11", "position": 11}
    assert by_kind["poll_moved"].detail == {"poll_id": "p2", "from_position": 3, "to_position": 2}
    assert by_kind["unusable_email"].user_id == "u9" and by_kind["unusable_email"].email is None
    assert all(d.session_id == "0_keynote" and d.op_id for d in found if d.decision in ("truncated", "poll_moved"))
    for kind in kinds:
        assert sample_sum(metrics, "kmsync_transform_decisions_total", {"decision": kind, "tenant": "acme-summit"}) == 1
