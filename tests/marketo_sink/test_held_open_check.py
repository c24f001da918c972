"""The sink says when a hanging transaction stalls one of its input partitions for good (hanging_check.py).

A transform that exits after a broker crash can leave a transaction open on marketo.ops.v1 that its
coordinator no longer knows (docs/reference/streaming.md §3.1; OBSERVED by kmsync_bench.hanging_txn): the
sink's read_committed consumer stops at it for good. Without the check nothing said so: no error, no metric
(the consumer's lag is measured up to the last stable offset, so it is 0)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from kmsync_config.tenants import TenantsConfig, parse_tenants
from kmsync_contracts.topics import MARKETO_OPS, MARKETO_OPS_BACKFILL
from kmsync_kafka import ensure_topics, topic_name
from kmsync_sink.service import MarketoSink
from kmsync_sink.settings import SinkSettings
from kmsync_testing.hanging import Put, leave_hanging_transaction
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for

PREFIX = "held."
#: The hanging transaction's partition, and one whose transaction committed.
HANGING, COMMITTED = 1, 0



def _tenants() -> TenantsConfig:
    # Nothing is routed to it: the only operation on the ops topic is behind the hanging transaction.
    return parse_tenants({"marketo_instances": {"alpha": {
        "munchkin_id": "111-AAA-111", "endpoint": "http://127.0.0.1:9", "client_id": "sink-tests",
        "client_secret": {"env": "KMSYNC_TEST_UNUSED"}}}, "events": []}, check_secrets=False)


def _gauge(sink: MarketoSink, name: str, partition: int) -> float | None:
    labels = {"topic": topic_name(MARKETO_OPS, PREFIX), "partition": str(partition)}
    return sink.metrics.registry.get_sample_value(name, labels)


@pytest.mark.kafka
async def test_the_sink_reports_a_hanging_transaction_on_marketo_ops_by_log_and_metric(
    unverified_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = unverified_broker.bootstrap
    await ensure_topics(bootstrap, [MARKETO_OPS, MARKETO_OPS_BACKFILL], PREFIX)
    ops = topic_name(MARKETO_OPS, PREFIX)
    await leave_hanging_transaction(bootstrap, "transform-that-exited", [Put(ops, COMMITTED, b"111-AAA-111", b"{}")],
                                    [Put(ops, HANGING, b"111-AAA-111", b"{}")])
    settings = SinkSettings(kafka_bootstrap=bootstrap, topic_prefix=PREFIX, sink_hanging_check_seconds=0.2,
                            sink_hanging_after_seconds=2.0)
    sink = MarketoSink(settings, _tenants())
    caplog.set_level(logging.ERROR, logger="kmsync_kafka.hanging")
    task = asyncio.create_task(sink.run(asyncio.Event()))
    try:
        await wait_for(lambda: _gauge(sink, "kmsync_sink_hanging_transaction", HANGING) == 1.0, within=60,
                       what="the hanging-transaction gauge of the held partition")
        held = _gauge(sink, "kmsync_sink_transaction_held_seconds", HANGING)
        assert held is not None and held >= 2.0
        # The partition whose transaction committed is not held: no series at all.
        assert _gauge(sink, "kmsync_sink_hanging_transaction", COMMITTED) is None
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == "kmsync_kafka.hanging"]
        assert len(errors) == 1, errors
        assert f"{ops}[{HANGING}] last stable offset 0 unmoved behind log end 1" in errors[0]
        assert "README.md" in errors[0]  # the runbook
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
