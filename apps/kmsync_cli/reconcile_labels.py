"""Reconciliation of the granular labels on program memberships (issue #16; docs/design/granular-statuses.md §6).

Expected per person, from the scenario's status history and the event's schedule, with transform's own
rules (kmsync_transform.status_map, kmsync_contracts.granular): the member's label must be one the
person had, and, when the person's final status has a label, at least as far in the label order as
that one (a pull may skip intermediate statuses; it never loses the last). A person whose final status
has a label must carry one. The row's kind names how many distinct labels Marketo holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kmsync_contracts.granular import GRANULAR_STATUS_FIELD, LabelRank, label_rank
from kmsync_contracts.kaltura_records import AttendanceStatus, AttendeeStatus
from kmsync_contracts.seed import STATUS_STEPS
from kmsync_transform.status_map import granular_label

Json = Mapping[str, Any]


def _labels(person: Json, truth: Json, status_map: Mapping[AttendanceStatus, str]) -> list[tuple[str, LabelRank]]:
    """The person's labelled statuses in order, each with its rank."""
    start = datetime.fromisoformat(truth["event_start"]) if truth.get("event_start") else None
    end = datetime.fromisoformat(truth["event_end"]) if truth.get("event_end") else None
    out = []
    for t in person.get("transitions") or [{"status": person["final_status"], "at": person["status_time"]}]:
        at = datetime.fromisoformat(t["at"])
        status = AttendanceStatus(t["status"])
        record = AttendeeStatus(partner_id=1, virtual_event_id=1, user_id="u", source="pull", source_time=at,
                                ingested_at=at, status=status, status_time=at, reg_origin=person.get("reg_origin"))
        label = granular_label(record, start, end)
        if label is not None:
            out.append((label, label_rank(STATUS_STEPS[status_map[status]], label)))
    return out


@dataclass
class LabelCheck:
    """Counts for one reconciliation row (reconcile.Tally takes them)."""

    expected: int = 0
    present: int = 0
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    distinct: set[str] = field(default_factory=set)


def granular_labels(expected: Mapping[str, Json], leads_by_id: Mapping[Any, str], truth: Json, dump: Json,
                    program_id: int, status_map: Mapping[AttendanceStatus, str],
                    field_name: str = GRANULAR_STATUS_FIELD) -> LabelCheck:
    """The members' granular labels against the ground truth (``expected``: email → the person)."""
    check = LabelCheck()
    for m in (m for m in dump["programMembers"] if m["programId"] == program_id):
        email = leads_by_id.get(m["leadId"])
        person = expected.get(email or "")
        if person is None:
            continue
        history = _labels(person, truth, status_map)
        last = _labels({**person, "transitions": [{"status": person["final_status"], "at": person["status_time"]}]},
                       truth, status_map)
        final = last[0] if last else None
        got = m.get(field_name)
        if final is not None or got:
            check.expected += 1
        if not got:
            if final is not None:
                check.missing.append(f"{email} (final {final[0]})")
            continue
        check.present += 1
        check.distinct.add(got)
        ranks = dict(history)
        if got not in ranks or (final is not None and ranks[got] < final[1]):
            had = ", ".join(dict.fromkeys(label for label, _ in history)) or "none"
            check.wrong.append(f"{email}: {got} (had {had})")
    return check
