"""File mode: a Kaltura report CSV (upload or `kmsync backfill FILE`) into the topics.

Good rows are produced; bad rows are reported with their line numbers and dead-lettered to
ingest.dlq.v1 with the row's text, so they can be fixed and loaded again. Returns only after Kafka
acknowledged everything; if Kafka fails part-way, KafkaUnavailable is raised and the caller
reports failure (rows of earlier chunks may already be stored: loading the file again is safe
for downstream upserts, docs/reference/kaltura-api.md §7.3 files carry no change time to de-duplicate on).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kmsync_common.clock import Clock, SystemClock
from kmsync_config import TenantsConfig
from kmsync_contracts import DeadLetter, KalturaRecord
from kmsync_contracts.codecs import describe_validation_error
from kmsync_contracts.reasons import ReasonCode
from kmsync_ingest.errors import BadInput
from kmsync_ingest.mapping import RecordContext, engagement_from_csv, engagement_from_table, poll_response
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.poll_order import PollOrder, poll_positions
from kmsync_ingest.publisher import Publisher, stream_of
from kmsync_kaltura.csv_reports import iter_report_csv, report_from_filename
from kmsync_kaltura.errors import CsvHeaderError
from kmsync_kaltura.models import EngagementCsvRow, EngagementRow, PollAnswerRow
from kmsync_kaltura.rows import Located, RowError

Layout = Literal["engagement_4021", "engagement_60013", "poll_answers"]
#: Kaltura report ids ingest reads from files (docs/reference/kaltura-api.md §3.4, §3.5).
REPORT_LAYOUTS: dict[int, Layout] = {4021: "engagement_4021", 60013: "engagement_60013"}
#: Header columns that identify a layout when neither the report id nor the file name says it.
HEADER_SIGNATURES: tuple[tuple[Layout, frozenset[str]], ...] = (
    ("poll_answers", frozenset({"poll_id", "answer", "user_id"})),
    ("engagement_4021", frozenset({"email", "clap_clicked_count", "answered_polls"})),
    ("engagement_60013", frozenset({"email", "live_view_time", "count_poll_answered"})),
)
MAX_REPORTED_BAD_ROWS = 1000
#: A dead letter keeps at most this much of a bad row's text (a Kafka record is ~1 MB at most).
MAX_DEAD_LETTER_ROW_CHARS = 4096
MAX_FILENAME_CHARS = 200
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class FileParams(BaseModel):
    """What a file upload or backfill must say about the file (query parameters / CLI options)."""

    model_config = ConfigDict(extra="forbid")

    partner_id: int | None = Field(default=None, gt=0)
    virtual_event_id: int | None = Field(default=None, gt=0)
    #: The session, for reports without an entry_id column (4021, 60013 exported per session).
    entry_id: str | None = Field(default=None, min_length=1)
    #: Kaltura report id (4021, 60013); detected from the file name or the header if absent.
    report_id: int | None = Field(default=None, gt=0)
    filename: str | None = None
    #: When Kaltura produced the export (defaults to now).
    exported_at: datetime | None = None
    #: False for figures taken while a session was still running.
    final: bool = True
    #: A history load (`kmsync backfill` sets it; an upload says ``history=true``): its records travel in
    #: the backfill lane, which the sink serves after live data on a capped budget (architecture.md principle 10).
    history: bool = False


def safe_filename(name: str | None) -> str | None:
    """The last path component of a client-given file name, without control characters, bounded."""
    if not name:
        return None
    base = re.split(r"[\\/]", name)[-1]
    base = _UNSAFE_NAME_CHARS.sub("", base).strip()[:MAX_FILENAME_CHARS]
    return None if base in ("", ".", "..") else base


def parse_params(raw: dict[str, Any]) -> FileParams:
    raw = dict(raw)
    if isinstance(raw.get("filename"), str):
        raw["filename"] = safe_filename(raw["filename"])
    try:
        return FileParams.model_validate(raw)
    except ValidationError as exc:
        raise BadInput(400, "invalid parameters", describe_validation_error(exc)) from None


@dataclass
class FileReport:
    filename: str
    layout: str
    rows: int = 0
    produced: int = 0
    bad_rows: list[tuple[int, list[str]]] = field(default_factory=list)
    bad_count: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "file": self.filename, "layout": self.layout, "rows": self.rows, "produced": self.produced,
            "bad": self.bad_count,
            "bad_rows": [{"line": line, "problems": problems} for line, problems in self.bad_rows],
        }


def resolve_context(
    params: FileParams, tenants: TenantsConfig, now: datetime
) -> tuple[RecordContext, int | None]:
    """Partner, event and session from the parameters, the file name and the tenants file."""
    problems: list[str] = []
    from_name = report_from_filename(params.filename) if params.filename else None
    report_id = params.report_id or (from_name.report_id if from_name else None)
    partner_id = params.partner_id or (from_name.partner_id if from_name else None)
    if partner_id is None and len({e.partner_id for e in tenants.events}) == 1:
        partner_id = tenants.events[0].partner_id
    candidates = [e for e in tenants.events if partner_id is None or e.partner_id == partner_id]
    if params.virtual_event_id is not None:
        candidates = [e for e in candidates if e.virtual_event_id == params.virtual_event_id]
    if partner_id is None:
        problems.append("partner_id: required (not in the file name Report_<id>_<partnerId>_...csv)")
    if not candidates:
        problems.append(
            f"virtual_event_id: no configured event matches partner {partner_id} / event "
            f"{params.virtual_event_id}; add it to the tenants file"
        )
    elif len(candidates) > 1:
        problems.append("virtual_event_id: required, the partner has several configured events")
    if problems:
        raise BadInput(400, "cannot tell which event the file belongs to", problems)
    event = candidates[0]
    session = next((s for s in event.sessions if s.entry_id == params.entry_id), None)
    ctx = RecordContext(
        partner_id=event.partner_id, virtual_event_id=event.virtual_event_id, source="file",
        source_time=params.exported_at or now, ingested_at=now,
        entry_name=session.name if session else None, channel_id=session.channel_id if session else None,
        channel_name=session.channel_name if session else None, is_final=params.final,
        lane="backfill" if params.history else "live",
    )
    return ctx, report_id


def detect_layout(head: bytes, report_id: int | None) -> Layout:
    if report_id is not None:
        if report_id not in REPORT_LAYOUTS:
            known = ", ".join(str(i) for i in sorted(REPORT_LAYOUTS))
            raise BadInput(422, "unsupported report", [
                f"report_id: {report_id} is not a report ingest reads (known: {known}; poll answers "
                "files need no report id)"])
        return REPORT_LAYOUTS[report_id]
    try:
        text = head[:65536].decode("utf-8-sig", errors="replace")
    except UnicodeDecodeError:  # pragma: no cover - errors="replace" never raises
        text = ""
    first = next((line for line in text.splitlines() if line.strip()), "")
    columns = {c.strip().strip('"') for c in first.split(",")}
    for layout, needed in HEADER_SIGNATURES:
        if needed <= columns:
            return layout
    raise BadInput(422, "unrecognised report file", [
        "header: not a layout ingest reads (report 4021, report 60013 or poll answers); got "
        + ", ".join(sorted(columns)[:12])])


def _rows(
    source: BinaryIO, layout: Layout, entry_id: str | None, max_line_bytes: int
) -> Iterator[Located[Any] | RowError]:
    if layout == "poll_answers":
        return iter_report_csv(source, PollAnswerRow, max_line_bytes=max_line_bytes)
    if entry_id is None:
        raise BadInput(400, "which session?", [
            "entry_id: required, this report has no entry_id column (name the session it was exported for)"])
    model = EngagementCsvRow if layout == "engagement_4021" else EngagementRow
    return iter_report_csv(source, model, stamp={"entry_id": entry_id}, max_line_bytes=max_line_bytes)


def _record(layout: Layout, row: Any, ctx: RecordContext, ref: str,
            positions: dict[tuple[str, str], int] | None = None) -> KalturaRecord:
    record: KalturaRecord
    if layout == "poll_answers":
        record = poll_response(row, ctx, ref)
        position = (positions or {}).get((row.entry_id, row.poll_id))
        if position is not None:
            record = record.model_copy(update={"poll_position": position})
    elif layout == "engagement_4021":
        record = engagement_from_csv(row, ctx, ref)
    else:
        record = engagement_from_table(row, ctx, ref)
    return record if ctx.lane == "live" else record.model_copy(update={"lane": ctx.lane})


async def ingest_file(
    data: bytes | BinaryIO,
    params: FileParams,
    tenants: TenantsConfig,
    publisher: Publisher,
    metrics: IngestMetrics,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 500,
    max_line_bytes: int = 65_536,
    clock: Clock | None = None,
    poll_order: PollOrder = "first_answer",
    before_chunk: Callable[[], Awaitable[None]] | None = None,
) -> FileReport:
    """Check the header, then produce good rows and dead-letter bad ones, chunk by chunk (each after
    ``before_chunk``, a history load's pacing, backfill_pace.py).

    ``data`` is the file's bytes or a binary file (a spooled upload, a backfill file) positioned at
    its start; a file is read a line at a time, so memory holds one chunk of rows, not the file."""
    source: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else data
    clock = clock or SystemClock()
    ctx, report_id = resolve_context(params, tenants, clock.now())
    start = source.tell()
    layout = detect_layout(source.read(65536), report_id)
    source.seek(start)
    name = params.filename or "upload.csv"
    report = FileReport(name, layout)
    try:
        positions = _file_positions(source, layout, max_line_bytes, poll_order)
        rows = _rows(source, layout, params.entry_id, max_line_bytes)
        for chunk in _chunks(rows, chunk_size):
            if before_chunk is not None:
                await before_chunk()
            await _load_chunk(chunk, layout, ctx, name, report, publisher, metrics, clock.now(), positions)
            if progress is not None:
                progress(len(chunk))
    except CsvHeaderError as exc:
        raise BadInput(422, "unreadable report file", [f"header: {exc}"]) from None
    except UnicodeDecodeError as exc:
        raise BadInput(422, "unreadable report file", [f"file: not UTF-8 (byte {exc.start})"]) from None
    return report


async def _load_chunk(
    chunk: list[Located[Any] | RowError], layout: Layout, ctx: RecordContext, name: str,
    report: FileReport, publisher: Publisher, metrics: IngestMetrics, now: datetime,
    positions: dict[tuple[str, str], int] | None = None,
) -> None:
    records: list[KalturaRecord] = []
    letters: list[DeadLetter] = []
    for outcome in chunk:
        report.rows += 1
        problems: list[str] = []
        if isinstance(outcome, RowError):
            problems, raw = row_problems(outcome.message), outcome.raw[:MAX_DEAD_LETTER_ROW_CHARS]
        else:
            try:
                records.append(_record(layout, outcome.row, ctx, f"file:{name}:line {outcome.line}", positions))
                continue
            except ValidationError as exc:
                problems = describe_validation_error(exc)
                raw = outcome.row.model_dump_json()[:MAX_DEAD_LETTER_ROW_CHARS]
        report.bad_count += 1
        if len(report.bad_rows) < MAX_REPORTED_BAD_ROWS:
            report.bad_rows.append((outcome.line, problems))
        letters.append(DeadLetter(
            stage="ingest", reason_code=ReasonCode.BAD_ROW.value,
            reason=f"{name} line {outcome.line}: " + "; ".join(problems),
            source_key=f"{ctx.partner_id}:{ctx.virtual_event_id}:{name}:{outcome.line}",
            payload={"file": name, "line": outcome.line, "row": raw, "problems": problems},
            failed_at=now,
        ))
    for stream, n in Counter(stream_of(record) for record in records).items():
        metrics.records_in.labels(stream, "file").inc(n)
    if records:
        await publisher.publish(records)
    if letters:
        await publisher.dead_letter(letters)
        metrics.bad_rows.labels("file").inc(len(letters))
    report.produced += len(records)


def _file_positions(source: BinaryIO, layout: Layout, max_line_bytes: int, order: PollOrder
                    ) -> dict[tuple[str, str], int] | None:
    """A poll answers file's poll positions per session, computed over the whole file as a pull's are
    (docs/reference/kaltura-api.md §11): one pass more over the file, which is then read again from
    where it started. None for other layouts."""
    if layout != "poll_answers":
        return None
    start = source.tell()
    rows = iter_report_csv(source, PollAnswerRow, max_line_bytes=max_line_bytes)
    positions = poll_positions(((r.row.entry_id, r.row.poll_id, r.row.answered_at)
                                for r in rows if isinstance(r, Located)), order)
    source.seek(start)
    return positions


_FIELD_PREFIX = re.compile(r"^[\w.\[\]]+: ")


def row_problems(message: str) -> list[str]:
    """kmsync_kaltura's "field: msg; field: msg" as one problem per field; row-level ones say "row:"."""
    parts = [p.strip() for p in message.split("; ") if p.strip()]
    return [p if _FIELD_PREFIX.match(p) else f"row: {p}" for p in parts] or ["row: unreadable"]


def _chunks(rows: Iterator[Located[Any] | RowError], size: int) -> Iterator[list[Located[Any] | RowError]]:
    while chunk := list(islice(rows, size)):
        yield chunk
