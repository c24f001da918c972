"""What the benchmark sends: Marketo operations as transform emits them, and Kaltura report CSVs. Pure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from kmsync_contracts.marketo_ops import (
    CustomActivity,
    CustomObjectUpsert,
    LeadUpsert,
    MarketoOperation,
    ProgramMemberStatus,
)
from kmsync_contracts.seed import (
    ENGAGEMENT_ACTIVITY_API_NAME,
    ENGAGEMENT_OBJECT_API_NAME,
    ENGAGEMENT_OBJECT_DEDUPE_FIELDS,
    STATUS_STEPS,
)

PROGRAM_ID = 1001          # the program of marketo-sandbox --preset kaltura
PARTNER_ID = 1234567
ENTRY_ID = "1_bench"

#: Custom report 4021 "User Reactions" columns (docs/reference/kaltura-api.md §3.5, §7.1), as Kaltura exports them.
REPORT_4021_COLUMNS = (
    "email", "combined_live_engaged_users_play_time_ratio", "download_attachment", "add_to_calendar",
    "raise_hand", "mic_on", "cam_on", "clap_clicked_count", "heart_clicked_count", "think_clicked_count",
    "wow_clicked_count", "smile_clicked_count", "total_reactions_activity", "answered_polls",
    "messages_sent_group", "qna_threads",
)


def attendee_ops(i: int, munchkin: str, tag: str, at: datetime) -> list[MarketoOperation]:
    """One attendee's operations: lead, Registered, engagement object, activity; every third also Attended."""
    email = f"{tag}{i}@bench.example"
    base = {"munchkin_id": munchkin, "partner_id": PARTNER_ID, "virtual_event_id": 1, "email": email,
            "source_time": at, "emitted_at": at}
    ops: list[MarketoOperation] = [
        LeadUpsert(op_id=f"{tag}-lead-{i}", fields={"firstName": f"U{i}", "lastName": "Bench"}, **base),
        ProgramMemberStatus(op_id=f"{tag}-reg-{i}", program_id=PROGRAM_ID, status_name="Registered",
                            step=STATUS_STEPS["Registered"], **base),
        CustomObjectUpsert(op_id=f"{tag}-co-{i}", object_name=ENGAGEMENT_OBJECT_API_NAME,
                           dedupe_fields=ENGAGEMENT_OBJECT_DEDUPE_FIELDS,
                           record={"entry_id": ENTRY_ID, "email": email, "plays": i % 7 + 1,
                                   "live_minutes_viewed": float(i % 50)}, **base),
        CustomActivity(op_id=f"{tag}-act-{i}", activity_type=ENGAGEMENT_ACTIVITY_API_NAME,
                       primary_attribute_value=ENTRY_ID, activity_date=at,
                       attributes={"entry_name": "Keynote", "plays": i % 7 + 1}, **base),
    ]
    if i % 3 == 0:
        ops.append(ProgramMemberStatus(op_id=f"{tag}-att-{i}", program_id=PROGRAM_ID, status_name="Attended",
                                       step=STATUS_STEPS["Attended"], **base))
    return ops


def backlog(n_ops: int, munchkin: str, tag: str, at: datetime) -> list[MarketoOperation]:
    """Exactly ``n_ops`` operations, attendee by attendee (a lead's operations in order)."""
    out: list[MarketoOperation] = []
    i = 0
    while len(out) < n_ops:
        out.extend(attendee_ops(i, munchkin, tag, at))
        i += 1
    return out[:n_ops]


def engagement_row(i: int, tag: str) -> str:
    """A 4021 row: Kaltura's CSV has no quoting and numbers without trailing zeros."""
    values = [f"{tag}{i}@bench.example", f"{(i % 100) / 100:g}", str(i % 2), str(i % 3), str(i % 4),
              str(i % 30), str(i % 20), str(i % 5), str(i % 6), str(i % 7), str(i % 8), str(i % 9),
              str(i % 35), str(i % 4), str(i % 11), str(i % 3)]
    return ",".join(values)


def engagement_csv_lines(rows: int, tag: str, first: int = 0) -> Iterator[str]:
    """Report 4021 CSV lines (UTF-8 BOM on the header, one line per attendee of one session)."""
    yield "\ufeff" + ",".join(REPORT_4021_COLUMNS) + "\n"
    for i in range(first, first + rows):
        yield engagement_row(i, tag) + "\n"


def engagement_csv(rows: int, tag: str, first: int = 0) -> bytes:
    return "".join(engagement_csv_lines(rows, tag, first)).encode("utf-8")
