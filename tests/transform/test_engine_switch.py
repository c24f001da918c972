"""Switching transform's engine needs no migration: quix → lean and lean → quix, on the same topics, consumer group
and state changelogs.

The first engine transforms each person's registration, attendance, final engagement snapshot and first poll, and is
stopped (SIGTERM). The second starts with a fresh local state dir, so all it knows of the first one's work comes from
Kafka: the group's committed offsets and the changelog topics. It is given inputs whose outcome depends on that
state, one for each of the three stores:

- statuses: `confirmed` after `attended` is below the member's status: not sent, a forward_only_skip decision;
- the activity ledger: the same final engagement snapshot again: no second custom activity (insert-only in Marketo),
  an activity_once decision, the engagement object upserted again under the same op id;
- the polls' slots (the repartition topic's store): the session's second poll takes slot 2, not slot 1 again.

What it proves: the second engine reads only the records produced after the switch (its records-in count), and
what it commits, added to the first engine's, is exactly what one engine makes of all the records in order (every
op id once, as often as the pure pipeline emits it; the same decisions). With the state not carried over, the second
engine would send each person's activity and `Confirmed` status again and the second poll in slot 1, and decide
neither skip: checked by running it with the changelog topics deleted at the switch (the same offsets, no state),
and with another app id (neither offsets nor state): both fail. test_the_inputs_after_the_switch_depend_on_every_store
pins that the inputs depend on each store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel

from kmsync_contracts import AttendeeStatus, CustomActivity, PollResponse, SessionEngagement, decode, encode
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    MARKETO_OPS,
    POLL_RESPONSES,
    SESSION_ENGAGEMENT,
    TRANSFORM_DECISIONS,
    TRANSFORM_DLQ,
    TopicSpec,
)
from kmsync_kafka import ensure_topics, topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.routing import route
from kmsync_transform.transformer import Transformer, TransformState

from .conftest import T0, tenants_config
from .test_integration import expected_ops, stop, transform_process
from .test_quix_engine import DEADLINE, INPUTS, committed_op_ids, group_caught_up, produce_at, records_in, wait_for_ops

Items = list[tuple[TopicSpec, BaseModel]]
#: Enough people that most partitions of each input (and of the polls' repartition topic) hold someone's state.
PEOPLE = [(f"s{i}", f"switch{i}@x.io") for i in range(12)]


def before_switch(status: Callable[..., AttendeeStatus], engagement: Callable[..., SessionEngagement],
                  poll: Callable[..., PollResponse]) -> Items:
    items: Items = []
    for user, email in PEOPLE:
        items += [
            (ATTENDEE_STATUS, status("registered", user=user, email=email)),
            (SESSION_ENGAGEMENT, engagement(user=user, email=email, final=True, plays=1)),
            (POLL_RESPONSES, poll("p1", answer="yes", user=user, email=email)),
            (ATTENDEE_STATUS, status("attended", user=user, email=email, minutes=5)),
        ]
    return items


def after_switch(status: Callable[..., AttendeeStatus], engagement: Callable[..., SessionEngagement],
                 poll: Callable[..., PollResponse]) -> Items:
    items: Items = []
    for user, email in PEOPLE:
        items += [
            (SESSION_ENGAGEMENT, engagement(user=user, email=email, final=True, plays=1)),  # ledger: no activity
            (ATTENDEE_STATUS, status("confirmed", user=user, email=email, minutes=6)),  # statuses: forward-only
            (POLL_RESPONSES, poll("p2", answer="no", user=user, email=email)),  # slots: the session's 2nd poll
        ]
    return items


def expected_decisions(items: Sequence[tuple[TopicSpec, BaseModel]]) -> Counter[tuple[str, str]]:
    """(decision, user id) of every decision the pure pipeline makes of the records, in order, with one state."""
    tenants, state = tenants_config(), TransformState.in_memory()
    found: Counter[tuple[str, str]] = Counter()
    for spec, record in items:
        routed = route(spec, encode(record), SourceRef(), tenants, T0).routed
        if routed is not None:
            found.update((d.decision, d.user_id) for d in Transformer(tenants, state).apply(routed).decisions)
    return found


def ids(items: Items) -> list[str]:
    return [op.op_id for op in expected_ops(list(items))]


def test_the_inputs_after_the_switch_depend_on_every_store(
    status_record: Callable[..., AttendeeStatus], engagement_record: Callable[..., SessionEngagement],
    poll_record: Callable[..., PollResponse],
) -> None:
    """What the second engine must send after the switch, and what it would send with no state: they differ in the
    activity (ledger), the status, its label and its lead upsert (statuses) and the poll object (slots), for every
    person; and only with the state are the skip and the activity_once decided."""
    before = before_switch(status_record, engagement_record, poll_record)
    after = after_switch(status_record, engagement_record, poll_record)
    carried_ops = expected_ops(list(before + after))[len(ids(before)):]
    carried = Counter(op.op_id for op in carried_ops)
    lost = expected_ops(list(after))  # a fresh state
    only_without_state = Counter(op.kind for op in lost if op.op_id not in carried)
    # the activity; the status, its label and its lead upsert; the poll object with the poll in slot 1
    kinds = ("custom_activity", "program_member_status", "program_member_data", "lead_upsert", "custom_object_upsert")
    assert only_without_state == dict.fromkeys(kinds, len(PEOPLE)), only_without_state
    assert not [op for op in carried_ops if isinstance(op, CustomActivity)]
    decided = expected_decisions(before + after) - expected_decisions(before)
    assert decided == Counter({("forward_only_skip", u): 1 for u, _ in PEOPLE}) + \
        Counter({("activity_once", u): 1 for u, _ in PEOPLE})
    assert not expected_decisions(after)["forward_only_skip", PEOPLE[0][0]]


@pytest.mark.parametrize(("first", "second"), [("quix", "lean"), ("lean", "quix")],
                         ids=["quix-then-lean", "lean-then-quix"])
async def test_the_second_engine_carries_on_from_the_first_ones_offsets_and_state(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
    status_record: Callable[..., AttendeeStatus], engagement_record: Callable[..., SessionEngagement],
    poll_record: Callable[..., PollResponse], first: str, second: str,
) -> None:
    bootstrap = kafka_broker.bootstrap
    await ensure_topics(bootstrap, [*INPUTS, MARKETO_OPS, TRANSFORM_DLQ, TRANSFORM_DECISIONS], topic_prefix)
    before = before_switch(status_record, engagement_record, poll_record)
    after = after_switch(status_record, engagement_record, poll_record)
    want_before, want_all = ids(before), ids(before + after)

    async def caught_up() -> bool:
        return await group_caught_up(kafka_broker, topic_prefix)

    await produce_at(kafka_broker, topic_prefix, before)
    with transform_process(kafka_broker, topic_prefix, tmp_path, f"{first}-first", KMSYNC_TRANSFORM_ENGINE=first,
                           KMSYNC_TRANSFORM_STATE_DIR=str(tmp_path / f"{first}-state")) as running:
        await wait_for_ops(kafka_broker, topic_prefix, lambda got: set(want_before) <= set(got),
                           f"the {first} engine's operations", tmp_path)
        await wait_for(caught_up, within=DEADLINE, what=f"the {first} engine past every input (logs in {tmp_path})")
        assert stop(running.proc) == 0, f"the {first} engine did not stop cleanly (log {running.log})"
    await produce_at(kafka_broker, topic_prefix, after)
    # A fresh state dir: the second engine's state can only come from the changelog topics.
    with transform_process(kafka_broker, topic_prefix, tmp_path, f"{second}-second", KMSYNC_TRANSFORM_ENGINE=second,
                           KMSYNC_TRANSFORM_STATE_DIR=str(tmp_path / f"{second}-state")) as running:
        await wait_for(caught_up, within=DEADLINE, what=f"the {second} engine past every input (logs in {tmp_path})")
        read = await records_in(running.port)
    got = await committed_op_ids(kafka_broker, topic_prefix)
    decisions = [decode(TRANSFORM_DECISIONS, m.value)
                 for m in await read_to_end(bootstrap, topic_name(TRANSFORM_DECISIONS, topic_prefix))]
    assert read == len(after), f"the {second} engine read {read} records, not only the {len(after)} after the switch"
    activities = {op.op_id for op in expected_ops(list(before)) if isinstance(op, CustomActivity)}
    assert len(activities) == len(PEOPLE)
    assert all(Counter(got)[a] == 1 for a in activities), "an activity was sent again after the switch"
    assert Counter(got) == Counter(want_all), \
        f"missing {list((Counter(want_all) - Counter(got)).elements())[:4]}, " \
        f"unexpected {list((Counter(got) - Counter(want_all)).elements())[:4]} (logs in {tmp_path})"
    assert Counter((d.decision, d.user_id) for d in decisions) == expected_decisions(before + after)
