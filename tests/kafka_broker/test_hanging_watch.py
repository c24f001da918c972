"""kmsync_kafka.hanging.HangingWatch: which partitions a hanging transaction holds, from offset observations
(pure logic, no broker)."""

from __future__ import annotations

from aiokafka import TopicPartition

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
