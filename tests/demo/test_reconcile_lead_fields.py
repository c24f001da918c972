"""The reconciliation's lead fields row (issue #16 §3, §6): leads carry the title, company and country each
registrant gave, and the demo's mapped form answer; nothing where they left it blank; 0 wrong is the bar."""

from __future__ import annotations

import copy
from typing import Any

from kmsync_cli.reconcile import reconcile

TRUTH: dict[str, Any] = {
    "attendees": [
        {"email": "Ann@X.com", "email_defect": None, "deleted": False, "final_status": "registered",
         "transitions": [{"status": "registered"}], "title": "CTO", "company": "Acme", "country": "France",
         "registration": {"howDidYouHear": "Colleague", "jobFunction": "IT"}},
        {"email": "bob@x.com", "email_defect": None, "deleted": False, "final_status": "registered",
         "transitions": [{"status": "registered"}], "title": "", "company": "Initech", "country": "Japan",
         "registration": {}},
        {"email": "nope", "email_defect": "bad_email", "deleted": False, "final_status": "registered",
         "transitions": [{"status": "registered"}], "title": "CEO", "company": "X", "country": "India"},
    ],
    "engagement": [],
    "poll_answers": [],
}


def dump() -> dict[str, Any]:
    return {
        "leads": [{"id": 1, "email": "ann@x.com", "title": "CTO", "company": "Acme", "country": "France",
                   "leadSource": "Colleague"},
                  {"id": 2, "email": "bob@x.com", "company": "Initech", "country": "Japan"}],
        "programMembers": [{"programId": 1001, "leadId": 1, "statusName": "Registered"},
                           {"programId": 1001, "leadId": 2, "statusName": "Registered"}],
        "activityTypes": [], "activities": [], "customObjects": {},
    }


def row(truth: dict[str, Any], state: dict[str, Any]) -> Any:
    [tally] = [t for t in reconcile(truth, state, program_id=1001).tallies if t.kind.startswith("lead fields")]
    return tally


def test_leads_with_what_each_registrant_gave_reconcile() -> None:
    result = reconcile(TRUTH, dump(), program_id=1001)
    assert result.clean, result.report()
    tally = row(TRUTH, dump())
    assert tally.kind == "lead fields (title, company, country, leadSource)"
    assert (tally.expected, tally.present) == (6, 6)


def test_a_missing_company_a_wrong_title_and_a_value_never_given_are_reported() -> None:
    state = copy.deepcopy(dump())
    del state["leads"][0]["company"]
    state["leads"][0]["title"] = "Engineer"
    state["leads"][1]["title"] = "Intern"  # bob left title blank: nothing may be written
    state["leads"][1]["leadSource"] = "Search"  # nor a form answer he did not give
    tally = row(TRUTH, state)
    assert tally.missing == ["ann@x.com: company '' (registrant gave 'Acme')"]
    assert sorted(tally.wrong) == ["ann@x.com: title 'Engineer' (registrant gave 'CTO')",
                                   "bob@x.com: leadSource 'Search' (registrant gave '')",
                                   "bob@x.com: title 'Intern' (registrant gave '')"]
    assert not reconcile(TRUTH, state, program_id=1001).clean


def test_without_the_registrants_answers_in_the_truth_there_is_no_row() -> None:
    bare = copy.deepcopy(TRUTH)
    for person in bare["attendees"]:
        for key in ("title", "company", "country", "registration"):
            person.pop(key, None)
    assert all(not t.kind.startswith("lead fields") for t in reconcile(bare, dump(), program_id=1001).tallies)
