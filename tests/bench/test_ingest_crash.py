"""The pure parts of kmsync_bench.ingest_crash: what counts as a registrant on attendee-status, what is lost, which
partitions ingest's takeover warning named (its wording before and since 65ff347), and the summary per version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kmsync_bench.ingest_crash import (
    expected_registrants,
    loss,
    parse_code,
    summary,
    table,
    takeover_warnings,
    user_ids,
)

OLD_LOG = ("2026-12-07 01:30:00 WARNING kmsync_ingest.publisher kmsync-ingest/crash3./p3: an open transaction holds "
           "crash3.kaltura.attendee-status.v1[0], crash3.kaltura.attendee-status.v1[4]; ending any of this id's with "
           "an aborted transaction\n2026-12-07 01:30:01 ERROR kmsync_ingest x: could not commit\n")
NEW_LOG = ("2026-12-07 01:31:00 WARNING kmsync_ingest.publisher kmsync-ingest/crash4./p3: an open transaction holds "
           "crash4.ingest.watermarks.v1[2]; ending any of this id's: committed on none, aborted on "
           "crash4.ingest.watermarks.v1[2]\n")


def test_registrants_are_the_user_ids_of_the_event_keys_and_markers_are_not() -> None:
    keys = [b"12:34:alice", b"12:34:bob:x", b"12:34:alice", b"kmsync:left-open-marker",
            b"kmsync-ingest:abort-left-open", None, b"12:35:carol"]
    assert user_ids(keys, 12, 34) == {"alice", "bob:x"}


def test_soft_deleted_attendees_are_not_expected() -> None:
    truth = {"attendees": [{"user_id": "a", "deleted": False}, {"user_id": "b", "deleted": True}, {"user_id": "c"}]}
    assert expected_registrants(truth) == {"a", "c"}


def test_loss_tells_aborted_from_never_written() -> None:
    got = loss({"a", "b", "c", "d"}, committed={"a", "x"}, written={"a", "b", "x"})
    assert (got["expected"], got["committed"], got["missing"]) == (4, 1, 3)
    assert (got["missing_written_uncommitted"], got["missing_never_written"]) == (1, 2)
    assert got["missing_ids"] == ["b", "c", "d"]


def test_the_takeover_warning_of_either_version_names_its_id_and_partitions() -> None:
    assert takeover_warnings(OLD_LOG + NEW_LOG) == [
        {"id": "kmsync-ingest/crash3./p3",
         "held": "crash3.kaltura.attendee-status.v1[0], crash3.kaltura.attendee-status.v1[4]"},
        {"id": "kmsync-ingest/crash4./p3", "held": "crash4.ingest.watermarks.v1[2]"},
    ]


def test_a_code_version_is_a_checkout_holding_ingest(tmp_path: Path) -> None:
    (tmp_path / "services" / "kmsync_ingest").mkdir(parents=True)
    code = parse_code(f"old={tmp_path}")
    assert code.env()["PYTHONPATH"].split(":") == [str(tmp_path / d) for d in ("libs", "services", "apps",
                                                                               "tests/support")]
    assert parse_code("here").env() == {}
    with pytest.raises(ValueError, match="holds no services/kmsync_ingest"):
        parse_code(f"x={tmp_path / 'services'}")


def _round(code: str, missing: int, held: bool, state: str | None = None) -> dict[str, Any]:
    return {"code": code, "loss": {"missing": missing, "expected": 10},
            "held": [{"topic": "crash1.kaltura.attendee-status.v1", "partition": 0}] if held else [],
            "producers": [{"coordinatorState": state}] if state else [], "held_at_end": [],
            "takeover_warnings": [{"id": "i", "held": "h"}] if held else [], "errors": []}


def test_the_summary_counts_per_version_and_keeps_failed_rounds_apart() -> None:
    rounds: list[dict[str, Any]] = [_round("old", 6, True, "CompleteCommit"), _round("new", 0, True, "CompleteCommit"),
              _round("old", 0, False), {"code": "new", "error": "broker did not start"}]
    got = summary(rounds)
    assert got["old"]["rounds"] == 2 and got["old"]["rounds_losing"] == 1 and got["old"]["registrants_lost"] == 6
    assert got["old"]["coordinator_states"] == {"CompleteCommit": 1}
    assert got["old"]["held_partitions_by_topic"] == {"kaltura.attendee-status.v1": 1}
    assert got["new"]["rounds"] == 1 and got["new"]["failed_rounds"] == 1 and got["new"]["rounds_losing"] == 0
    assert "| old | 2 | 1 | 6 / 20 | 1 | 1 | 0 | CompleteCommit 1 |" in table(got)
