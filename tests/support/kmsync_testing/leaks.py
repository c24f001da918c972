"""Kafka clients left open. aiokafka says so only when the garbage collector finalises one: an ERROR of the asyncio
logger, "Unclosed AIOKafkaConsumer" (or Producer). Its clients sit in reference cycles, so that happens at the next
full collection, at a time nobody chooses and in whatever test runs then (the fuzz test of tests/ingest forbids any
ERROR line). ``no_unclosed_kafka_clients`` makes that time now, for what a block of a test created."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Unclosed(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Unclosed AIOKafka"):
            self.lines.append(message)


@contextmanager
def no_unclosed_kafka_clients() -> Iterator[None]:
    """Fails when a full collection at the end of the block finalises an aiokafka client nobody closed. One before
    the block finalises what earlier code left, so that is not blamed on the block. Objects the block still
    references are not collected: drop them inside it."""
    gc.collect()
    unclosed = _Unclosed()
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(unclosed)
    try:
        yield
        gc.collect()
    finally:
        asyncio_log.removeHandler(unclosed)
    assert not unclosed.lines, "aiokafka clients never closed:\n" + "\n".join(unclosed.lines)
