"""`kmsync run`'s dead letters explained against what the scenario planted (issue #20 item 7)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kmsync_cli.dead_letters import Census, Planted, explain, matches
from kmsync_contracts.outcomes import DeadLetter
from kmsync_contracts.reasons import ReasonCode

TRUTH: dict[str, Any] = {
    "attendees": [{"user_id": "u_ok", "email_defect": None}, {"user_id": "u_bad", "email_defect": "bad_email"}],
    "engagement": [{"defect": None}, {"defect": "non_numeric"}, {"defect": "missing_email"}],
    "poll_answers": [{"defect": "missing_fields"}],
}


def letter(stage: str, code: str, payload: dict[str, Any]) -> DeadLetter:
    return DeadLetter.model_validate({"stage": stage, "reason_code": code, "reason": "r", "payload": payload,
                                      "failed_at": datetime(2026, 1, 1, tzinfo=UTC)})


def planted_census() -> Census:
    found = Census()
    for line in ("report 60013 1_a line 3", "report 4021 1_a line 3", "report 60013 1_a line 9"):
        found.add(letter("ingest", ReasonCode.BAD_ROW, {"source_ref": line, "row": "x"}))
    for _ in range(2):  # two status records of the same person
        found.add(letter("transform", ReasonCode.UNUSABLE_EMAIL, {"user_id": "u_bad"}))
    return found


def test_planted_dead_letters_are_explained_and_match() -> None:
    planted = Planted.from_truth(TRUTH)
    assert planted.damaged_rows == 3 and planted.unusable_email_users == {"u_bad"}
    found = planted_census()
    assert matches(planted, found)
    text = "\n".join(explain(planted, found))
    assert text.startswith("dead letters: 5. The scenario damages input on purpose")
    assert f"ingest {ReasonCode.BAD_ROW} 3: Kaltura report lines that cannot be read (3 distinct)" in text
    assert "Planted: 3 damaged rows (engagement: 1 missing email, 1 non numeric; poll answers: 1 missing fields)" \
        in text
    assert f"transform {ReasonCode.UNUSABLE_EMAIL} 2: status records of 1 Kaltura users" in text
    assert "Planted: 1 registrants with a missing or malformed email" in text
    assert "anything else (not planted, to investigate): 0" in text
    assert text.endswith("dead letters match what the scenario planted")


def test_a_dead_letter_nobody_planted_does_not_match() -> None:
    planted = Planted.from_truth(TRUTH)
    found = planted_census()
    found.add(letter("sink", "1006", {"op": 1}))
    assert not matches(planted, found)
    assert "anything else (not planted, to investigate): sink 1006 1" in "\n".join(explain(planted, found))
    stranger = planted_census()
    stranger.add(letter("transform", ReasonCode.UNUSABLE_EMAIL, {"user_id": "u_ok"}))  # a good email refused
    assert not matches(planted, stranger)
    assert explain(planted, stranger)[-1] == "DEAD LETTERS DO NOT MATCH what the scenario planted"
    nothing_planted = Planted({}, {}, frozenset())
    assert not matches(nothing_planted, planted_census())  # bad rows refused although none was damaged
    again = planted_census()
    again.add(letter("ingest", ReasonCode.BAD_ROW, {"source_ref": "report 60013 1_a line 3", "row": "x"}))
    assert matches(planted, again)  # a report pulled again refuses its bad lines again
    assert "bad_row 4: Kaltura report lines that cannot be read (3 distinct)" in "\n".join(explain(planted, again))
