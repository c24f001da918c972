"""Who may feed ingest and how much: bearer tokens on uploads (signed notifications need none),
415 for what is not CSV, 413 while the body arrives, 503 + Retry-After when every upload slot is
busy; health and metrics stay open."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kaltura_sandbox.testing import RunningSandbox, running_sandbox
from kmsync_contracts.topics import POLL_RESPONSES
from kmsync_kaltura import compute_signature
from kmsync_testing.ingest import TEST_UPLOAD_TOKEN, metric, running_ingest, settings_for, tenants_for, upload_headers
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic
from kmsync_testing.waiting import wait_for

SMALL = {"registrants": 20, "sessions": 1, "late_row_rate": 0.0}
POLLS_HEADER = "\ufeffentry_id,poll_id,poll_type,question,user_id,email,answer,answered_at\n"


def polls_csv(sb: RunningSandbox, users: range) -> bytes:
    entry = sb.session_entry_ids[0]
    rows = "".join(f"{entry},p1,crowd vote,Q?,u{i},u{i}@acme.com,Yes,2025-06-16T14:00:00.000Z\n" for i in users)
    return (POLLS_HEADER + rows).encode()


def fields_notification(sb: RunningSandbox, job: str) -> bytes:
    return f"eventNotificationJobId={job}&partner_id={sb.partner_id}&user_id=u1".encode()


async def test_uploads_need_a_valid_bearer_token_and_signed_notifications_do_not(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two tokens valid at once (a rotation): one from the environment, one from a file of tokens.
    monkeypatch.setenv("INGEST_TOKEN_OLD", "old-token-aaaaaaaaaaaaaaaa")
    (tmp_path / "tokens").write_text("new-token-bbbbbbbbbbbbbbbb\n")
    async with running_sandbox(SMALL, seed=31) as sb:
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, upload_tokens=[
            {"env": "INGEST_TOKEN_OLD"}, {"file": str(tmp_path / "tokens")}])
        async with running_ingest(settings, tenants_for(sb, tmp_path / "s"), None) as ingest:
            body = polls_csv(sb, range(3))
            for headers, reason in (
                ({"Content-Type": "text/csv"}, "Authorization: missing; send 'Authorization: Bearer <token>'"),
                (upload_headers(token="wrong-token-cccccccccccccc"), "Authorization: token not accepted"),
                ({"Content-Type": "text/csv", "Authorization": "Basic dXNlcjpwdw=="},
                 "Authorization: not a Bearer token"),
                (upload_headers(token=TEST_UPLOAD_TOKEN), "Authorization: token not accepted"),
            ):
                refused = await http.post(ingest.upload_url, content=body, headers=headers)
                assert refused.status_code == 401, refused.text
                assert refused.json()["problems"] == [reason]
                assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert await read_topic(kafka_broker.bootstrap, POLL_RESPONSES, topic_prefix) == []

            for token in ("old-token-aaaaaaaaaaaaaaaa", "new-token-bbbbbbbbbbbbbbbb"):
                accepted = await http.post(ingest.upload_url, content=body, headers=upload_headers(token=token))
                assert accepted.status_code == 200, accepted.text
                assert accepted.json()["produced"] == 3

            # A signed notification needs no token; an unsigned one needs a token.
            note = fields_notification(sb, "j1")
            form = "application/x-www-form-urlencoded"
            signed = await http.post(ingest.notification_url, content=note, headers={
                "Content-Type": form, "X-KALTURA-SIGNATURE": compute_signature(sb.admin_secret, note)})
            assert signed.status_code == 200, signed.text
            note = fields_notification(sb, "j2")
            unsigned = await http.post(ingest.notification_url, content=note, headers={"Content-Type": form})
            assert unsigned.status_code == 401
            manual = await http.post(ingest.notification_url, content=note, headers={
                "Content-Type": form, "Authorization": "Bearer new-token-bbbbbbbbbbbbbbbb"})
            assert manual.status_code == 200, manual.text

            for open_route in ("/healthz", "/readyz", "/metrics"):
                assert (await http.get(f"{ingest.base_url}{open_route}")).status_code == 200


async def test_no_token_configured_refuses_every_upload_unless_auth_is_disabled(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient,
) -> None:
    async with running_sandbox(SMALL, seed=32) as sb:
        tenants = tenants_for(sb, tmp_path)
        closed = settings_for(kafka_broker.bootstrap, topic_prefix, None, upload_tokens=[])
        async with running_ingest(closed, tenants, None) as ingest:
            answer = await http.post(ingest.upload_url, content=polls_csv(sb, range(1)), headers=upload_headers())
            assert answer.status_code == 401
            assert "no upload tokens are configured" in answer.json()["problems"][0]
        demo = settings_for(kafka_broker.bootstrap, topic_prefix, None, upload_tokens=[], upload_auth="disabled")
        async with running_ingest(demo, tenants, None) as ingest:
            answer = await http.post(ingest.upload_url, content=polls_csv(sb, range(1)),
                                     headers={"Content-Type": "text/csv"})
            assert answer.status_code == 200, answer.text


async def test_wrong_content_types_get_415_and_oversized_bodies_413(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient,
) -> None:
    async with running_sandbox(SMALL, seed=33) as sb:
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, max_upload_bytes=4096)
        async with running_ingest(settings, tenants_for(sb, tmp_path), None) as ingest:
            body = polls_csv(sb, range(2))
            for ctype in ("application/json", "application/x-www-form-urlencoded", "application/xml", None):
                answer = await http.post(ingest.upload_url, content=body, headers=upload_headers(ctype))
                assert answer.status_code == 415, (ctype, answer.text)
                assert answer.json()["problems"][0].startswith("Content-Type:")
            part = await http.post(ingest.upload_url, headers=upload_headers(None),
                                   files={"file": ("polls.csv", body, "image/png")})
            assert part.status_code == 415 and part.json()["problems"][0].startswith("file:")

            big = polls_csv(sb, range(200))
            declared = await http.post(ingest.upload_url, content=big, headers=upload_headers())
            assert declared.status_code == 413 and "the limit is 4096" in declared.json()["problems"][0]

            async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
                for i in range(0, len(big), 1000):
                    yield big[i:i + 1000]

            streamed = await http.post(ingest.upload_url, content=chunked(), headers=upload_headers())
            assert streamed.status_code == 413 and "more than 4096" in streamed.json()["problems"][0]
            assert await read_topic(kafka_broker.bootstrap, POLL_RESPONSES, topic_prefix) == []
            # Path-like file names are reduced to their last component.
            named = await http.post(ingest.upload_url, headers=upload_headers(None),
                                    files={"file": ("..\\..\\etc/Report_x.csv", body, "text/csv")})
            assert named.status_code == 200 and named.json()["file"] == "Report_x.csv"


async def test_uploads_above_the_concurrency_cap_get_503_with_retry_after(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient,
) -> None:
    async with running_sandbox(SMALL, seed=34) as sb:
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, max_concurrent_uploads=1,
                                retry_after_seconds=9)
        async with running_ingest(settings, tenants_for(sb, tmp_path), None) as ingest:
            body = polls_csv(sb, range(5))
            release = asyncio.Event()

            async def held() -> AsyncIterator[bytes]:
                yield body[:40]
                await release.wait()  # the first upload stays in progress until released
                yield body[40:]

            first = asyncio.create_task(http.post(ingest.upload_url, content=held(), headers=upload_headers()))
            await wait_for(lambda: metric(ingest.service, "kmsync_ingest_uploads_in_progress") == 1,
                           what="the held upload to take the only slot")
            busy = await http.post(ingest.upload_url, content=body, headers=upload_headers())
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "9"
            assert busy.json()["problems"][0].startswith("uploads: 1 already in progress")
            release.set()
            done = await first
            assert done.status_code == 200 and done.json()["produced"] == 5
            again = await http.post(ingest.upload_url, content=body, headers=upload_headers())
            assert again.status_code == 200
            assert json.loads(again.text)["produced"] == 5
            assert metric(ingest.service, "kmsync_ingest_uploads_total", outcome="busy") == 1
            assert metric(ingest.service, "kmsync_ingest_uploads_in_progress") == 0


async def test_backfill_over_http_sends_the_token(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kmsync_ingest.backfill_cli import main as backfill_main

    async with running_sandbox(SMALL, seed=35) as sb:
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None)
        async with running_ingest(settings, tenants_for(sb, tmp_path / "s"), None) as ingest:
            csv = tmp_path / "polls.csv"
            csv.write_bytes(polls_csv(sb, range(4)))
            argv = [str(csv), "--url", ingest.base_url, "--no-progress"]
            monkeypatch.delenv("KMSYNC_INGEST_TOKEN", raising=False)
            assert await asyncio.to_thread(backfill_main, argv) == 2  # no token: refused before sending
            monkeypatch.setenv("KMSYNC_INGEST_TOKEN", "wrong-token-dddddddddddddd")
            assert await asyncio.to_thread(backfill_main, argv) == 2  # 401 from kmsync_ingest
            (tmp_path / "token").write_text(TEST_UPLOAD_TOKEN + "\n")
            assert await asyncio.to_thread(backfill_main, [*argv, "--token-file", str(tmp_path / "token")]) == 0
            records = await read_topic(kafka_broker.bootstrap, POLL_RESPONSES, topic_prefix)
            assert len(records) == 4
            assert metric(ingest.service, "kmsync_ingest_uploads_total", outcome="unauthorized") == 1
