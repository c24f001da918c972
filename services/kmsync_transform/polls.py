"""Poll answers → custom object kalturaUserPolls_c (seed: up to 10 polls per session, 30 fields).

A session's polls get slots poll_1..poll_10 in the order kmsync first sees them, per session (not
per person), so poll_3 is the same question for every attendee of that session and keeps its slot
across updates. A session's 11th distinct poll has no slot: the caller dead-letters it.
Answers are cut at 1,500 characters and questions at 3,600 (the seed's field descriptions); each cut
is reported (PollOutcome.cuts) and becomes a `truncated` decision.
Each upsert carries every slot the person has answered, so the record is whole after any update.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from kmsync_contracts.base import Scalar
from kmsync_contracts.kaltura_records import PollResponse
from kmsync_contracts.seed import (
    MAX_POLLS_PER_SESSION,
    POLL_ANSWER_MAX_CHARS,
    POLL_QUESTION_MAX_CHARS,
    poll_field_names,
)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


def session_key(munchkin_id: str, virtual_event_id: int, entry_id: str) -> str:
    return f"{munchkin_id}|{virtual_event_id}|{entry_id}"


def assign_slot(slots: dict[str, int], poll_id: str, limit: int = MAX_POLLS_PER_SESSION) -> int | None:
    """The poll's slot, adding it to `slots` if new; None when the session's slots are all taken."""
    if poll_id in slots:
        return slots[poll_id]
    if len(slots) >= limit:
        return None
    slot = max(slots.values(), default=0) + 1
    slots[poll_id] = slot
    return slot


@dataclass(frozen=True)
class PollAnswer:
    slot: int
    poll_type: str
    question: str
    answer: str

    def as_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "type": self.poll_type, "question": self.question, "answer": self.answer}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PollAnswer:
        return cls(int(d["slot"]), str(d["type"]), str(d["question"]), str(d["answer"]))


@dataclass(frozen=True)
class PollOutcome:
    """slot is None when the session is full; changed is False for a repeat of a known answer.
    cuts: (seed field, original length, kept length) of each value cut to its field, when changed."""

    slot: int | None
    changed: bool
    record: dict[str, Scalar] | None
    cuts: tuple[tuple[str, int, int], ...] = ()


def cuts_of(response: PollResponse, slot: int) -> tuple[tuple[str, int, int], ...]:
    """The question and answer cut to the seed's lengths, as (field, original length, kept length)."""
    _, answer_field, question_field = poll_field_names(slot)
    return tuple((name, len(text), limit) for name, text, limit in (
        (question_field, response.question, POLL_QUESTION_MAX_CHARS),
        (answer_field, response.answer, POLL_ANSWER_MAX_CHARS)) if len(text) > limit)


class PollSlots:
    """Slots per session and answers per (session, person), each in a mutable mapping (a table of the app)."""

    def __init__(self, slots_table: MutableMapping[str, Any], answers_table: MutableMapping[str, Any]) -> None:
        self.slots_table = slots_table
        self.answers_table = answers_table

    def apply(self, session: str, email: str, response: PollResponse) -> PollOutcome:
        slots: dict[str, int] = dict(self.slots_table.get(session) or {})
        known = response.poll_id in slots
        slot = assign_slot(slots, response.poll_id)
        if slot is None:
            return PollOutcome(None, False, None)
        if not known:
            self.slots_table[session] = slots
        person = f"{session}|{email}"
        answers: dict[str, Any] = dict(self.answers_table.get(person) or {})
        answer = PollAnswer(
            slot,
            response.poll_type,
            truncate(response.question, POLL_QUESTION_MAX_CHARS),
            truncate(response.answer, POLL_ANSWER_MAX_CHARS),
        )
        if answers.get(response.poll_id) == answer.as_dict():
            return PollOutcome(slot, False, None)
        answers[response.poll_id] = answer.as_dict()
        self.answers_table[person] = answers
        return PollOutcome(slot, True, polls_record(response, email, answers.values()), cuts_of(response, slot))


def polls_record(response: PollResponse, email: str, answers: Any) -> dict[str, Scalar]:
    """entry_id, email, user, then poll_N_type/answer/question for every answered slot, by slot."""
    record: dict[str, Scalar] = {"entry_id": response.entry_id, "email": email, "user": response.user_id}
    for a in sorted((PollAnswer.from_dict(d) for d in answers), key=lambda a: a.slot):
        type_field, answer_field, question_field = poll_field_names(a.slot)
        record[type_field] = a.poll_type
        record[answer_field] = a.answer
        record[question_field] = a.question
    return record
