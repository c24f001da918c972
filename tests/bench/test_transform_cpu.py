"""kmsync_bench.transform_cpu's per-record path (no broker): the inputs are what ingest writes and
every one of them becomes its operations, through the same steps the quix engine runs."""

from __future__ import annotations

import pstats
from pathlib import Path

import pytest

from kmsync_bench.transform_cpu import inputs, main, measure, operations
from kmsync_contracts.topics import ATTENDEE_STATUS, POLL_RESPONSES, SESSION_ENGAGEMENT


def test_each_person_is_a_status_pair_a_snapshot_and_a_poll_answer() -> None:
    mixed = inputs(3)
    assert [spec for spec, _, _ in mixed[:4]] == [ATTENDEE_STATUS, ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES]
    assert len(mixed) == 12 and len({key for _, key, _ in mixed}) == 3  # keyed partner:event:user
    assert {spec for spec, _, _ in inputs(3, engagement_only=True)} == {SESSION_ENGAGEMENT}


def test_a_pass_emits_every_operation_and_measures_cpu(tmp_path: Path) -> None:
    """measure() raises unless the pass emitted exactly the operations the inputs make."""
    for engagement_only in (False, True):
        values = measure(20, 2, 7, None, engagement_only)
        assert len(values) == 2 and all(v > 0 for v in values)
    assert operations(20, False) == 180 and operations(20, True) == 40


def test_the_profile_holds_the_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "transform.pstats"
    assert main(["--people", "5", "--repeat", "1", "--profile", str(out)]) == 0
    assert "CPU s per 10,000 input rows" in capsys.readouterr().out
    profiled = {(Path(file).name, name) for file, _, name in pstats.Stats(str(out)).stats}  # type: ignore[attr-defined]
    assert {("keyed.py", "record"), ("keyed.py", "poll"), ("transformer.py", "apply")} <= profiled
