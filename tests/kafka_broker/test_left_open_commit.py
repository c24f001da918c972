"""kmsync_kafka.left_open.end_left_open with ``commit``: any abort of its transaction would end what a broker crash
left open aborted too (ingest's pages on kaltura.*), so a commit that fails retriably is tried again on the same
producer instead of being given up (a slow broker just after its restart). Pure logic: a stand-in producer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from aiokafka import TopicPartition

from kmsync_kafka.left_open import end_left_open
from kmsync_kafka.producer import ProduceError, Record

HELD = [TopicPartition("kaltura.attendee-status.v1", 2)]


class _Producer:
    """What end_left_open uses of kmsync_kafka.producer.KafkaProducer; commits fail with ``failures`` first."""

    def __init__(self, failures: Sequence[ProduceError]) -> None:
        self.failures = list(failures)
        self.calls: list[str] = []
        self.sent: list[Record] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    async def send_many(self, records: Sequence[Record]) -> asyncio.Future[None]:
        self.sent += records
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def commit_transaction(self, within_seconds: float = 15.0) -> None:
        self.calls.append("commit")
        if self.failures:
            raise self.failures.pop(0)

    async def abort_transaction(self, within_seconds: float = 15.0) -> None:
        self.calls.append("abort")


def _timed_out() -> ProduceError:
    return ProduceError("Kafka transaction: _TIMED_OUT", code="_TIMED_OUT", retriable=True)


async def test_a_commit_that_times_out_is_tried_again_and_never_aborted() -> None:
    producer = _Producer([_timed_out(), _timed_out()])
    await end_left_open(producer, HELD, b"marker", 1.0, commit=True)  # type: ignore[arg-type]
    assert producer.calls == ["begin", "commit", "commit", "commit"]
    assert [(r.topic, r.partition, r.key, r.value) for r in producer.sent] == [
        ("kaltura.attendee-status.v1", 2, b"marker", None)]


async def test_a_commit_that_cannot_succeed_is_raised_with_an_error_naming_the_partitions(
        caplog: pytest.LogCaptureFixture) -> None:
    refused = ProduceError("Kafka transaction: INVALID_TXN_STATE", code="INVALID_TXN_STATE", retriable=False)
    producer = _Producer([refused])
    with caplog.at_level(logging.ERROR, "kmsync_kafka.left_open"), pytest.raises(ProduceError):
        await end_left_open(producer, HELD, b"marker", 1.0, commit=True)  # type: ignore[arg-type]
    assert producer.calls == ["begin", "commit"]
    assert "kaltura.attendee-status.v1[2]" in caplog.text and "reconcile --fix" in caplog.text


async def test_retriable_failures_are_tried_a_bounded_number_of_times() -> None:
    producer = _Producer([_timed_out() for _ in range(10)])
    with pytest.raises(ProduceError):
        await end_left_open(producer, HELD, b"marker", 1.0, commit=True, commit_tries=3)  # type: ignore[arg-type]
    assert producer.calls == ["begin", "commit", "commit", "commit"]


async def test_without_commit_the_transaction_is_aborted() -> None:
    producer = _Producer([])
    await end_left_open(producer, HELD, b"marker", 1.0)  # type: ignore[arg-type]
    assert producer.calls == ["begin", "abort"]
