"""File mode: Kaltura report CSVs (BOM, header) by HTTP upload and `kmsync backfill FILE`: good rows
go through, bad rows come back with their line numbers and are dead-lettered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml

from kaltura_sandbox.testing import RunningSandbox, running_sandbox
from kmsync_contracts import DeadLetter, PollResponse, SessionEngagement
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import INGEST_DLQ, POLL_RESPONSES, SESSION_ENGAGEMENT
from kmsync_ingest.backfill_cli import main as backfill_main
from kmsync_testing.ingest import metric, running_ingest, settings_for, tenants_document, tenants_for, upload_headers
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic

SCENARIO = {"registrants": 150, "sessions": 2, "malformed_engagement_rows": 5, "malformed_poll_rows": 3}


def bad_lines(csv: bytes, sb: RunningSandbox, entry_id: str, kind: str) -> set[int]:
    """Line numbers (header = 1) of the rows the scenario damaged on purpose."""
    truth = sb.truth()
    if kind == "engagement":
        damaged = {((e["email"] or "").lower(),) for e in truth["engagement"]
                   if e["entry_id"] == entry_id and e["defect"] is not None}
        keys = (0,)
    else:
        damaged = {(a["poll_id"].lower(), a["user_id"].lower()) for a in truth["poll_answers"]
                   if a["entry_id"] == entry_id and a["defect"] is not None}
        keys = (1, 4)
    lines = csv.decode("utf-8-sig").splitlines()
    out = set()
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) > max(keys) and tuple(cells[k].lower() for k in keys) in damaged:
            out.add(number)
    return out


async def test_report_uploads_load_good_rows_and_report_bad_lines(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with running_sandbox(SCENARIO, seed=21) as sb:
        sb.advance_to_end()
        entry = sb.session_entry_ids[0]
        exported = await http.get(f"{sb.base_url}/_sandbox/exports/engagement/{entry}.csv")
        polls = await http.get(f"{sb.base_url}/_sandbox/exports/polls/{entry}.csv")
        assert exported.content.startswith("\ufeff".encode())
        expected_bad = bad_lines(exported.content, sb, entry, "engagement")
        expected_bad_polls = bad_lines(polls.content, sb, entry, "polls")
        assert expected_bad and expected_bad_polls
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None)
        async with running_ingest(settings, tenants_for(sb, tmp_path), None) as ingest:
            url = f"{ingest.base_url}/ingest/kaltura/reports"
            # Multipart with Kaltura's file name: report id and partner come from the name.
            name = f"Report_4021_{sb.partner_id}_{entry}.csv"
            answer = await http.post(url, params={"entry_id": entry}, headers=upload_headers(None),
                                     files={"file": (name, exported.content, "text/csv")})
            assert answer.status_code == 200, answer.text
            report = answer.json()
            rows = len(exported.content.decode("utf-8-sig").splitlines()) - 1
            assert report["layout"] == "engagement_4021" and report["rows"] == rows
            assert {b["line"] for b in report["bad_rows"]} == expected_bad
            assert report["produced"] == rows - len(expected_bad)
            assert all(":" in p for b in report["bad_rows"] for p in b["problems"])

            # A raw poll answers CSV: the layout is recognised from its header. Marked as history: its
            # rows travel in the backfill lane (issue #18).
            answer = await http.post(url, params={"history": "true"}, content=polls.content, headers=upload_headers())
            assert answer.status_code == 200, answer.text
            assert answer.json()["layout"] == "poll_answers"
            assert {b["line"] for b in answer.json()["bad_rows"]} == expected_bad_polls
            assert metric(ingest.service, "kmsync_ingest_bad_rows_total", mode="file") == \
                len(expected_bad) + len(expected_bad_polls)

            # Unusable files and parameters: 4xx naming the field.
            answer = await http.post(url, content=b"\xef\xbb\xbfname,colour\nx,y\n", headers=upload_headers())
            assert answer.status_code == 422 and answer.json()["problems"][0].startswith("header:")
            answer = await http.post(url, params={"report_id": "4021"}, content=exported.content, headers=upload_headers())
            assert answer.status_code == 400 and answer.json()["problems"][0].startswith("entry_id:")
            answer = await http.post(url, params={"virtual_event_id": "abc"}, content=exported.content, headers=upload_headers())
            assert answer.status_code == 400 and answer.json()["problems"][0].startswith("virtual_event_id:")
            answer = await http.post(url, params={"report_id": "9999"}, content=exported.content, headers=upload_headers())
            assert answer.status_code == 422 and answer.json()["problems"][0].startswith("report_id:")

    engagement = [v for _, v in await read_topic(kafka_broker.bootstrap, SESSION_ENGAGEMENT, topic_prefix)]
    assert len(engagement) == rows - len(expected_bad)
    assert all(isinstance(e, SessionEngagement) and e.source == "file" and e.entry_id == entry
               and e.lane == "live" for e in engagement)
    answers = [v for _, v in await read_topic(kafka_broker.bootstrap, POLL_RESPONSES, topic_prefix)]
    assert answers and all(isinstance(a, PollResponse) and a.lane == "backfill" for a in answers)
    dlq = [v for _, v in await read_topic(kafka_broker.bootstrap, INGEST_DLQ, topic_prefix)]
    assert all(isinstance(d, DeadLetter) and d.stage == "ingest" and d.reason_code == ReasonCode.BAD_ROW for d in dlq)
    assert {d.payload["line"] for d in dlq if d.payload["file"] == name} == expected_bad  # type: ignore[index]


async def test_backfill_cli_loads_a_file_with_progress_and_line_numbers(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_sandbox(SCENARIO, seed=22) as sb:
        sb.advance_to_end()
        entry = sb.session_entry_ids[1]
        exported = (await http.get(f"{sb.base_url}/_sandbox/exports/engagement/{entry}.csv")).content
        expected_bad = bad_lines(exported, sb, entry, "engagement")
        tenants_file = tmp_path / "tenants.yaml"
        tenants_file.write_text(yaml.safe_dump(tenants_document(sb, tmp_path / "secrets")))
        partner = sb.partner_id
    path = tmp_path / f"Report_4021_{partner}_{entry}.csv"
    path.write_bytes(exported)
    monkeypatch.setenv("KMSYNC_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.setenv("KMSYNC_TOPIC_PREFIX", topic_prefix)
    code = await asyncio.to_thread(
        backfill_main, [str(path), "--tenants", str(tenants_file), "--entry-id", entry])
    out, err = capsys.readouterr()
    rows = len(exported.decode("utf-8-sig").splitlines()) - 1
    assert code == 1  # loaded, with bad rows
    assert f"{rows} row(s): {rows - len(expected_bad)} loaded, {len(expected_bad)} bad" in out
    assert {int(line.split(":")[1]) for line in err.splitlines() if line.startswith(str(path))} == expected_bad
    assert f"{rows}/{rows}" in err  # the progress bar reached the end
    engagement = await read_topic(kafka_broker.bootstrap, SESSION_ENGAGEMENT, topic_prefix)
    assert len(engagement) == rows - len(expected_bad)
    assert all(v.lane == "backfill" for _, v in engagement)  # a backfill travels in the backfill lane (issue #18)

    missing = await asyncio.to_thread(backfill_main, [str(tmp_path / "nope.csv"), "--tenants", str(tenants_file)])
    assert missing == 2
