"""Bulk import for leads, custom objects and program members (docs/reference/marketo-api.md §9).

Jobs move Queued → Importing → Complete/Failed on the sandbox clock: ``tick(inst, now)`` replays the
queue (≤ ``import_running`` at once, first in first out) up to ``now``. Rows are applied when a job
completes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from .api_leads import upsert_lead_by
from .api_programs import apply_status
from .call import Call, Reply
from .envelope import MarketoError
from .fields import InvalidValue, coerce
from .instance import Instance
from .model import ImportJob, Lead

DELIMITERS = {"csv": ",", "tsv": "\t", "ssv": ";"}
ACTIVE = ("Queued", "Importing")
BATCH_TTL_SECONDS = 7 * 24 * 3600  # batchId valid 7 days (§9.1)


def _format(call: Call) -> str:
    fmt = (call.arg("format") or "csv").lower()  # query or multipart field, any case (§9.1)
    if fmt not in DELIMITERS:
        raise MarketoError("1003", f"Invalid format '{fmt}'")
    return DELIMITERS[fmt]


def _parse(call: Call, delimiter: str) -> tuple[list[str], list[list[str]]]:
    upload = call.files.get("file")
    if upload is None:
        raise MarketoError("613", "Invalid Multipart Request")
    text = upload.content.decode("utf-8-sig", errors="replace")
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in r)]
    except csv.Error as e:
        raise MarketoError("1003", f"Invalid file: {e}") from None
    if not rows:
        raise MarketoError("1003", "Empty File")
    return rows[0], rows[1:]


def _enqueue(call: Call, kind: str, header: list[str], rows: list[list[str]], delimiter: str,
             params: dict[str, Any]) -> ImportJob:
    inst = call.inst
    tick(inst, call.now)
    active = [j for j in inst.jobs.values() if j.status in ACTIVE]
    if len(active) >= inst.limits.import_queued:  # 10 queued including the running ones → 1016
        raise MarketoError("1016", "Too many imports")
    job = ImportJob(batch_id=inst.next_id("batch"), kind=kind, created=call.now, header=header, rows=rows,
                    delimiter=delimiter, params=params, client_id=call.client_id)
    inst.jobs[job.batch_id] = job
    return job


def import_leads(call: Call) -> dict[str, Any]:
    """POST /bulk/v1/leads.json"""
    delimiter = _format(call)
    lookup = call.arg("lookupField") or "email"
    f = call.inst.lead_fields.get(lookup)
    if f is None or not f.searchable:
        raise MarketoError("1006", f"Lookup field '{lookup}' not found")
    header, rows = _parse(call, delimiter)
    job = _enqueue(call, "leads", header, rows, delimiter,
                   {"lookupField": lookup, "listId": call.arg("listId"), "partitionName": call.arg("partitionName")})
    return {"result": [{"batchId": job.batch_id, "importId": str(job.batch_id), "status": job.status}]}


def import_custom_objects(call: Call) -> dict[str, Any]:
    """POST /bulk/v1/customobjects/{apiName}/import.json"""
    api_name = call.params["apiName"]
    co = call.inst.co_types.get(api_name)
    if co is None or co.approved is None:
        raise MarketoError("1013", f"Custom object '{api_name}' not found")
    delimiter = _format(call)
    header, rows = _parse(call, delimiter)
    job = _enqueue(call, "customobjects", header, rows, delimiter, {"apiName": api_name})
    return {"result": [{"batchId": job.batch_id, "status": job.status, "objectApiName": api_name}]}


def import_program_members(call: Call) -> dict[str, Any]:
    """POST /bulk/v1/program/{programId}/members/import.json?programMemberStatus="""
    inst = call.inst
    program_id = call.int_param("programId")
    program = inst.programs.get(program_id)
    if program is None:
        raise MarketoError("1013", f"Program '{program_id}' not found")
    status = call.arg("programMemberStatus")
    if not status:
        raise MarketoError("701", "programMemberStatus cannot be blank")
    ch = inst.channel_for(program)
    if ch is None or ch.status(status) is None:
        raise MarketoError("1025", "Program status not found")  # level UNCONFIRMED (§9.2)
    delimiter = _format(call)
    header, rows = _parse(call, delimiter)
    job = _enqueue(call, "programmembers", header, rows, delimiter,
                   {"programId": program_id, "programMemberStatus": status})
    return {"result": [{"batchId": job.batch_id, "importId": str(job.batch_id), "status": job.status}]}


# ---- the queue ---------------------------------------------------------------------------------


def _duration(inst: Instance, job: ImportJob) -> float:
    lim = inst.limits
    return float(lim.import_seconds_base + lim.import_seconds_per_row * len(job.rows))


def tick(inst: Instance, now: float) -> None:
    """Advance every job to where it would be at ``now``."""
    last_free = 0.0
    while True:
        progressed = False
        running = sorted((j for j in inst.jobs.values() if j.status == "Importing"),
                         key=lambda j: (j.started or 0) + _duration(inst, j))
        for j in running:
            end = (j.started or 0) + _duration(inst, j)
            if end <= now:
                _complete(inst, j, end)
                last_free = max(last_free, end)
                progressed = True
        running = [j for j in inst.jobs.values() if j.status == "Importing"]
        queued = sorted((j for j in inst.jobs.values() if j.status == "Queued"), key=lambda j: j.batch_id)
        while len(running) < inst.limits.import_running and queued:
            j = queued.pop(0)
            start = max(j.created + inst.limits.import_queue_seconds, last_free)
            if start > now:
                break
            j.status = "Importing"
            j.started = start
            running.append(j)
            progressed = True
        if not progressed:
            return


def _complete(inst: Instance, job: ImportJob, at: float) -> None:
    job.finished = at
    try:
        if job.kind == "leads":
            _apply_leads(inst, job, at)
        elif job.kind == "customobjects":
            _apply_cos(inst, job, at)
        else:
            _apply_members(inst, job, at)
    except _JobFailed as e:
        job.status = "Failed"
        job.message = str(e)
        return
    job.status = "Complete"
    n, f, w = job.processed, len(job.failed_rows), len(job.warning_rows)
    if f:
        job.message = f"Import completed with errors, {n} records imported ({n} members), {f} failed"
    elif w:
        job.message = f"Import succeeded, {n} records imported ({n} members), {w} warning."
    else:
        job.message = f"Import succeeded, {n} records imported ({n} members)"


class _JobFailed(Exception):
    pass


def _rows(job: ImportJob) -> list[tuple[list[str], dict[str, str] | None]]:
    out: list[tuple[list[str], dict[str, str] | None]] = []
    for row in job.rows:
        if len(row) != len(job.header):
            out.append((row, None))
        else:
            out.append((row, dict(zip(job.header, row, strict=True))))
    return out


def _lead_values(inst: Instance, rec: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for k, raw in rec.items():
        f = inst.lead_fields[k]
        if f.read_only and k != "id":
            continue
        values[k] = coerce(raw, f.data_type) if k != "id" else (int(raw) if raw.strip() else None)
    return values


def _check_lead_header(inst: Instance, header: list[str]) -> None:
    for col in header:
        if col not in inst.lead_fields:
            raise _JobFailed(f"Field '{col}' not found")


def _upserted_lead_rows(
    inst: Instance, job: ImportJob, lookup: str, now: float
) -> Iterator[tuple[list[str], Lead, dict[str, Any]]]:
    """Upsert each row's lead by ``lookup``; yield (row, lead, values) for those that took and record
    the others (wrong column count, bad value, no lookup value) as the job's failed rows."""
    for row, rec in _rows(job):
        if rec is None:
            job.failed_rows.append((row, "Invalid number of columns"))
            continue
        try:
            values = _lead_values(inst, rec)
        except (InvalidValue, ValueError) as e:
            job.failed_rows.append((row, str(e)))
            continue
        lead, why = upsert_lead_by(inst, lookup, values, now)
        if lead is None:
            job.failed_rows.append((row, why))
            continue
        yield row, lead, values


def _apply_leads(inst: Instance, job: ImportJob, now: float) -> None:
    _check_lead_header(inst, job.header)
    for row, _lead, values in _upserted_lead_rows(inst, job, job.params["lookupField"], now):
        job.processed += 1
        email = values.get("email")
        if email and "@" not in str(email):
            job.warning_rows.append((row, "Invalid email address"))


def _apply_cos(inst: Instance, job: ImportJob, now: float) -> None:
    from .api_customobjects import upsert_object

    co = inst.co_types.get(job.params["apiName"])
    if co is None or co.approved is None:
        raise _JobFailed("Custom object not found")
    for row, rec in _rows(job):
        if rec is None:
            job.failed_rows.append((row, "Invalid number of columns"))
            continue
        clean = {k: (v if v != "" else None) for k, v in rec.items()}
        missing = [d for d in co.approved.dedupe_fields if clean.get(d) in (None, "")]
        if missing:
            job.failed_rows.append((row, "missing.dedupe.fields"))  # §9.2 example
            continue
        why = upsert_object(inst, co, co.approved, clean, now)
        if why:
            job.failed_rows.append((row, why))
        else:
            job.processed += 1


def _apply_members(inst: Instance, job: ImportJob, now: float) -> None:
    _check_lead_header(inst, job.header)
    program = inst.programs[job.params["programId"]]
    status = job.params["programMemberStatus"]
    for row, lead, _values in _upserted_lead_rows(inst, job, "email", now):  # email is the dedupe key (§9.2)
        outcome = apply_status(inst, program, lead.id, status, now)
        job.processed += 1
        if outcome is None:
            job.warning_rows.append((row, "Lead skipped because it is already in or past this status"))


# ---- status and files --------------------------------------------------------------------------


def _job(call: Call, kind: str) -> ImportJob:
    inst = call.inst
    tick(inst, call.now)
    batch_id = call.int_param("batchId")
    job = inst.jobs.get(batch_id)
    if job is None or job.kind != kind or call.now - job.created > BATCH_TTL_SECONDS:
        raise MarketoError("1003", f"Invalid batch id '{batch_id}'")  # exact answer UNCONFIRMED (§9.1)
    if kind == "customobjects" and job.params.get("apiName") != call.params.get("apiName"):
        raise MarketoError("1003", f"Invalid batch id '{batch_id}'")
    return job


def _progress_message(job: ImportJob) -> str:
    if job.status == "Queued":
        return "Import queued"
    if job.status == "Importing":
        return "Import in progress"
    return job.message


def job_status_json(job: ImportJob) -> dict[str, Any]:
    if job.kind == "customobjects":
        out: dict[str, Any] = {"batchId": job.batch_id, "operation": "import", "status": job.status,
                               "objectApiName": job.params["apiName"], "numOfObjectsProcessed": job.processed,
                               "numOfRowsFailed": len(job.failed_rows),
                               "numOfRowsWithWarning": len(job.warning_rows)}
        if job.finished is not None and job.started is not None:
            out["importTime"] = f"{round(job.finished - job.started)} second(s)"
        out["message"] = _progress_message(job)
        return out
    return {"batchId": job.batch_id, "importId": str(job.batch_id), "status": job.status,
            "numOfLeadsProcessed": job.processed, "numOfRowsFailed": len(job.failed_rows),
            "numOfRowsWithWarning": len(job.warning_rows), "message": _progress_message(job)}


def status_leads(call: Call) -> dict[str, Any]:
    return {"result": [job_status_json(_job(call, "leads"))]}


def status_custom_objects(call: Call) -> dict[str, Any]:
    return {"result": [job_status_json(_job(call, "customobjects"))]}


def status_program_members(call: Call) -> dict[str, Any]:
    return {"result": [job_status_json(_job(call, "programmembers"))]}


def _file(job: ImportJob, which: str) -> Reply:
    rows = job.failed_rows if which == "failures" else job.warning_rows
    if job.status not in ("Complete", "Failed") or not rows:
        return Reply(body="", status=404, content_type="text/plain", code="404")  # §9.1: 404 when no file
    col = "Import Failure Reason" if which == "failures" else "Import Warning Reason"
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=job.delimiter, lineterminator="\n")
    w.writerow([*job.header, col])
    for row, why in rows:
        w.writerow([*row, why])
    return Reply(body=buf.getvalue(), status=200, content_type="text/csv", code="200")


def failures_leads(call: Call) -> Reply:
    return _file(_job(call, "leads"), "failures")


def warnings_leads(call: Call) -> Reply:
    return _file(_job(call, "leads"), "warnings")


def failures_custom_objects(call: Call) -> Reply:
    return _file(_job(call, "customobjects"), "failures")


def warnings_custom_objects(call: Call) -> Reply:
    return _file(_job(call, "customobjects"), "warnings")


def failures_program_members(call: Call) -> Reply:
    return _file(_job(call, "programmembers"), "failures")


def warnings_program_members(call: Call) -> Reply:
    return _file(_job(call, "programmembers"), "warnings")
