"""Reconciliation of Marketo's state against the Kaltura scenario's ground truth (pure)."""

from __future__ import annotations

import copy
import re
from typing import Any

from kmsync_cli.reconcile import COLUMNS, reconcile

TRUTH: dict[str, Any] = {
    "attendees": [
        {"email": "Ann@X.com", "email_defect": None, "deleted": False, "final_status": "participated",
         "transitions": [{"status": "invited"}, {"status": "registered"}, {"status": "attended"},
                         {"status": "participated"}]},
        {"email": "bob@x.com", "email_defect": None, "deleted": False, "final_status": "registered",
         "transitions": [{"status": "invited"}, {"status": "registered"}]},
        {"email": "nope", "email_defect": "bad_email", "deleted": False, "final_status": "registered",
         "transitions": [{"status": "registered"}]},
        {"email": "gone@x.com", "email_defect": None, "deleted": True, "final_status": "unregistered",
         "transitions": [{"status": "registered"}, {"status": "unregistered"}]},
    ],
    "engagement": [
        {"entry_id": "1_a", "email": "ANN@x.com", "defect": None},
        {"entry_id": "1_b", "email": "bob@x.com", "defect": "non_numeric"},
    ],
    "poll_answers": [{"entry_id": "1_a", "email": "ann@x.com", "defect": None}],
}


def dump() -> dict[str, Any]:
    return {
        "leads": [{"id": 1, "email": "ann@x.com"}, {"id": 2, "email": "bob@x.com"}],
        "programMembers": [
            {"programId": 1001, "leadId": 1, "statusName": "Participated"},
            {"programId": 1001, "leadId": 2, "statusName": "Registered"},
        ],
        "activityTypes": [{"id": 100001, "apiName": "userSessionEngagement"}],
        "activities": [
            {"activityTypeId": 104, "leadId": 1, "primaryAttributeValue": "program"},
            {"activityTypeId": 100001, "leadId": 1, "primaryAttributeValue": "1_a"},
        ],
        "customObjects": {
            "kalturaUserSessionEngagement": [{"entry_id": "1_a", "personId": 1}],
            "kalturaUserPolls_c": [{"entry_id": "1_a", "email": "ann@x.com"}],
        },
    }


def test_a_complete_state_reconciles_and_damaged_or_deleted_input_is_tolerated() -> None:
    result = reconcile(TRUTH, dump(), program_id=1001)
    assert result.clean, result.report()
    assert [t.expected for t in result.tallies] == [2, 2, 1, 1, 1]
    # A deleted registrant that did reach Marketo, and a damaged row that arrived clean elsewhere.
    state = dump()
    state["leads"].append({"id": 3, "email": "gone@x.com"})
    state["customObjects"]["kalturaUserSessionEngagement"].append({"entry_id": "1_b", "personId": 2})
    assert reconcile(TRUTH, state, program_id=1001).clean


def test_missing_duplicate_unexpected_and_wrong_records_are_reported() -> None:
    state = dump()
    state["leads"].append({"id": 9, "email": "stranger@x.com"})
    state["activities"].append({"activityTypeId": 100001, "leadId": 1, "primaryAttributeValue": "1_a"})
    state["programMembers"][1]["statusName"] = "Invited"  # lost the final Registered
    state["customObjects"]["kalturaUserPolls_c"] = []
    result = reconcile(TRUTH, state, program_id=1001)
    assert not result.clean
    by_kind = {t.kind: t for t in result.tallies}
    assert by_kind["leads"].unexpected == ["stranger@x.com"]
    assert by_kind["userSessionEngagement activities"].duplicates == ["('1_a', 'ann@x.com')"]
    assert by_kind["program members"].wrong == ["bob@x.com: Invited (final registered)"]
    assert by_kind["kalturaUserPolls_c objects"].missing == ["('1_a', 'ann@x.com')"]
    assert "NOT RECONCILED" in result.report()


def test_a_status_never_reached_in_kaltura_is_wrong_even_if_further() -> None:
    state = copy.deepcopy(dump())
    state["programMembers"][1]["statusName"] = "Blocked"
    [wrong] = [t for t in reconcile(TRUTH, state, program_id=1001).tallies if t.kind == "program members"]
    assert wrong.wrong == ["bob@x.com: Blocked (final registered)"]


def test_the_table_explains_records_present_beyond_the_expected_and_keeps_its_columns() -> None:
    # Issue #20 item 7: "leads expected 2993 present 2996" without a word about the 3; columns that
    # broke on "kalturaUserSessionEngagement objects".
    state = dump()
    state["leads"].append({"id": 3, "email": "gone@x.com"})  # soft-deleted in Kaltura after the sync
    result = reconcile(TRUTH, state, program_id=1001)
    assert result.clean
    leads = next(t for t in result.tallies if t.kind == "leads")
    assert (leads.expected, leads.present, leads.tolerated) == (2, 3, 1)
    report = result.report()
    assert "leads: 3 present for 2 expected: 1 tolerated, registrants soft-deleted in Kaltura" in report
    table = result.table()
    assert table[0].split() == ["kind", "expected", "present", "tolerated", "missing", "duplicates",
                                "unexpected", "wrong"]
    # Every row's numbers end where the header's do, whatever the length of the kind's name.
    def ends(line: str) -> list[int]:
        return [m.end() for m in re.finditer(r"\S+", line)][-len(COLUMNS):]

    assert all(ends(row) == ends(table[0]) for row in table[1:]), "\n".join(table)
