"""Poll answers → custom object kalturaUserPolls_c (seed: up to 10 polls per session, 30 fields).

A poll's slot poll_1..poll_10 is its position in the session as ingest stamped it on the record
(`PollResponse.poll_position`, computed from the whole session's pollsActivity pull:
docs/reference/kaltura-api.md §11), so poll_3 is the same question for every attendee of that
session and the slot is a function of the record alone: the same after a state rebuild, in any
partition order. A position past 10 has no slot (a `too_many_polls` decision). A known poll that
arrives with another position moves: its answer goes to the new slot, the old slot is written
empty (null) unless another poll now holds it, and the caller records a `poll_moved` decision.

Records without a position (written before positions existed) keep the old numbering: slots in the
order kmsync first sees the polls, per session; a session's 11th such poll has no slot and the
caller dead-letters it.
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
    """slot is None when the poll has none (a full session, a position past the last slot); changed
    is False for a repeat of a known answer. cuts: (seed field, original length, kept length) of each
    value cut to its field, when changed; moved_from: the slot the poll's answer left, when it moved."""

    slot: int | None
    changed: bool
    record: dict[str, Scalar] | None
    cuts: tuple[tuple[str, int, int], ...] = ()
    moved_from: int | None = None


def cuts_of(response: PollResponse, slot: int) -> tuple[tuple[str, int, int], ...]:
    """The question and answer cut to the seed's lengths, as (field, original length, kept length)."""
    _, answer_field, question_field = poll_field_names(slot)
    return tuple((name, len(text), limit) for name, text, limit in (
        (question_field, response.question, POLL_QUESTION_MAX_CHARS),
        (answer_field, response.answer, POLL_ANSWER_MAX_CHARS)) if len(text) > limit)


class PollSlots:
    """Slots per session and answers per (session, person), each in a mutable mapping (a table of the app)."""

    def __init__(self, slots_table: MutableMapping[str, Any], answers_table: MutableMapping[str, Any],
                 clear_left_slots: bool = True) -> None:
        self.slots_table = slots_table
        self.answers_table = answers_table
        #: A slot a moved poll left is written null (cleared in Marketo), or left out (its old copy stays there):
        #: whether a null clears a custom object field is UNCONFIRMED (KMSYNC_POLLS_CLEAR_EMPTY_SLOTS).
        self.clear_left_slots = clear_left_slots

    def apply(self, session: str, email: str, response: PollResponse) -> PollOutcome:
        slot = self._slot(session, response)
        if slot is None:
            return PollOutcome(None, False, None)
        person = f"{session}|{email}"
        answers: dict[str, Any] = dict(self.answers_table.get(person) or {})
        answer = PollAnswer(
            slot,
            response.poll_type,
            truncate(response.question, POLL_QUESTION_MAX_CHARS),
            truncate(response.answer, POLL_ANSWER_MAX_CHARS),
        )
        previous = answers.get(response.poll_id)
        if previous == answer.as_dict():
            return PollOutcome(slot, False, None)
        moved_from = int(previous["slot"]) if previous is not None and int(previous["slot"]) != slot else None
        # Another poll of this person in the new slot has moved too (positions are a permutation of the
        # session's polls): it comes back re-stamped with its own new position.
        for other in [k for k, v in answers.items() if k != response.poll_id and int(v["slot"]) == slot]:
            del answers[other]
        answers[response.poll_id] = answer.as_dict()
        self.answers_table[person] = answers
        cleared = () if moved_from is None or not self.clear_left_slots \
            or any(int(v["slot"]) == moved_from for v in answers.values()) else (moved_from,)
        return PollOutcome(slot, True, polls_record(response, email, answers.values(), cleared),
                           cuts_of(response, slot), moved_from)

    def _slot(self, session: str, response: PollResponse) -> int | None:
        """The record's position when it has one (None past the last slot), else the session's legacy slot."""
        if response.poll_position is not None:
            return response.poll_position if response.poll_position <= MAX_POLLS_PER_SESSION else None
        slots: dict[str, int] = dict(self.slots_table.get(session) or {})
        known = response.poll_id in slots
        slot = assign_slot(slots, response.poll_id)
        if slot is not None and not known:
            self.slots_table[session] = slots
        return slot


def polls_record(response: PollResponse, email: str, answers: Any, cleared: tuple[int, ...] = ()) -> dict[str, Scalar]:
    """entry_id, email, user, then poll_N_type/answer/question for every answered slot, by slot, and
    null for each slot in `cleared` (a slot a moved poll left)."""
    record: dict[str, Scalar] = {"entry_id": response.entry_id, "email": email, "user": response.user_id}
    by_slot = {a.slot: a for a in (PollAnswer.from_dict(d) for d in answers)}
    for slot in sorted({*by_slot, *cleared}):
        type_field, answer_field, question_field = poll_field_names(slot)
        a = by_slot.get(slot)
        record[type_field] = a.poll_type if a else None
        record[answer_field] = a.answer if a else None
        record[question_field] = a.question if a else None
    return record
