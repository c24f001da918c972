"""Reconciliation of the poll slots: each answered poll in the slot of its position in Kaltura's order."""

from __future__ import annotations

from typing import Any

from kmsync_cli.reconcile_polls import poll_slots
from kmsync_contracts.seed import POLL_ANSWER_MAX_CHARS

EXPECTED = {"ann@x.io": {"email": "Ann@x.io"}}


def row(poll: str, index: int, answer: str, email: str = "Ann@x.io", defect: str | None = None) -> dict[str, Any]:
    return {"entry_id": "1_s", "poll_id": poll, "poll_index": index, "question": f"Q {poll}?",
            "question_as_exported": f"Q {poll}?", "answer": answer, "answer_as_exported": answer,
            "email": email, "defect": defect}


# p2 (index 2) was answered only by someone else's unreadable row: the report shows p1 and p3, so p3 is poll_2
TRUTH = {"poll_answers": [row("p3", 3, "no"), row("p1", 1, "yes"), row("p2", 2, "x", "bob@x.io", "missing_fields")]}


def record(**slots: str | None) -> dict[str, Any]:
    return {"entry_id": "1_s", "email": "ann@x.io", **slots}


def test_answers_in_kalturas_order_reconcile() -> None:
    dump = {"customObjects": {"kalturaUserPolls_c": [record(
        poll_1_question="Q p1?", poll_1_answer="yes", poll_2_question="Q p3?", poll_2_answer="no")]}}
    check = poll_slots(EXPECTED, TRUTH, dump)
    assert check is not None and (check.expected, check.present, check.missing, check.wrong) == (2, 2, [], [])


def test_answers_numbered_by_arrival_are_wrong() -> None:
    dump = {"customObjects": {"kalturaUserPolls_c": [record(
        poll_1_question="Q p3?", poll_1_answer="no", poll_2_question="Q p1?", poll_2_answer="yes")]}}
    check = poll_slots(EXPECTED, TRUTH, dump)
    assert check is not None and len(check.wrong) == 2 and "poll_1 holds 'Q p3?'" in check.wrong[0]


def test_an_empty_slot_is_missing_unless_the_instance_lacks_the_field() -> None:
    dump: dict[str, Any] = {"customObjects": {"kalturaUserPolls_c": [record(
        poll_1_question="Q p1?", poll_1_answer="yes", poll_2_question=None, poll_2_answer=None)]}}
    check = poll_slots(EXPECTED, TRUTH, dump)
    assert check is not None and check.missing == ["1_s ann@x.io: poll_2 empty"]
    dump["customObjectTypes"] = [{"name": "kalturaUserPolls_c",
                                  "fields": [{"name": n} for n in ("entry_id", "email", "poll_1_question")]}]
    check = poll_slots(EXPECTED, TRUTH, dump)
    assert check is not None and (check.expected, check.missing, check.wrong) == (1, [], [])


def test_records_read_back_without_slots_and_truth_without_an_order_are_not_judged() -> None:
    rest = {"customObjects": {"kalturaUserPolls_c": [record()]}}
    check = poll_slots(EXPECTED, TRUTH, rest)
    assert check is not None and (check.expected, check.wrong, check.missing) == (0, [], [])
    pulled_now = {"poll_answers": [{"entry_id": "1_s", "email": "ann@x.io"}]}
    assert poll_slots(EXPECTED, pulled_now, rest) is None


def test_an_answer_cut_where_a_space_falls_reconciles() -> None:
    # Seed 29's chaos run: a long answer ("yes. no. ...") whose 1,500th character is a space; Marketo
    # holds the cut text, which the comparison strips like every held value.
    long = ("word. " * 400)[:POLL_ANSWER_MAX_CHARS - 1] + " tail"
    assert long[POLL_ANSWER_MAX_CHARS - 1] == " "
    truth = {"poll_answers": [row("p1", 1, long)]}
    held = long[:POLL_ANSWER_MAX_CHARS]  # transform's cut, ending in the space
    dump = {"customObjects": {"kalturaUserPolls_c": [record(poll_1_question="Q p1?", poll_1_answer=held)]}}
    check = poll_slots(EXPECTED, truth, dump)
    assert check is not None and (check.expected, check.present, check.wrong) == (1, 1, [])
