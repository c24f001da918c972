"""kmsync_bench.ledger_catch_up: one catch-up of the sink's activity ledger over outcomes written to a real
broker is timed, and learns exactly the written activities among them."""

from __future__ import annotations

import pytest

from kmsync_bench.ledger_catch_up import main, measure
from kmsync_testing.kafka_broker import KafkaBroker


def test_a_catch_up_is_timed_and_learns_every_written_activity(kafka_broker: KafkaBroker, topic_prefix: str) -> None:
    result = measure(kafka_broker.bootstrap, f"{topic_prefix}bench.results", 2_000, 3, 0.25)
    assert result.outcomes == 2_000 and result.activities == 500
    assert result.wall_seconds > 0 and result.cpu_seconds > 0
    assert "2,000 outcomes (500 written activities)" in result.text()


def test_the_command_refuses_a_share_outside_0_to_1() -> None:
    with pytest.raises(SystemExit):
        main(["--activity-share", "1.5"])
