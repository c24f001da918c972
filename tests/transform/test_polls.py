"""Poll slots: stable per session, at most 10, truncated text, whole records after each update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kmsync_contracts import PollResponse
from kmsync_contracts.seed import POLLS_OBJECT_FIELDS
from kmsync_transform.polls import PollSlots, assign_slot, truncate

SESSION = "M|200|0_keynote"


def test_assign_slot_is_stable_and_bounded() -> None:
    slots: dict[str, int] = {}
    assert [assign_slot(slots, f"p{i}") for i in range(1, 11)] == list(range(1, 11))
    assert assign_slot(slots, "p3") == 3
    assert assign_slot(slots, "p11") is None
    assert "p11" not in slots


def test_truncate() -> None:
    assert truncate("abc", 2) == "ab"
    assert truncate("abc", 3) == "abc"


def test_slots_are_per_session_not_per_person(poll_record: Callable[..., PollResponse]) -> None:
    polls = PollSlots({}, {})
    polls.apply(SESSION, "ann@x.io", poll_record("pA"))
    polls.apply(SESSION, "ann@x.io", poll_record("pB"))
    # bob answers the second poll first: it keeps slot 2 for him too
    out = polls.apply(SESSION, "bob@x.io", poll_record("pB", answer="no", user="u2"))
    assert out.slot == 2
    assert out.record is not None and "poll_2_answer" in out.record and "poll_1_answer" not in out.record
    # another session starts at slot 1
    assert polls.apply("M|200|0_other", "ann@x.io", poll_record("pB", entry="0_other")).slot == 1


def test_updates_keep_the_slot_and_the_whole_record(poll_record: Callable[..., PollResponse]) -> None:
    polls = PollSlots({}, {})
    polls.apply(SESSION, "ann@x.io", poll_record("pA", answer="yes", question="Coffee?"))
    polls.apply(SESSION, "ann@x.io", poll_record("pB", answer="5", question="Rate us", poll_type="rating scale"))
    out = polls.apply(SESSION, "ann@x.io", poll_record("pA", answer="no", question="Coffee?"))
    assert out.slot == 1 and out.changed
    assert out.record == {
        "entry_id": "0_keynote", "email": "ann@x.io", "user": "u1",
        "poll_1_type": "crowd vote", "poll_1_answer": "no", "poll_1_question": "Coffee?",
        "poll_2_type": "rating scale", "poll_2_answer": "5", "poll_2_question": "Rate us",
    }
    assert set(out.record) <= {f.name for f in POLLS_OBJECT_FIELDS}
    repeat = polls.apply(SESSION, "ann@x.io", poll_record("pA", answer="no", question="Coffee?"))
    assert not repeat.changed and repeat.record is None


def test_long_answers_and_questions_are_cut(poll_record: Callable[..., PollResponse]) -> None:
    out = PollSlots({}, {}).apply(SESSION, "ann@x.io", poll_record("pA", answer="a" * 2000, question="q" * 5000))
    assert out.record is not None
    assert len(str(out.record["poll_1_answer"])) == 1500
    assert len(str(out.record["poll_1_question"])) == 3600


def test_eleventh_poll_has_no_slot_and_changes_nothing(poll_record: Callable[..., PollResponse]) -> None:
    slots: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    polls = PollSlots(slots, answers)
    for i in range(1, 11):
        assert polls.apply(SESSION, "ann@x.io", poll_record(f"p{i}")).slot == i
    before = (dict(slots), dict(answers))
    out = polls.apply(SESSION, "ann@x.io", poll_record("p11"))
    assert out.slot is None and out.record is None
    assert (slots, answers) == before
