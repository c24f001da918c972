"""kmsync_kafka.hanging.HangingWatch: which partitions a hanging transaction holds, from offset observations
(pure logic, no broker)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from kmsync_kafka import hanging
from kmsync_kafka.hanging import HangingWatch, Offsets

OPS = TopicPartition("marketo.ops.v1", 3)
OTHER = TopicPartition("marketo.ops.v1", 4)
AFTER = 70.0


def test_an_lso_unmoved_behind_the_log_end_for_longer_than_the_threshold_is_hanging_and_reported_once() -> None:
    watch = HangingWatch(AFTER)
    assert watch.observe(0.0, {OPS: Offsets(10, 15)}).hanging == []
    # New records behind the open transaction move the log end, not the LSO: still the same hold.
    early = watch.observe(AFTER - 1, {OPS: Offsets(10, 40)})
    assert early.hanging == [] and [h.held_for for h in early.held] == [AFTER - 1]
    first = watch.observe(AFTER, {OPS: Offsets(10, 41)})
    assert [(h.tp, h.stable, h.end, h.held_for) for h in first.new] == [(OPS, 10, 41, AFTER)]
    again = watch.observe(AFTER + 30, {OPS: Offsets(10, 41)})
    assert again.new == [] and [h.held_for for h in again.hanging] == [AFTER + 30]


def test_a_moving_lso_is_live_transactions_not_a_hanging_one() -> None:
    # Under load a partition is almost always behind its log end, but its LSO moves at every commit.
    watch = HangingWatch(AFTER)
    for second in range(0, 300, 5):
        verdicts = watch.observe(float(second), {OPS: Offsets(second, second + 3)})
        assert verdicts.hanging == []


def test_an_lso_that_reaches_the_log_end_ends_the_hold_and_says_a_hanging_one_ended() -> None:
    watch = HangingWatch(AFTER)
    watch.observe(0.0, {OPS: Offsets(10, 15), OTHER: Offsets(5, 5)})
    assert [h.tp for h in watch.observe(AFTER, {OPS: Offsets(10, 15), OTHER: Offsets(5, 5)}).new] == [OPS]
    ended = watch.observe(AFTER + 1, {OPS: Offsets(16, 16), OTHER: Offsets(5, 5)})
    assert ended.ended == [OPS] and ended.held == []
    # Held again later: a new hold, counted from its own start, reported again once it hangs.
    watch.observe(200.0, {OPS: Offsets(16, 20)})
    assert watch.observe(200.0 + AFTER - 1, {OPS: Offsets(16, 20)}).new == []
    assert [h.tp for h in watch.observe(200.0 + AFTER, {OPS: Offsets(16, 20)}).new] == [OPS]


def test_a_partition_missing_from_an_observation_keeps_its_hold() -> None:
    # A read that answered for some partitions only (a leader moving) neither starts nor ends a hold.
    watch = HangingWatch(AFTER)
    watch.observe(0.0, {OPS: Offsets(10, 15)})
    assert watch.observe(30.0, {}).held == []
    assert [h.held_for for h in watch.observe(AFTER, {OPS: Offsets(10, 15)}).new] == [AFTER]


def test_a_failed_read_starts_every_unreported_hold_afresh() -> None:
    # The broker down for a while: the held time must not include the outage (a live transaction it outlasted is
    # ended by its timeout once the broker is back), or the first read after it would call a live one hanging.
    watch = HangingWatch(AFTER)
    watch.observe(0.0, {OPS: Offsets(10, 15)})
    assert [h.tp for h in watch.observe(AFTER, {OPS: Offsets(10, 15), OTHER: Offsets(3, 4)}).new] == [OPS]
    watch.unread()
    back = watch.observe(AFTER + 60, {OPS: Offsets(10, 15), OTHER: Offsets(3, 4)})
    # The reported one stays hanging from its own start; the other is held from now on.
    assert back.new == [] and [h.tp for h in back.hanging] == [OPS]
    assert {h.tp: h.held_for for h in back.held} == {OPS: AFTER + 60, OTHER: 0.0}
    assert watch.observe(AFTER + 60 + AFTER - 1, {OPS: Offsets(10, 15), OTHER: Offsets(3, 4)}).new == []


class _Broker:
    """What HangingCheck's offset reader sees: ``offsets`` while up, a failed read while down."""

    def __init__(self) -> None:
        self.up, self.offsets = True, {OPS: Offsets(10, 15)}

    def reader(self, bootstrap: str) -> _Broker:
        return self

    async def start(self) -> None:
        if not self.up:
            raise KafkaConnectionError("broker down")

    async def stop(self) -> None:
        pass

    async def topics(self) -> set[str]:
        return {OPS.topic}

    async def read(self, topics: Sequence[str]) -> dict[TopicPartition, Offsets]:
        if not self.up:
            raise KafkaConnectionError("broker down")
        return dict(self.offsets)


async def test_the_check_reports_no_hang_for_a_hold_that_an_outage_made_look_long(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broker, now = _Broker(), [0.0]
    monkeypatch.setattr(hanging, "OffsetReader", broker.reader)
    check = hanging.HangingCheck("unused:9092", [OPS.topic], after_seconds=AFTER, interval=10.0,
                                 clock=lambda: now[0])
    assert (await check.check()) is not None  # a live transaction holds OPS from 0 s
    broker.up = False
    for now[0] in (30.0, 60.0, 90.0):
        assert await check.check() is None
    broker.up = True
    now[0] = 100.0
    with caplog.at_level(logging.ERROR, logger="kmsync_kafka.hanging"):
        verdicts = await check.check()
    assert verdicts is not None and verdicts.new == [] and verdicts.hanging == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    now[0] = 100.0 + AFTER
    assert [h.tp for h in (await check.check() or hanging.Verdicts()).new] == [OPS]
