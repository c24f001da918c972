"""Turning header-named cells into row models, keeping bad rows as errors with their line numbers.

Shared by the report-table parser and the CSV parser: a bad row never stops the good ones, and
every outcome carries the line (CSV: physical line in the file, header = 1; report table: row
number within the whole report, 1-based across pages) so ingest can report it and cite it as the
record's source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

RowT = TypeVar("RowT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Located(Generic[RowT]):
    """A parsed row and where it came from."""

    line: int
    row: RowT


@dataclass(frozen=True, slots=True)
class RowError:
    """A rejected row: its line, a field-level message, and the raw text (for the error report)."""

    line: int
    message: str
    raw: str


@dataclass(slots=True)
class ParseResult(Generic[RowT]):
    rows: list[Located[RowT]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def values(self) -> list[RowT]:
        return [r.row for r in self.rows]


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message; field: message`` - precise enough to fix the source."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "row"
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def build_row(
    model: type[RowT], header: Sequence[str], cells: Sequence[str], *, line: int, raw: str,
    stamp: dict[str, Any] | None = None, context: dict[str, Any] | None = None,
) -> Located[RowT] | RowError:
    """Validate one row by header name; a wrong cell count or a bad value gives a RowError."""
    if len(cells) != len(header):
        return RowError(line, f"expected {len(header)} fields, got {len(cells)}", raw)
    data: dict[str, Any] = dict(zip(header, cells, strict=True))
    if stamp:
        data.update(stamp)
    try:
        return Located(line, model.model_validate(data, context=context))
    except ValidationError as exc:
        return RowError(line, describe_validation_error(exc), raw)
