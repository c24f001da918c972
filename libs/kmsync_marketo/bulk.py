"""Bulk import of leads, custom objects and program members (docs/reference/marketo-api.md §9).

CSV files are built under the 10 MB limit (split as needed), submitted as multipart, polled with
backoff, and the failures/warnings CSVs are parsed back into one outcome per input record.
At most ``max_outstanding_jobs`` of this process's jobs are queued per instance (Marketo: 10 queued,
2 running); a full queue on Marketo's side (1016) waits and retries in the transport.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo import endpoints as ep
from kmsync_marketo.errors import ErrorClass, MarketoApiError, MarketoHttpError, MarketoProtocolError, failure_of
from kmsync_marketo.outcomes import Outcome, failed_outcome
from kmsync_marketo.settings import BulkSettings, MarketoSettings
from kmsync_marketo.transport import MarketoTransport

log = logging.getLogger(__name__)

FAILURE_COLUMN = "Import Failure Reason"
WARNING_COLUMN = "Import Warning Reason"


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class CsvPart:
    """One file: the header, and the caller's seq for each data row."""

    columns: list[str]
    seqs: list[int]
    rows: list[list[str]]
    text: str = ""

    @property
    def size(self) -> int:
        return len(self.text.encode())


def _line(cells: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def build_csv_parts(
    records: Sequence[Mapping[str, Any]],
    max_bytes: int,
    leading: Sequence[str] = (),
) -> tuple[list[CsvPart], list[Outcome]]:
    """Split ``records`` into CSV files smaller than ``max_bytes``. Columns are the union of the
    records' keys (``leading`` first). A record that cannot fit in any file is failed, not sent."""
    columns: list[str] = list(dict.fromkeys([*leading, *(k for r in records for k in r)]))
    header = _line(columns)
    header_size = len(header.encode())
    parts: list[CsvPart] = []
    rejected: list[Outcome] = []
    current: CsvPart | None = None
    chunks: list[str] = []
    size = 0
    for seq, rec in enumerate(records):
        cells = [csv_cell(rec.get(c)) for c in columns]
        line = _line(cells)
        line_size = len(line.encode())
        if header_size + line_size > max_bytes:
            rejected.append(
                failed_outcome(
                    seq, ReasonCode.ROW_TOO_LARGE, f"row of {line_size} bytes cannot fit a bulk file",
                    ErrorClass.PERMANENT
                )
            )
            continue
        if current is None or size + line_size > max_bytes:
            if current is not None:
                current.text = "".join(chunks)
                parts.append(current)
            current, chunks, size = CsvPart(columns, [], []), [header], header_size
        current.seqs.append(seq)
        current.rows.append(cells)
        chunks.append(line)
        size += line_size
    if current is not None:
        current.text = "".join(chunks)
        parts.append(current)
    return parts, rejected


def parse_result_file(text: str, reason_column: str) -> list[tuple[dict[str, str], str]]:
    """A failures/warnings CSV: the job's header and rows plus a last reason column (§9.1)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return []
    header = [h.strip() for h in header]
    if header and header[-1] == reason_column:
        header = header[:-1]
    rows: list[tuple[dict[str, str], str]] = []
    for cells in reader:
        if not cells:
            continue
        values, reason = cells[: len(header)], (cells[len(header)] if len(cells) > len(header) else "")
        rows.append((dict(zip(header, values, strict=False)), reason))
    return rows


def match_rows(part: CsvPart, file_rows: list[tuple[dict[str, str], str]]) -> tuple[dict[int, str], int]:
    """Map file rows back to the part's seqs by their cell values; returns (seq → reason, unmatched)."""
    index: dict[tuple[str, ...], deque[int]] = defaultdict(deque)
    for seq, cells in zip(part.seqs, part.rows, strict=True):
        index[tuple(cells)].append(seq)
    matched: dict[int, str] = {}
    unmatched = 0
    for values, reason in file_rows:
        key = tuple(values.get(c, "") for c in part.columns)
        bucket = index.get(key)
        if bucket:
            matched[bucket.popleft()] = reason
        else:
            unmatched += 1
    return matched, unmatched


@dataclass(frozen=True)
class ImportTarget:
    name: str
    create_path: str
    params: dict[str, Any]
    status_path: Callable[[int], str]
    failures_path: Callable[[int], str]
    warnings_path: Callable[[int], str]
    leading_columns: tuple[str, ...] = ()


@dataclass
class BulkJob:
    batch_id: int
    status: str
    rows: int
    failed: int = 0
    warnings: int = 0
    message: str = ""


@dataclass
class BulkResult:
    outcomes: list[Outcome]
    jobs: list[BulkJob] = field(default_factory=list)


_OUTSTANDING: dict[tuple[str, int], asyncio.Semaphore] = {}


def _outstanding(instance: str, limit: int) -> asyncio.Semaphore:
    """This process's outstanding jobs on one instance (one cap shared by leads, custom objects and
    program members: Marketo's queue is presumably shared, UNCONFIRMED §2.2)."""
    sem = _OUTSTANDING.get((instance, limit))
    if sem is None:
        sem = _OUTSTANDING[(instance, limit)] = asyncio.Semaphore(limit)
    return sem


class OnTransport(Protocol):
    """What a bulk importer runs on: an instance's settings and transport (MarketoClient has both)."""

    settings: MarketoSettings
    transport: MarketoTransport


class BulkImporter:
    def __init__(self, client: OnTransport, settings: BulkSettings | None = None) -> None:
        self.client = client
        self.settings = settings or client.settings.bulk
        self._queue = _outstanding(client.settings.instance_key, self.settings.max_outstanding_jobs)

    # ----- public operations -----
    async def import_leads(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        lookup_field: str = "email",
        list_id: int | None = None,
        partition_name: str | None = None,
    ) -> BulkResult:
        params: dict[str, Any] = {"format": "csv", "lookupField": lookup_field}
        if list_id is not None:
            params["listId"] = list_id
        if partition_name:
            params["partitionName"] = partition_name
        target = ImportTarget(
            "leads",
            ep.BULK_LEADS_IMPORT,
            params,
            ep.bulk_leads_status,
            ep.bulk_leads_failures,
            ep.bulk_leads_warnings,
            (lookup_field,),
        )
        return await self._run(target, records)

    async def import_custom_objects(
        self, api_name: str, records: Sequence[Mapping[str, Any]], dedupe_fields: Sequence[str] = ()
    ) -> BulkResult:
        target = ImportTarget(
            f"custom object {api_name}",
            ep.bulk_co_import(api_name),
            {"format": "csv"},
            lambda b: ep.bulk_co_status(api_name, b),
            lambda b: ep.bulk_co_failures(api_name, b),
            lambda b: ep.bulk_co_warnings(api_name, b),
            tuple(dedupe_fields),
        )
        return await self._run(target, records)

    async def import_program_members(
        self, program_id: int, status_name: str, records: Sequence[Mapping[str, Any]]
    ) -> BulkResult:
        """Every row needs ``email`` (the dedupe key, §9.1 program member import)."""
        target = ImportTarget(
            f"program {program_id} members",
            ep.bulk_pm_import(program_id),
            {"format": "csv", "programMemberStatus": status_name},
            ep.bulk_pm_status,
            ep.bulk_pm_failures,
            ep.bulk_pm_warnings,
            ("email",),
        )
        return await self._run(target, records)

    # ----- mechanics -----
    async def _run(self, target: ImportTarget, records: Sequence[Mapping[str, Any]]) -> BulkResult:
        parts, rejected = build_csv_parts(records, self.settings.max_file_bytes, target.leading_columns)
        result = BulkResult(outcomes=list(rejected))
        outcomes_by_part = await asyncio.gather(*(self._one_part(target, p, result) for p in parts))
        for outs in outcomes_by_part:
            result.outcomes.extend(outs)
        result.outcomes.sort(key=lambda o: o.seq)
        return result

    async def _one_part(self, target: ImportTarget, part: CsvPart, result: BulkResult) -> list[Outcome]:
        async with self._queue:
            try:
                job = await self._submit(target, part)
                result.jobs.append(job)
                await self._poll(target, job)
                return await self._outcomes(target, part, job)
            except (MarketoApiError, MarketoHttpError, MarketoProtocolError) as exc:
                failure = failure_of(exc)
                return [failed_outcome(s, failure.code, failure.reason, failure.error_class, failure.maybe_applied)
                        for s in part.seqs]

    async def _submit(self, target: ImportTarget, part: CsvPart) -> BulkJob:
        data = part.text.encode()
        if len(data) > ep.BULK_FILE_MAX_BYTES:
            raise MarketoHttpError(413, f"bulk file {len(data)} bytes over {ep.BULK_FILE_MAX_BYTES}; not sent")
        body = await self.client.transport.call(
            "POST",
            target.create_path,
            params=target.params,
            files={"file": ("import.csv", data, "text/csv")},
        )
        first = (body.get("result") or [{}])[0]
        if "batchId" not in first:
            raise MarketoProtocolError(f"bulk import {target.name}: no batchId in the answer")
        log.info("bulk import %s: batch %s queued with %d rows", target.name, first["batchId"], len(part.seqs))
        return BulkJob(batch_id=int(first["batchId"]), status=str(first.get("status", "Queued")), rows=len(part.seqs))

    async def _poll(self, target: ImportTarget, job: BulkJob) -> None:
        s = self.settings
        clock = self.client.transport.clock
        deadline = clock.monotonic() + s.poll_timeout_seconds
        delay = s.poll_initial_seconds
        while job.status not in ("Complete", "Failed"):
            if clock.monotonic() >= deadline:
                raise MarketoProtocolError(f"bulk import {target.name} batch {job.batch_id} still {job.status}")
            await clock.sleep(delay)
            delay = min(s.poll_max_seconds, delay * s.poll_factor)
            body = await self.client.transport.call("GET", target.status_path(job.batch_id))
            st = (body.get("result") or [{}])[0]
            job.status = str(st.get("status", job.status))
            job.failed = int(st.get("numOfRowsFailed") or 0)
            job.warnings = int(st.get("numOfRowsWithWarning") or 0)
            job.message = str(st.get("message") or "")

    async def _outcomes(self, target: ImportTarget, part: CsvPart, job: BulkJob) -> list[Outcome]:
        if job.status == "Failed":
            return [
                failed_outcome(s, ReasonCode.BULK_FAILED, job.message or "bulk job failed", ErrorClass.RETRY_SOON)
                for s in part.seqs
            ]
        failures: dict[int, str] = {}
        warnings: dict[int, str] = {}
        unmatched = 0
        if job.failed:
            text = await self.client.transport.call_text("GET", target.failures_path(job.batch_id))
            failures, lost = match_rows(part, parse_result_file(text or "", FAILURE_COLUMN))
            unmatched += lost + max(0, job.failed - len(failures) - lost)
        if job.warnings:
            text = await self.client.transport.call_text("GET", target.warnings_path(job.batch_id))
            warnings, _ = match_rows(part, parse_result_file(text or "", WARNING_COLUMN))
        outcomes: list[Outcome] = []
        for seq in part.seqs:
            if seq in failures:
                outcomes.append(
                    Outcome(
                        seq=seq,
                        status="failed",
                        reason=failures[seq],
                        classification=ErrorClass.PERMANENT,
                        marketo_status="failed",
                    )
                )
            elif unmatched:
                # Marketo reported failures we could not tie to rows: do not claim success.
                outcomes.append(
                    failed_outcome(
                        seq, ReasonCode.BULK_UNMATCHED, "bulk failure file could not be matched", ErrorClass.RETRY_SOON
                    )
                )
            else:
                outcomes.append(
                    Outcome(seq=seq, status="updated", marketo_status="imported", warning=warnings.get(seq))
                )
        return outcomes
