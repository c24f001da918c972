"""Reconciliation: what Marketo holds against what the Kaltura scenario implies.

Pure: takes the Kaltura sandbox's ground truth (`GET /_sandbox/truth`) and the Marketo sandbox's
dump (`GET /_sandbox/dump`) as plain JSON and counts, per kind of record, what is expected,
present, missing, duplicated and unexpected. `make run` and the end-to-end test both use it, and
`kmsync reconcile` (reconcile_cli.py) gives it Kaltura pulled now (kaltura_now.py, the same shape
without status histories) and Marketo read back over REST (reconcile_rest.py).

Expectations, and why:
- **Leads**: one per distinct valid email of a registrant that is still visible in Kaltura (a
  profile soft-deleted before a pull saw it may or may not have reached Marketo: tolerated).
- **Program members**: Marketo statuses only move forward, so a member's status must be the mapped
  status of one of the person's Kaltura statuses and at least as far as the final one's step (a
  pull may skip intermediate statuses; it may never lose the last one).
- **Engagement custom objects and activities**: one per (session, valid email) with an engagement
  row; one activity per (person, session), never two. Rows the scenario damaged on purpose are
  tolerated either way (they are dead-lettered, or a clean copy from another report arrives).
- **Poll objects**: one per (session, valid email) that answered a poll; each answered poll in the
  slot of its position in the session in Kaltura's order, with the person's question and answer
  (reconcile_polls.py).
- **Lead fields** (when the ground truth has the registrants' answers): each lead's title, company,
  country and the demo's mapped form answer are what the registrant gave, empty where they left them blank.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kmsync_cli.reconcile_labels import granular_labels
from kmsync_cli.reconcile_polls import poll_slots
from kmsync_contracts.kaltura_records import AttendanceStatus
from kmsync_contracts.seed import (
    ENGAGEMENT_ACTIVITY_API_NAME,
    ENGAGEMENT_OBJECT_API_NAME,
    ENGAGEMENT_OBJECT_DEDUPE_FIELDS,
    POLLS_OBJECT_API_NAME,
    POLLS_OBJECT_DEDUPE_FIELDS,
    STATUS_STEPS,
)
from kmsync_transform.emails import normalise_email
from kmsync_transform.status_map import DEFAULT_STATUS_MAP

Json = Mapping[str, Any]

# Marketo objects are counted by their dedupe keys (one record per key): (entry, lead link) for
# engagement, the link read back as the lead's email; (entry, email) for polls.
ENGAGEMENT_ENTRY, ENGAGEMENT_LEAD_LINK = ENGAGEMENT_OBJECT_DEDUPE_FIELDS
POLLS_ENTRY, POLLS_EMAIL = POLLS_OBJECT_DEDUPE_FIELDS


@dataclass
class Tally:
    kind: str
    expected: int = 0
    present: int = 0
    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    #: Records present that are neither expected nor a problem (see `tolerated_why`).
    tolerated: int = 0
    #: Why a record of this kind may be present without being expected, in words for the report.
    tolerated_why: str = ""

    @property
    def clean(self) -> bool:
        return not (self.missing or self.duplicates or self.unexpected or self.wrong)

    def cells(self) -> list[int]:
        return [self.expected, self.present, self.tolerated, len(self.missing), len(self.duplicates),
                len(self.unexpected), len(self.wrong)]


#: The reconciliation table's number columns, in `Tally.cells()` order.
COLUMNS = ("expected", "present", "tolerated", "missing", "duplicates", "unexpected", "wrong")


@dataclass
class Reconciliation:
    tallies: list[Tally]

    @property
    def clean(self) -> bool:
        return all(t.clean for t in self.tallies)

    def table(self) -> list[str]:
        """One row per kind under a header; the columns are as wide as the longest name in them."""
        width = max([len("kind"), *(len(t.kind) for t in self.tallies)])
        lines = [f"{'kind':<{width}}" + "".join(f"  {c:>{len(c)}}" for c in COLUMNS)]
        lines += [f"{t.kind:<{width}}" + "".join(f"  {n:>{len(c)}}" for c, n in zip(COLUMNS, t.cells(), strict=True))
                  for t in self.tallies]
        return lines

    def details(self, examples: int = 3) -> list[str]:
        """Why more records are present than expected, then examples of every problem."""
        lines = []
        for t in self.tallies:
            if t.tolerated:
                lines.append(f"  {t.kind}: {t.present} present for {t.expected} expected: {t.tolerated} "
                             f"tolerated, {t.tolerated_why}")
        for t in self.tallies:
            for label, items in (("missing", t.missing), ("duplicate", t.duplicates),
                                 ("unexpected", t.unexpected), ("wrong", t.wrong)):
                if items:
                    lines.append(f"  {t.kind} {label}: {', '.join(items[:examples])}"
                                 + (" ..." if len(items) > examples else ""))
        return lines

    def verdict(self) -> str:
        return "RECONCILED: 0 missing, 0 duplicates" if self.clean else "NOT RECONCILED"

    def report(self, examples: int = 3) -> str:
        return "\n".join([*self.table(), *self.details(examples), self.verdict()])


#: Why a registrant may be in Marketo without being expected (leads, program members).
DELETED_PEOPLE = "registrants soft-deleted in Kaltura after kmsync had synced them (Marketo keeps them)"
#: Why a session row may be in Marketo without being expected (engagement, polls).
DAMAGED_ROWS = ("rows the scenario damaged on purpose (or of soft-deleted registrants) whose clean copy "
                "arrived in another report")


def _compare(kind: str, required: set[Any], tolerated: set[Any], present: Iterable[Any], why: str) -> Tally:
    counts = Counter(present)
    tally = Tally(kind, expected=len(required), present=sum(counts.values()), tolerated_why=why)
    tally.missing = sorted(str(k) for k in required - counts.keys())
    tally.duplicates = sorted(str(k) for k, n in counts.items() if n > 1)
    tally.unexpected = sorted(str(k) for k in counts.keys() - required - tolerated)
    tally.tolerated = sum(n for k, n in counts.items() if k in tolerated and k not in required)
    return tally


@dataclass
class People:
    """The registrants Marketo must hold (by normalised email), and those it may hold."""

    expected: dict[str, Json]
    #: Soft-deleted in Kaltura: kmsync may have synced them before they disappeared.
    tolerated: set[str]

    @classmethod
    def from_truth(cls, truth: Json) -> People:
        expected: dict[str, Json] = {}
        tolerated: set[str] = set()
        for person in truth["attendees"]:
            email = normalise_email(person.get("email")) if not person.get("email_defect") else None
            if email is None:
                continue
            if person.get("deleted"):
                tolerated.add(email)
            else:
                expected.setdefault(email, person)
        return cls(expected, tolerated - expected.keys())

    def session_keys(self, rows: Iterable[Json]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """(entry, email) of the session rows Marketo must hold, and of those it may hold (damaged rows
        whose clean copy may arrive elsewhere, rows of tolerated people)."""
        good: set[tuple[str, str]] = set()
        damaged: set[tuple[str, str]] = set()
        for row in rows:
            email = normalise_email(row.get("email"))
            if email is None or (email not in self.expected and email not in self.tolerated):
                continue
            (damaged if row.get("defect") or email in self.tolerated else good).add((row["entry_id"], email))
        return good, damaged - good


def _program_members(people: People, leads_by_id: Mapping[Any, str], dump: Json, program_id: int,
                     status_map: Mapping[AttendanceStatus, str]) -> Tally:
    """One member per person, whose status is one the person had and at least as far as the final one."""
    members = [m for m in dump["programMembers"] if m["programId"] == program_id]
    tally = _compare("program members", set(people.expected), people.tolerated,
                     (leads_by_id.get(m["leadId"], f"lead#{m['leadId']}") for m in members), DELETED_PEOPLE)
    for m in members:
        email = leads_by_id.get(m["leadId"])
        person = people.expected.get(email or "")
        if person is None:
            continue
        # No transitions (Kaltura pulled now knows only the current status): any status at least as far.
        history = ([status_map[AttendanceStatus(t["status"])] for t in person["transitions"]]
                   if person.get("transitions") is not None else None)
        final_step = STATUS_STEPS[status_map[AttendanceStatus(person["final_status"])]]
        if (history is not None and m["statusName"] not in history) or STATUS_STEPS[m["statusName"]] < final_step:
            tally.wrong.append(f"{email}: {m['statusName']} (final {person['final_status']})")
    return tally


def _session_records(people: People, leads_by_id: Mapping[Any, str], truth: Json, dump: Json) -> list[Tally]:
    """Engagement objects and activities (one per session and person), poll objects."""
    engaged, engaged_damaged = people.session_keys(truth["engagement"])
    objects = dump["customObjects"]
    engagement = _compare(
        f"{ENGAGEMENT_OBJECT_API_NAME} objects", engaged, engaged_damaged,
        ((r[ENGAGEMENT_ENTRY], leads_by_id.get(r.get(ENGAGEMENT_LEAD_LINK), f"lead#{r.get(ENGAGEMENT_LEAD_LINK)}"))
         for r in objects.get(ENGAGEMENT_OBJECT_API_NAME, [])), DAMAGED_ROWS,
    )
    type_ids = {t["id"] for t in dump["activityTypes"]
                if t.get("apiName", t.get("name")) == ENGAGEMENT_ACTIVITY_API_NAME}
    activities = _compare(
        f"{ENGAGEMENT_ACTIVITY_API_NAME} activities", engaged, engaged_damaged,
        ((a["primaryAttributeValue"], leads_by_id.get(a["leadId"], f"lead#{a['leadId']}"))
         for a in dump["activities"] if a["activityTypeId"] in type_ids), DAMAGED_ROWS,
    )
    answered, answered_damaged = people.session_keys(truth["poll_answers"])
    polls = _compare(
        f"{POLLS_OBJECT_API_NAME} objects", answered, answered_damaged,
        ((r[POLLS_ENTRY], (r.get(POLLS_EMAIL) or "").lower()) for r in objects.get(POLLS_OBJECT_API_NAME, [])),
        DAMAGED_ROWS,
    )
    return [engagement, activities, polls]


#: The demo's lead_fields beyond the defaults (stack.py writes them into its tenants file): one
#: registration-form answer into a standard lead field (docs/reference/marketo-api.md §14).
DEMO_LEAD_FIELDS: dict[str, str] = {"leadSource": "form:howDidYouHear"}
#: Lead fields compared with what each registrant gave (issue #16 §3): Marketo lead field → the ground
#: truth's key (``registration.<key>``: a form answer).
REGISTRANT_LEAD_FIELDS: dict[str, str] = {"title": "title", "company": "company", "country": "country",
                                          "leadSource": "registration.howDidYouHear"}


def _answer(person: Json, key: str) -> str | None:
    """The registrant's answer under ``key`` ("" when left blank), None when the truth does not say."""
    if key.startswith("registration."):
        form = person.get("registration")
        return None if form is None else str(form.get(key.removeprefix("registration.")) or "").strip()
    return None if key not in person else str(person.get(key) or "").strip()


def _given(people: People, truth: Json, key: str) -> dict[str, set[str]]:
    """Email → the values the registrants with that email gave under ``key``."""
    out: dict[str, set[str]] = {}
    for person in truth["attendees"]:
        email = normalise_email(person.get("email")) if not person.get("email_defect") else None
        if email in people.expected and (value := _answer(person, key)) is not None:
            out.setdefault(email, set()).add(value)
    return out


def _lead_fields(people: People, truth: Json, dump: Json,
                 fields: Mapping[str, str] = REGISTRANT_LEAD_FIELDS) -> Tally | None:
    """Each person's lead carries the title, company, country and form answer the registrant gave, and nothing
    where they left it blank (kmsync never sends an empty value). One count per (person, field); None when the
    ground truth does not carry the registrants' answers (Kaltura pulled now without them)."""
    given = {lead_field: _given(people, truth, key) for lead_field, key in fields.items()}
    if not any(given.values()):
        return None
    tally = Tally(f"lead fields ({', '.join(fields)})")
    leads = {(lead.get("email") or "").lower(): lead for lead in dump["leads"]}
    for lead_field, by_email in given.items():
        for email, values in sorted(by_email.items()):
            lead = leads.get(email)
            if lead is None:
                continue  # counted in the leads row
            held = str(lead.get(lead_field) or "").strip()
            tally.expected += 1 if values - {""} else 0
            tally.present += 1 if held else 0
            if held not in values:
                (tally.missing if not held else tally.wrong).append(
                    f"{email}: {lead_field} {held!r} (registrant gave {' or '.join(map(repr, sorted(values)))})")
    return tally


def reconcile(truth: Json, dump: Json, program_id: int,
              overrides: Mapping[AttendanceStatus, str] | None = None, *, labels: bool = True) -> Reconciliation:
    """``labels``: also check the members' granular labels (the dump must carry the member field)."""
    status_map = {**DEFAULT_STATUS_MAP, **(overrides or {})}
    people = People.from_truth(truth)
    leads_by_id = {lead["id"]: (lead.get("email") or "").lower() for lead in dump["leads"]}
    leads = _compare("leads", set(people.expected), people.tolerated, leads_by_id.values(), DELETED_PEOPLE)
    members = _program_members(people, leads_by_id, dump, program_id, status_map)
    lead_fields = _lead_fields(people, truth, dump)
    granular = _granular_labels(people, leads_by_id, truth, dump, program_id, status_map) if labels else None
    return Reconciliation([leads, members, *([granular] if granular else []),
                           *_session_records(people, leads_by_id, truth, dump), *_poll_slots(people, truth, dump),
                           *([lead_fields] if lead_fields else [])])


def _poll_slots(people: People, truth: Json, dump: Json) -> list[Tally]:
    """The polls objects' slots in Kaltura's poll order (reconcile_polls.py); none without a poll order."""
    c = poll_slots(people.expected, truth, dump)
    if c is None or not (c.expected or c.present):
        return []  # no poll order known, or slots not read back (the REST read-back reads keys only)
    return [Tally(f"{POLLS_OBJECT_API_NAME} slots (Kaltura's poll order)", expected=c.expected, present=c.present,
                  missing=c.missing, wrong=c.wrong)]


def _granular_labels(people: People, leads_by_id: Mapping[Any, str], truth: Json, dump: Json, program_id: int,
                     status_map: Mapping[AttendanceStatus, str]) -> Tally | None:
    """The members' granular labels (reconcile_labels.py); the row names how many distinct labels are held.
    None when the ground truth has no status times (labels depend on them)."""
    if not truth.get("event_start") or any("status_time" not in p for p in people.expected.values()):
        return None
    c = granular_labels(people.expected, leads_by_id, truth, dump, program_id, status_map)
    return Tally(f"granular labels ({len(c.distinct)} distinct)", expected=c.expected, present=c.present,
                 missing=c.missing, wrong=c.wrong)
