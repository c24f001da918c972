"""Kaltura's wire formats for report data: pure rendering, no I/O.

* ``report.getTable`` (docs/reference/kaltura-api.md §3.3): ``header`` = column names joined by the delimiter;
  ``data`` = rows joined by ``;`` with a trailing ``;``; a delimiter or ``;`` inside a value becomes a
  space (no escaping).
* Report CSV (§3.3, §7.1): UTF-8 BOM, comma-separated header line, commas inside values replaced by
  spaces (no quoting).

Column layouts: 60013 from the server's report definition (order UNCONFIRMED, §7.1), 4021 from
Kaltura's guide (§3.5), poll answers OUR ASSUMPTION (the ``pollsActivity`` layout is undocumented).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

from kaltura_sandbox.scenario import EngagementFact, PollAnswer

#: EP_WEBCAST_VOD_LIVE_USERS_ENGAGEMENT (docs/reference/kaltura-api.md §3.4, §7.1).
REPORT_60013_COLUMNS: Final = (
    "first_name", "last_name", "title", "company", "email", "country", "role", "industry",
    "vod_view_time", "live_view_time", "total_view_time", "avg_completion_rate", "count_reaction_clicked",
    "count_raise_hand_clicked", "combined_live_engaged_users_play_time_ratio",
    "count_group_chat_messages_sent", "count_poll_answered", "count_q_and_a_threads",
    "count_download_attachment_clicked",
)

#: Custom report 4021 "User Reactions" (docs/reference/kaltura-api.md §3.5, §7.1); no entry_id column.
REPORT_4021_COLUMNS: Final = (
    "email", "combined_live_engaged_users_play_time_ratio", "download_attachment", "add_to_calendar",
    "raise_hand", "mic_on", "cam_on", "clap_clicked_count", "heart_clicked_count", "think_clicked_count",
    "wow_clicked_count", "smile_clicked_count", "total_reactions_activity", "answered_polls",
    "messages_sent_group", "qna_threads",
)

#: OUR ASSUMPTION for the reports-microservice ``pollsActivity`` CSV (docs/reference/kaltura-api.md §7.1).
POLL_ANSWER_COLUMNS: Final = (
    "entry_id", "poll_id", "poll_type", "question", "user_id", "email", "answer", "answered_at",
)

#: A damaged row drops this many trailing cells ("missing_fields").
_MISSING_CELLS: Final = 3


def fmt_number(value: float) -> str:
    """Kaltura-style number: no trailing zeros, integers without a decimal point."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fmt_time(value: datetime) -> str:
    """ISO 8601 UTC with milliseconds and Z, as the User Profile service prints it (§7.1)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _apply_defect(values: list[str], defect: str | None, numeric_at: int) -> list[str]:
    if defect == "missing_fields":
        return values[:-_MISSING_CELLS]
    if defect == "non_numeric":
        values = list(values)
        values[numeric_at] = "N/A"
    return values


def row_60013(e: EngagementFact) -> list[str]:
    values = [
        e.first_name, e.last_name, e.title, e.company, e.email or "", e.country, e.role, e.industry,
        fmt_number(e.vod_minutes), fmt_number(e.live_minutes), fmt_number(e.total_minutes),
        fmt_number(e.completion_rate), str(e.total_reactions), str(e.raise_hand), fmt_number(e.engaged_ratio),
        str(e.messages_sent_group), str(e.answered_polls), str(e.qna_threads), str(e.download_attachment),
    ]
    return _apply_defect(values, e.defect, REPORT_60013_COLUMNS.index("total_view_time"))


def row_4021(e: EngagementFact) -> list[str]:
    values = [
        e.email or "", fmt_number(e.engaged_ratio), str(e.download_attachment), str(e.add_to_calendar),
        str(e.raise_hand), fmt_number(e.mic_on_minutes), fmt_number(e.cam_on_minutes), str(e.clap),
        str(e.heart), str(e.think), str(e.wow), str(e.smile), str(e.total_reactions), str(e.answered_polls),
        str(e.messages_sent_group), str(e.qna_threads),
    ]
    return _apply_defect(values, e.defect, REPORT_4021_COLUMNS.index("answered_polls"))


def row_poll_answer(a: PollAnswer) -> list[str]:
    values = [
        a.entry_id, a.poll_id, a.poll_type, a.question, a.user_id, a.email or "", a.answer,
        fmt_time(a.answered_at),
    ]
    return _apply_defect(values, a.defect, 0)


def flatten_table_value(value: str, delimiter: str) -> str:
    """What Kaltura does to a value inside a report table: delimiter and ';' become spaces."""
    return value.replace(delimiter, " ").replace(";", " ")


def render_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], delimiter: str
) -> tuple[str, str]:
    """(header, data) strings of a KalturaReportTable; data has a trailing ';' after every row."""
    head = delimiter.join(flatten_table_value(h, delimiter) for h in header)
    data = "".join(delimiter.join(flatten_table_value(v, delimiter) for v in row) + ";" for row in rows)
    return head, data


def flatten_csv_value(value: str) -> str:
    """What Kaltura's report CSV does to a value: commas (and line breaks) become spaces."""
    return value.replace(",", " ").replace("\r", " ").replace("\n", " ")


def render_csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    """A Kaltura report CSV: UTF-8 BOM, header line, one line per row, no quoting."""
    lines = [",".join(flatten_csv_value(h) for h in header)]
    lines.extend(",".join(flatten_csv_value(v) for v in row) for row in rows)
    return ("\ufeff" + "\n".join(lines) + "\n").encode("utf-8")
