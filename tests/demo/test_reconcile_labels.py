"""Reconciliation of the granular labels on program memberships against the ground truth (issue #16)."""

from __future__ import annotations

import copy
from typing import Any

from kmsync_cli.reconcile import reconcile

START, END = "2025-06-16T13:00:00Z", "2025-06-16T17:00:00Z"


def person(email: str, *transitions: tuple[str, str], reg_origin: str = "registration") -> dict[str, Any]:
    return {"email": email, "email_defect": None, "deleted": False, "reg_origin": reg_origin,
            "final_status": transitions[-1][0], "status_time": transitions[-1][1],
            "transitions": [{"status": s, "at": at} for s, at in transitions]}


TRUTH: dict[str, Any] = {
    "event_start": START, "event_end": END, "engagement": [], "poll_answers": [],
    "attendees": [
        person("ann@x.com", ("registered", "2025-06-15T10:00:00Z"), ("confirmed", "2025-06-15T11:00:00Z"),
               ("attended", "2025-06-16T12:50:00Z"), ("participated", "2025-06-16T13:30:00Z")),
        person("bob@x.com", ("registered", "2025-06-15T10:00:00Z"), ("attended", "2025-06-16T13:10:00Z")),
        person("cy@x.com", ("registered", "2025-06-15T10:00:00Z"), reg_origin="sso"),
        person("di@x.com", ("registered", "2025-06-15T10:00:00Z"), ("unregistered", "2025-06-15T12:00:00Z")),
    ],
}


def dump(labels: dict[int, str | None]) -> dict[str, Any]:
    emails = ["ann@x.com", "bob@x.com", "cy@x.com", "di@x.com"]
    statuses = ["Participated", "Attended", "Registered", "Un-registered"]
    return {
        "leads": [{"id": i + 1, "email": e} for i, e in enumerate(emails)],
        "programMembers": [{"programId": 1001, "leadId": i + 1, "statusName": statuses[i],
                            **({"kalturaGranularStatus": labels[i + 1]} if labels.get(i + 1) else {})}
                           for i in range(4)],
        "activityTypes": [], "activities": [], "customObjects": {},
    }


GOOD = {1: "Pre-event visit", 2: "During-event visit", 3: "SSO login", 4: "Un-registered"}


def row(labels: dict[int, str | None]) -> Any:
    [tally] = [t for t in reconcile(TRUTH, dump(labels), 1001).tallies if t.kind.startswith("granular labels")]
    return tally


def test_labels_as_the_history_and_the_schedule_give_them_reconcile() -> None:
    tally = row(GOOD)
    assert tally.kind == "granular labels (4 distinct)" and tally.clean
    assert (tally.expected, tally.present) == (4, 4)


def test_a_wrong_a_lower_and_a_missing_label_are_reported() -> None:
    tally = row({**GOOD, 1: "During-event visit", 2: "Registered", 4: None})
    assert [w.split(":")[0] for w in tally.wrong] == ["ann@x.com", "bob@x.com"]
    assert tally.missing == ["di@x.com (final Un-registered)"]


def test_without_status_times_or_labels_switched_off_there_is_no_row() -> None:
    bare = copy.deepcopy(TRUTH)
    del bare["event_start"]
    assert not any(t.kind.startswith("granular") for t in reconcile(bare, dump(GOOD), 1001).tallies)
    assert not any(t.kind.startswith("granular") for t in reconcile(TRUTH, dump(GOOD), 1001, labels=False).tallies)
