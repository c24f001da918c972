"""The dead letters of a local run, read from the three dead-letter topics and explained against what
the Kaltura scenario damaged on purpose.

The Kaltura sandbox's scenario plants bad input (report rows with missing fields, a non-numeric
value or an unusable email; registrants whose Kaltura user has an unusable email), and its ground
truth labels each one. kmsync must dead-letter exactly those: ingest refuses a report line it
cannot read (``kmsync.bad_row``), transform refuses a person whose email cannot name a Marketo lead
(``kmsync.unusable_email``). Anything else on a dead-letter topic is unexpected. `kmsync run` and
`kmsync chaos` print `explain()`; counting (`census`) is the only I/O here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kmsync_contracts.codecs import ContractError, decode
from kmsync_contracts.outcomes import DeadLetter
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import INGEST_DLQ, MARKETO_DLQ, TRANSFORM_DLQ
from kmsync_kafka import topic_name
from kmsync_kafka.reading import read_to_end

Json = Mapping[str, Any]

#: The dead letters the scenario's planted defects must cause, by (stage, reason code).
BAD_ROWS = ("ingest", str(ReasonCode.BAD_ROW))
UNUSABLE_EMAILS = ("transform", str(ReasonCode.UNUSABLE_EMAIL))
EXPECTED = (BAD_ROWS, UNUSABLE_EMAILS)
#: How a letter that does not decode as a DeadLetter is counted.
UNDECODABLE = "(undecodable)"


@dataclass
class Census:
    """Dead letters by (stage, reason code), and the Kaltura users transform refused for their email."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    unusable_email_users: set[str] = field(default_factory=set)
    #: Distinct report lines (source_ref) ingest refused.
    bad_row_lines: set[str] = field(default_factory=set)

    def add(self, letter: DeadLetter) -> None:
        key = (letter.stage, letter.reason_code)
        self.counts[key] += 1
        payload = letter.payload if isinstance(letter.payload, dict) else {}
        user_id = payload.get("user_id")
        if key == UNUSABLE_EMAILS and isinstance(user_id, str):
            self.unusable_email_users.add(user_id)
        if key == BAD_ROWS:
            self.bad_row_lines.add(str(payload.get("source_ref", letter.reason)))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def unexpected(self) -> dict[tuple[str, str], int]:
        return {k: n for k, n in self.counts.items() if k not in EXPECTED}


def census(bootstrap: str, prefix: str = "") -> Census:
    """Every dead letter on ingest.dlq.v1, transform.dlq.v1 and marketo.dlq.v1 as they are now."""
    found = Census()
    for spec in (INGEST_DLQ, TRANSFORM_DLQ, MARKETO_DLQ):
        for record in asyncio.run(read_to_end(bootstrap, topic_name(spec, prefix))):
            try:
                letter = decode(spec, record.value or b"")
            except ContractError:
                found.counts[(spec.name, UNDECODABLE)] += 1
                continue
            found.add(letter)
    return found


@dataclass(frozen=True)
class Planted:
    """What the scenario damaged on purpose, from the Kaltura sandbox's ground truth (``/_sandbox/truth``)."""

    #: Defect → rows, for engagement rows and poll answers.
    engagement_rows: Mapping[str, int]
    poll_rows: Mapping[str, int]
    #: Kaltura user ids of registrants whose email is missing or malformed.
    unusable_email_users: frozenset[str]

    @classmethod
    def from_truth(cls, truth: Json) -> Planted:
        return cls(
            engagement_rows=Counter(r["defect"] for r in truth["engagement"] if r.get("defect")),
            poll_rows=Counter(r["defect"] for r in truth["poll_answers"] if r.get("defect")),
            unusable_email_users=frozenset(p["user_id"] for p in truth["attendees"] if p.get("email_defect")),
        )

    @property
    def damaged_rows(self) -> int:
        return sum(self.engagement_rows.values()) + sum(self.poll_rows.values())


def _kinds(rows: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {defect.replace('_', ' ')}" for defect, n in sorted(rows.items())) or "none"


def matches(planted: Planted, found: Census) -> bool:
    """Only the expected kinds of dead letter; transform refused only planted people (those whose
    status reached it), and some if any were planted; ingest refused report lines if and only if rows
    were damaged. (How many lines depends on the reports and re-pulls that carried them.)"""
    people_ok = found.unusable_email_users <= planted.unusable_email_users and (
        bool(found.unusable_email_users) == bool(planted.unusable_email_users))
    rows_ok = bool(found.counts[BAD_ROWS]) == bool(planted.damaged_rows)
    return not found.unexpected and people_ok and rows_ok


def explain(planted: Planted, found: Census) -> list[str]:
    """Each number of the census in words, and whether it matches what the scenario planted."""
    bad_rows, unusable = found.counts[BAD_ROWS], found.counts[UNUSABLE_EMAILS]
    lines = [
        f"dead letters: {found.total}. The scenario damages input on purpose; these are expected:",
        f"  ingest {ReasonCode.BAD_ROW} {bad_rows}: Kaltura report lines that cannot be read "
        f"({len(found.bad_row_lines)} distinct). Planted: {planted.damaged_rows} damaged rows "
        f"(engagement: {_kinds(planted.engagement_rows)}; poll answers: {_kinds(planted.poll_rows)}); "
        "a damaged row is refused in each report that carries it (60013, 4021, the polls export), "
        "again when a report is pulled again",
        f"  transform {ReasonCode.UNUSABLE_EMAIL} {unusable}: status records of "
        f"{len(found.unusable_email_users)} Kaltura users whose email cannot name a Marketo lead. Planted: "
        f"{len(planted.unusable_email_users)} registrants with a missing or malformed email",
    ]
    unexpected = ", ".join(f"{stage} {code} {n}" for (stage, code), n in sorted(found.unexpected.items()))
    lines.append(f"  anything else (not planted, to investigate): {unexpected or '0'}")
    lines.append("dead letters match what the scenario planted" if matches(planted, found)
                 else "DEAD LETTERS DO NOT MATCH what the scenario planted")
    return lines
