"""Reconciliation of the poll slots (issue #16 §5; docs/design/granular-statuses.md §6).

Expected per (session, person): each poll the person answered sits in the slot poll_N whose N is the
poll's position in the session as Kaltura gives it: the scenario's poll order, among the polls the
session's poll answers report shows (a poll nobody answered is not in the report, so it takes no
position; docs/reference/kaltura-api.md §11). Each slot's question and answer are the ones the person
gave, as exported and cut to the seed's lengths. A slot holding another poll's text, or a text where
the person answered nothing, is wrong; numbering polls by arrival or by report row shows up here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kmsync_contracts.seed import (
    MAX_POLLS_PER_SESSION,
    POLL_ANSWER_MAX_CHARS,
    POLL_QUESTION_MAX_CHARS,
    POLLS_OBJECT_API_NAME,
    POLLS_OBJECT_DEDUPE_FIELDS,
    poll_field_names,
)
from kmsync_transform.emails import normalise_email

Json = Mapping[str, Any]
POLLS_ENTRY, POLLS_EMAIL = POLLS_OBJECT_DEDUPE_FIELDS
#: A row damaged this way cannot be read by ingest, so it shows no poll.
UNREADABLE = "missing_fields"


@dataclass
class SlotCheck:
    """Counts for one reconciliation row (reconcile.Tally takes them)."""

    expected: int = 0
    present: int = 0
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


def _positions(rows: list[Json]) -> dict[tuple[str, str], int]:
    """(entry, poll id) → the poll's position among the polls the session's report shows, in Kaltura's order."""
    shown: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.get("defect") != UNREADABLE:
            shown.setdefault(r["entry_id"], {})[r["poll_id"]] = int(r["poll_index"])
    return {(entry, poll): n for entry, polls in shown.items()
            for n, poll in enumerate(sorted(polls, key=lambda p: polls[p]), start=1)}


def expected_slots(expected: Mapping[str, Json], truth: Json) -> dict[tuple[str, str], dict[int, tuple[str, str]]]:
    """(entry, email) → {slot: (question, answer)} for the sessions and people Marketo must hold
    (``expected``: email → the person); a (session, person) with a damaged row is left out."""
    rows = list(truth["poll_answers"])
    positions = _positions(rows)
    out: dict[tuple[str, str], dict[int, tuple[str, str]]] = {}
    damaged: set[tuple[str, str]] = set()
    for r in rows:
        email = normalise_email(r.get("email"))
        if email is None or email not in expected:
            continue
        key = (r["entry_id"], email)
        if r.get("defect"):
            damaged.add(key)
            continue
        slot = positions[(r["entry_id"], r["poll_id"])]
        if slot <= MAX_POLLS_PER_SESSION:
            # Cut as transform cuts, then compared as held values are (stripped): a cut that ends on a
            # space leaves it at the end of the field.
            question = str(r.get("question_as_exported", r["question"])).strip()[:POLL_QUESTION_MAX_CHARS].strip()
            answer = str(r.get("answer_as_exported", r["answer"])).strip()[:POLL_ANSWER_MAX_CHARS].strip()
            out.setdefault(key, {})[slot] = (question, answer)
    return {k: v for k, v in out.items() if k not in damaged}


def _schema_fields(dump: Json) -> set[str] | None:
    """The polls object's field names when the dump carries the instance's schema, else None."""
    for t in dump.get("customObjectTypes") or []:
        if t.get("name") == POLLS_OBJECT_API_NAME:
            return {str(f.get("name")) for f in t.get("fields") or []}
    return None


def poll_slots(expected: Mapping[str, Json], truth: Json, dump: Json) -> SlotCheck | None:
    """Every polls object of an expected (session, person) against its expected slots; a missing object
    is counted in the objects row, not here. None when the ground truth has no poll order (Kaltura
    pulled now has none: kmsync's own numbering is all there is)."""
    if not truth["poll_answers"] or any("poll_index" not in r for r in truth["poll_answers"]):
        return None
    check = SlotCheck()
    want = expected_slots(expected, truth)
    fields = _schema_fields(dump)
    for record in dump["customObjects"].get(POLLS_OBJECT_API_NAME, []):
        key = (str(record.get(POLLS_ENTRY)), str(record.get(POLLS_EMAIL) or "").lower())
        slots = want.get(key)
        if slots is None or not any(k.startswith("poll_") for k in record):
            continue  # not expected here, or read back without its slot fields (the REST read-back)
        for n in range(1, MAX_POLLS_PER_SESSION + 1):
            _, answer_field, question_field = poll_field_names(n)
            if fields is not None and question_field not in fields:
                continue  # the instance has no such field: kmsync omits it (kmsync marketo check lists it)
            held = (str(record.get(question_field) or "").strip(), str(record.get(answer_field) or "").strip())
            if n in slots:
                check.expected += 1
            if held == ("", ""):
                if n in slots:
                    check.missing.append(f"{key[0]} {key[1]}: poll_{n} empty")
                continue
            check.present += 1
            if slots.get(n) != held:
                what = f"expected {slots[n][0][:40]!r}" if n in slots else "the person answered no poll there"
                check.wrong.append(f"{key[0]} {key[1]}: poll_{n} holds {held[0][:40]!r}, {what}")
    return check
