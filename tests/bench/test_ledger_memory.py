"""kmsync_bench.ledger_memory: the memory the sink's activity ledger holds per remembered activity is measured
(pure: no broker)."""

from __future__ import annotations

import sys

import pytest

from kmsync_bench.ledger_memory import main, measure, op_ids


def test_the_ledger_memory_is_measured_per_activity_and_grows_with_the_activities() -> None:
    small, large = measure(500), measure(4_000)
    assert small.activities == 500 and large.activities == 4_000
    assert small.bytes_per_activity > 0 and large.bytes_per_activity > 0
    assert large.held_bytes > 4 * small.held_bytes  # eight times the activities: the memory grows with them
    # Every remembered op id is a string of its own, held by the ledger: at least that much per activity.
    one = next(op_ids(1))
    assert one.startswith("custom_activity:") and len(one) == len("custom_activity:") + 32
    assert large.bytes_per_activity >= sys.getsizeof(one)


def test_the_op_ids_are_distinct_and_the_command_prints_its_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(set(op_ids(1_000))) == 1_000
    assert main(["--activities", "300"]) == 0
    assert "300 activities remembered" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--activities", "0"])
