"""`kmsync reconcile --fix` against a Kafka that is down fails, and leaves no producer open: an aiokafka client never
stopped is an ERROR "Unclosed AIOKafkaProducer" whenever the garbage collector finalises it (kmsync_testing.leaks)."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError

from kmsync_cli.reconcile_fix import redrive
from kmsync_testing.leaks import no_unclosed_kafka_clients
from kmsync_testing.processes import free_port


async def test_a_redrive_that_cannot_reach_kafka_leaves_no_producer_open() -> None:
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    with no_unclosed_kafka_clients():
        with pytest.raises(KafkaConnectionError):
            await redrive(down, "down.", [])
