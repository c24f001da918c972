"""Parsing Kaltura report CSV exports (docs/reference/kaltura-api.md §3.3, §3.5, §7.1, §7.3).

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
from dataclasses import dataclass, field
from typing import Any, BinaryIO

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


#: Longest physical line read (a report row is a few hundred bytes); longer lines are bad rows.
DEFAULT_MAX_LINE_BYTES = 1_048_576
Source = bytes | str | Iterable[str] | Iterable[bytes] | BinaryIO


@dataclass(slots=True)
class _Rejected:
    """Lines the line reader could not hand to the CSV reader (too long, not UTF-8)."""

    lines: list[tuple[int, str]] = field(default_factory=list)


def _binary_lines(fh: BinaryIO, max_line_bytes: int, rejected: _Rejected) -> Iterator[str]:
    """Physical lines of a binary file, decoded one by one; a line too long or not UTF-8 is replaced
    by an empty line (which the CSV reader skips) and recorded with its number, so numbering holds."""
    number = 0
    while True:
        line = fh.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while (rest := fh.readline(65536)) and not rest.endswith(b"\n"):
                pass  # skip to the end of the over-long line without keeping it
            rejected.lines.append((number, f"row: line longer than {max_line_bytes} bytes"))
            yield "\n"
            continue
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            rejected.lines.append((number, f"row: not UTF-8 (byte {exc.start} of the line)"))
            yield "\n"


def _text_lines(source: Source, max_line_bytes: int, rejected: _Rejected) -> Iterator[str]:
    """Lines of text with the BOM removed; bytes are read line by line (never decoded whole)."""
    if isinstance(source, bytes):
        yield from _binary_lines(io.BytesIO(source), max_line_bytes, rejected)
        return
    if isinstance(source, str):
        yield from io.StringIO(source.removeprefix(BOM), newline="")
        return
    if hasattr(source, "readline"):
        yield from _binary_lines(source, max_line_bytes, rejected)  # type: ignore[arg-type]
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
    source: Source, model: type[RowT], *,
    stamp: dict[str, Any] | None = None, validate_email: bool = True,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[Located[RowT] | RowError]:
    """Yield each data row as parsed (``Located``) or rejected (``RowError``), in file order.

    A binary source (bytes or a file opened "rb") is read one line at a time: a line longer than
    ``max_line_bytes``, a line that is not UTF-8, or a cell over the csv module's field limit is a
    bad row with its line number, and reading goes on. Raises :class:`CsvHeaderError` before any
    row if the header is unreadable or lacks required columns.
    """
    rejected = _Rejected()
    reader = csv.reader(_text_lines(source, max_line_bytes, rejected), strict=False)
    header: list[str] | None = None
    context = {"validate_email": validate_email}
    stamped = set(stamp or {})
    while True:
        error: str | None = None
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            cells, error = [], f"row: {exc}"
        # Lines the reader skipped for us came before this row.
        while rejected.lines:
            number, message = rejected.lines.pop(0)
            if header is None:
                raise CsvHeaderError(f"line {number}: unreadable header ({message.removeprefix('row: ')})")
            yield RowError(number, message, "")
        if error is not None:
            if header is None:
                raise CsvHeaderError(f"line {reader.line_num}: unreadable header ({error.removeprefix('row: ')})")
            yield RowError(reader.line_num, error, "")
            continue
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
    while rejected.lines:
        number, message = rejected.lines.pop(0)
        if header is None:
            raise CsvHeaderError(f"line {number}: unreadable header ({message.removeprefix('row: ')})")
        yield RowError(number, message, "")
    if header is None:
        raise CsvHeaderError("empty file: no header line")


def parse_report_csv(
    source: Source, model: type[RowT], *,
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
    source: Source, *, entry_id: str, validate_email: bool = True,
) -> ParseResult[EngagementCsvRow]:
    """Report 4021 "User Reactions" CSV of one session."""
    return parse_report_csv(source, EngagementCsvRow, stamp={"entry_id": entry_id},
                            validate_email=validate_email)


def parse_poll_answers_csv(
    source: Source, *, validate_email: bool = True,
) -> ParseResult[PollAnswerRow]:
    """Poll answers CSV in OUR ASSUMED ``pollsActivity`` layout (see models.PollAnswerRow)."""
    return parse_report_csv(source, PollAnswerRow, validate_email=validate_email)
