"""Parsing ``KalturaReportTable`` strings (``report.getTable``, docs/reference/kaltura-api.md §3.3).

``header`` is the column names joined by the response delimiter; ``data`` is rows joined by ``;``
with a trailing ``;``, cells joined by the delimiter, no escaping (Kaltura replaces a delimiter or
``;`` inside a value by a space). Rows are mapped by header name - the real column order is
UNCONFIRMED (§7.1) - and a row with the wrong number of cells is reported, not guessed at.
"""

from __future__ import annotations

from typing import Any

from kmsync_kaltura.errors import KalturaResponseError
from kmsync_kaltura.models import EngagementRow, required_columns
from kmsync_kaltura.rows import Located, ParseResult, RowError, RowT, build_row


def split_table(header: str, data: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    """Header names and rows of cells; the trailing ``;`` (and empty rows) are dropped."""
    if not delimiter or delimiter == ";":
        raise ValueError("the report delimiter must be a non-empty string other than ';'")
    columns = [c.strip() for c in header.split(delimiter)] if header else []
    rows = [chunk.split(delimiter) for chunk in data.split(";") if chunk != ""]
    return columns, rows


def parse_table(
    model: type[RowT], header: str, data: str, delimiter: str, *, first_row_number: int = 1,
    stamp: dict[str, Any] | None = None, validate_email: bool = True,
) -> ParseResult[RowT]:
    columns, rows = split_table(header, data, delimiter)
    if rows:
        missing = [c for c in required_columns(model) if c not in columns]  # type: ignore[arg-type]
        if missing:
            raise KalturaResponseError(f"report header lacks columns {missing}: {header!r}")
    result: ParseResult[RowT] = ParseResult()
    context = {"validate_email": validate_email}
    for offset, cells in enumerate(rows):
        line = first_row_number + offset
        outcome = build_row(model, columns, cells, line=line, raw=delimiter.join(cells), stamp=stamp,
                            context=context)
        if isinstance(outcome, RowError):
            result.errors.append(outcome)
        else:
            result.rows.append(outcome)
    return result


def parse_engagement_table(
    header: str, data: str, delimiter: str, *, entry_id: str, first_row_number: int = 1,
    validate_email: bool = True,
) -> ParseResult[EngagementRow]:
    """Rows of report 60013 for one session, stamped with its ``entry_id``."""
    return parse_table(EngagementRow, header, data, delimiter, first_row_number=first_row_number,
                       stamp={"entry_id": entry_id}, validate_email=validate_email)


__all__ = ["Located", "parse_engagement_table", "parse_table", "split_table"]
