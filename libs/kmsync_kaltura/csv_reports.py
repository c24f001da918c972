"""Parsing Kaltura report CSV exports (kaltura-api.md §3.3, §3.5, §7.1, §7.3).

Kaltura's report CSV is UTF-8 with a BOM, a comma-separated header line, and no quoting (commas in
values are replaced by spaces). The parser strips the BOM, maps cells by header name, and keeps
going past bad rows: each bad row becomes a :class:`RowError` with its physical line number (the
header is line 1) while good rows come through. Quoted fields from other tools are accepted too.

``iter_report_csv`` streams (for a progress bar over a large backfill file); ``parse_*`` collect.
Report 4021 has no entry id column, so its parser takes the session's ``entry_id`` to stamp.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kmsync_kaltura.errors import CsvHeaderError
from kmsync_kaltura.models import EngagementCsvRow, PollAnswerRow, required_columns
from kmsync_kaltura.rows import Located, ParseResult, RowError, RowT, build_row

BOM = "\ufeff"
_FILENAME = re.compile(r"Report_(?P<report>\d+)_(?P<partner>\d+)_", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ReportFileName:
    report_id: int
    partner_id: int


def report_from_filename(name: str) -> ReportFileName | None:
    """``Report_<id>_<partnerId>_….csv`` (Kaltura's export file name, §3.3) → ids, else None."""
    match = _FILENAME.search(name)
    if match is None:
        return None
    return ReportFileName(int(match["report"]), int(match["partner"]))


def _text_lines(source: bytes | str | Iterable[str] | Iterable[bytes]) -> Iterator[str]:
    """Lines of text with the BOM removed; bytes are decoded as UTF-8 (incrementally)."""
    if isinstance(source, bytes):
        text = source.decode("utf-8-sig")
        yield from io.StringIO(text, newline="")
        return
    if isinstance(source, str):
        yield from io.StringIO(source.removeprefix(BOM), newline="")
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    first = True
    for chunk in source:
        line = decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if first and line:
            line = line.removeprefix(BOM)
            first = False
        if line:
            yield line


def iter_report_csv(
    source: bytes | str | Iterable[str] | Iterable[bytes], model: type[RowT], *,
    stamp: dict[str, Any] | None = None, validate_email: bool = True,
) -> Iterator[Located[RowT] | RowError]:
    """Yield each data row as parsed (``Located``) or rejected (``RowError``), in file order.

    Raises :class:`CsvHeaderError` before any row if the header lacks required columns.
    """
    reader = csv.reader(_text_lines(source), strict=False)
    header: list[str] | None = None
    context = {"validate_email": validate_email}
    stamped = set(stamp or {})
    for cells in reader:
        if not cells or all(c.strip() == "" for c in cells):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            missing = [c for c in required_columns(model) if c not in header and c not in stamped]  # type: ignore[arg-type]
            if missing:
                raise CsvHeaderError(
                    f"line {reader.line_num}: header lacks required columns {missing}", missing=missing
                )
            continue
        yield build_row(model, header, cells, line=reader.line_num, raw=",".join(cells), stamp=stamp,
                        context=context)
    if header is None:
        raise CsvHeaderError("empty file: no header line")


def parse_report_csv(
    source: bytes | str | Iterable[str] | Iterable[bytes], model: type[RowT], *,
    stamp: dict[str, Any] | None = None, validate_email: bool = True,
) -> ParseResult[RowT]:
    result: ParseResult[RowT] = ParseResult()
    for outcome in iter_report_csv(source, model, stamp=stamp, validate_email=validate_email):
        if isinstance(outcome, RowError):
            result.errors.append(outcome)
        else:
            result.rows.append(outcome)
    return result


def parse_engagement_csv(
    source: bytes | str | Iterable[str] | Iterable[bytes], *, entry_id: str, validate_email: bool = True,
) -> ParseResult[EngagementCsvRow]:
    """Report 4021 "User Reactions" CSV of one session."""
    return parse_report_csv(source, EngagementCsvRow, stamp={"entry_id": entry_id},
                            validate_email=validate_email)


def parse_poll_answers_csv(
    source: bytes | str | Iterable[str] | Iterable[bytes], *, validate_email: bool = True,
) -> ParseResult[PollAnswerRow]:
    """Poll answers CSV in OUR ASSUMED ``pollsActivity`` layout (see models.PollAnswerRow)."""
    return parse_report_csv(source, PollAnswerRow, validate_email=validate_email)
