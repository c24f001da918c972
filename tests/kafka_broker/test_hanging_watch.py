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
from kmsync_testing.leaks import no_unclosed_kafka_clients
from kmsync_testing.processes import free_port

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
    """What HangingCheck's offset reader sees: ``state`` while up, a failed read while down or of a partition
    without a leader."""

    def __init__(self, state: dict[TopicPartition, Offsets]) -> None:
        self.up, self.state = True, state
        self.leaderless: set[TopicPartition] = set()

    def reader(self, bootstrap: str) -> _Broker:
        return self

    async def start(self) -> None:
        if not self.up:
            raise KafkaConnectionError("broker down")

    async def stop(self) -> None:
        pass

    async def topics(self) -> set[str]:
        return {tp.topic for tp in self.state}

    async def partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        return [tp for tp in self.state if tp.topic in topics]

    async def read(self, topics: Sequence[str]) -> dict[TopicPartition, Offsets]:
        return await self.offsets(await self.partitions(topics))

    async def offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, Offsets]:
        if not self.up or any(tp in self.leaderless for tp in tps):
            raise KafkaConnectionError("broker down")
        return {tp: self.state[tp] for tp in tps}


async def test_the_check_reports_no_hang_for_a_hold_that_an_outage_made_look_long(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broker, now = _Broker({OPS: Offsets(10, 15)}), [0.0]
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


async def test_a_partition_that_cannot_be_read_is_left_out_not_a_failed_read() -> None:
    # One partition without a leader must not fail every transform start (its end of what it left open).
    broker = _Broker({OPS: Offsets(10, 15), OTHER: Offsets(3, 4), TopicPartition(OPS.topic, 5): Offsets(7, 7)})
    broker.leaderless = {OTHER}
    with pytest.raises(KafkaConnectionError):  # the read of all at once fails
        await broker.read([OPS.topic])
    offsets, unreadable = await hanging.read_readable(broker, [OPS.topic], within=1.0)
    assert offsets == {OPS: Offsets(10, 15), TopicPartition(OPS.topic, 5): Offsets(7, 7)} and unreadable == [OTHER]


async def test_the_check_judges_the_partitions_it_can_read_when_one_has_no_leader(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, now = _Broker({OPS: Offsets(10, 15), OTHER: Offsets(3, 4)}), [0.0]
    broker.leaderless = {OTHER}
    monkeypatch.setattr(hanging, "OffsetReader", broker.reader)
    check = hanging.HangingCheck("unused:9092", [OPS.topic], after_seconds=AFTER, interval=10.0,
                                 clock=lambda: now[0])
    await check.check()
    now[0] = AFTER
    verdicts = await check.check()
    assert verdicts is not None and [h.tp for h in verdicts.new] == [OPS]


async def test_a_check_that_cannot_reach_kafka_leaves_no_consumer_open() -> None:
    # Its reader's start fails (the broker is down): both of its consumers are stopped, not left to the collector.
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    with no_unclosed_kafka_clients():
        check = hanging.HangingCheck(down, [OPS.topic], after_seconds=AFTER, interval=10.0)
        assert await check.check() is None
        await check.close()
        reader = hanging.OffsetReader(down)
        with pytest.raises(KafkaConnectionError):
            await reader.start()
        del check, reader
