"""Push mode: signed Kaltura notifications trigger the matching pull, answered 200 only after Kafka
acknowledged it; replays are answered without a second pull; bad input gets 4xx with field names."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from kaltura_sandbox.testing import RunningSandbox, running_sandbox
from kmsync_config import TenantsConfig
from kmsync_contracts.topics import ATTENDEE_STATUS, SESSION_ENGAGEMENT, TopicSpec
from kmsync_kaltura import compute_signature
from kmsync_testing.ingest import RunningIngest, metric, running_ingest, settings_for, tenants_for
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic
from kmsync_testing.waiting import wait_for

SMALL = {"registrants": 120, "sessions": 2, "session_minutes": 30, "late_row_rate": 0.0}


@dataclass
class Harness:
    """What every test here sets up: an ingest on the test's broker and prefix for a sandbox's event."""

    broker: KafkaBroker
    prefix: str
    secrets: Path

    @contextlib.asynccontextmanager
    async def ingest(
        self, sb: RunningSandbox, *, with_sessions: bool = True, kaltura_clock: bool = True,
        tenants: TenantsConfig | None = None, **overrides: Any,
    ) -> AsyncIterator[RunningIngest]:
        """An ingest for `sb`'s event; `kaltura_clock=False` runs it on the wall clock, not the sandbox's."""
        settings = settings_for(self.broker.bootstrap, self.prefix, sb, **overrides)
        tenants = tenants or tenants_for(sb, self.secrets, with_sessions=with_sessions)
        async with running_ingest(settings, tenants, sb if kaltura_clock else None) as ingest:
            yield ingest

    async def records(self, spec: TopicSpec) -> list[Any]:
        return [v for _, v in await read_topic(self.broker.bootstrap, spec, self.prefix)]


@pytest.fixture
def harness(kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path) -> Harness:
    return Harness(kafka_broker, topic_prefix, tmp_path)


async def entry_notification_after_the_end(sb: RunningSandbox, ingest: RunningIngest) -> None:
    """The sandbox notifies ingest of the session's entry 5 minutes after it ended; until accepted."""
    sb.sandbox.dispatcher.configure(ingest.notification_url)
    sb.advance_to(sb.sandbox.scenario.sessions[0].end + timedelta(minutes=5))
    await wait_for(lambda: metric(ingest.service, "kmsync_ingest_notifications_total", outcome="accepted") == 1,
                   what="the entry notification")


#: The late-rows scenarios: the sandbox plays an event dated 2025, analytics rows arrive an hour late.
LATE_ROWS = {"registrants": 120, "sessions": 1, "late_row_rate": 0.3, "late_lag_seconds": 3600,
             "notifications": {"kinds": ["entry"], "duplicate_rate": 0.0}}


def envelope(job_id: int, obj: dict[str, Any], event_object_type: int | str = 3) -> bytes:
    return json.dumps({
        "object": obj, "eventObjectType": event_object_type, "eventType": 3,
        "eventNotificationJobId": job_id, "templateId": 1, "templateName": "t", "templateSystemName": "T",
        "objectType": "KalturaHttpNotification",
    }).encode()


def virtual_event(sb: RunningSandbox) -> dict[str, Any]:
    return {"objectType": "KalturaVirtualEvent", "id": sb.virtual_event_id, "partnerId": sb.partner_id,
            "name": "Q3", "status": 2}


def entry(sb: RunningSandbox, index: int) -> dict[str, Any]:
    s = sb.sandbox.scenario.sessions[index]
    return {"objectType": "KalturaLiveStreamEntry", "id": s.entry_id, "partnerId": sb.partner_id,
            "startDate": int(s.start.timestamp()), "endDate": int(s.end.timestamp())}


def signed(sb: RunningSandbox, body: bytes, algo: str = "sha1", content_type: str = "application/json") -> dict[str, str]:
    return {"Content-Type": content_type, "X-KALTURA-SIGNATURE": compute_signature(sb.admin_secret, body, algo),
            "X-KALTURA-HASH-ALGO": algo}


async def test_notifications_trigger_pulls_and_replays_do_not(harness: Harness, http: httpx.AsyncClient) -> None:
    async with running_sandbox(SMALL, seed=5) as sb:
        first_session = sb.sandbox.scenario.sessions[0]
        sb.advance_to(first_session.end + timedelta(minutes=10))
        async with harness.ingest(sb) as ingest:
            body = envelope(1001, virtual_event(sb), "virtualEventEventNotifications.VirtualEvent")
            first = await http.post(ingest.notification_url, content=body, headers=signed(sb, body))
            assert first.status_code == 200, first.text
            assert first.json()["status"] == "accepted"
            statuses = await harness.records(ATTENDEE_STATUS)
            visible = [a for a in sb.truth(sb.now())["attendees"] if not a["deleted"]]
            assert len(statuses) == len(visible) > 0  # stored before the 200

            replay = await http.post(ingest.notification_url, content=body, headers=signed(sb, body))
            assert replay.status_code == 200
            assert replay.json() == {"status": "duplicate", "eventNotificationJobId": "1001", "pulled": []}
            assert metric(ingest.service, "kmsync_ingest_notifications_total", outcome="duplicate") == 1

            # The session ended: its entry notification pulls engagement and polls, as final figures.
            sb.advance(120)
            body = envelope(1002, entry(sb, 0), 1)
            answer = await http.post(f"{ingest.notification_url}/{sb.partner_id}", content=body,
                                     headers=signed(sb, body, "sha256"))
            assert answer.status_code == 200, answer.text
            pulled = {(p["stream"], p["scope"]) for p in answer.json()["pulled"]}
            assert pulled == {("engagement", first_session.entry_id), ("polls", first_session.entry_id)}
            engagement = await harness.records(SESSION_ENGAGEMENT)
            final = [e for e in engagement if e.is_final]
            assert final and {e.entry_id for e in final} == {first_session.entry_id}
            # Before its end was known, the session's rows were pulled as non-final figures.
            assert {e.entry_id for e in engagement if not e.is_final} == {first_session.entry_id}

            # Legacy templates: data=<url-encoded JSON>; form-field templates: their own keys.
            legacy = urlencode({"data": envelope(1003, virtual_event(sb)).decode()}).encode()
            answer = await http.post(ingest.notification_url, content=legacy,
                                     headers=signed(sb, legacy, content_type="application/x-www-form-urlencoded"))
            assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
            fields = urlencode({"partner_id": sb.partner_id, "entry_id": first_session.entry_id}).encode()
            answer = await http.post(ingest.notification_url, content=fields,
                                     headers=signed(sb, fields, content_type="application/x-www-form-urlencoded"))
            assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
            assert metric(ingest.service, "kmsync_ingest_notifications_total", outcome="accepted") == 4

    # No record twice, however many notifications asked for the same data.
    statuses = await harness.records(ATTENDEE_STATUS)
    assert len({(s.user_id, s.source_time) for s in statuses}) == len(statuses)
    engagement = await harness.records(SESSION_ENGAGEMENT)
    assert len({(e.source_ref.split()[1], e.entry_id, e.user_id, e.is_final) for e in engagement}) == len(engagement)


async def test_bad_notifications_get_4xx_with_field_messages_and_store_nothing(harness: Harness, http: httpx.AsyncClient) -> None:
    async with running_sandbox(SMALL, seed=6) as sb:
        sb.advance_to_end()
        async with harness.ingest(sb) as ingest:
            url = ingest.notification_url
            body = envelope(2001, virtual_event(sb))

            forged = dict(signed(sb, body))
            forged["X-KALTURA-SIGNATURE"] = compute_signature("not-the-secret", body, "sha1")
            answer = await http.post(url, content=body, headers=forged)
            assert answer.status_code == 403
            assert answer.json()["problems"] == ["X-KALTURA-SIGNATURE: signature does not match the body"]

            tampered = body.replace(b'"Q3"', b'"Q4"')
            answer = await http.post(url, content=tampered, headers=signed(sb, body))
            assert answer.status_code == 403  # signed bytes must be the bytes received

            answer = await http.post(url, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 401
            assert answer.json()["problems"] == ["X-KALTURA-SIGNATURE: missing"]

            answer = await http.post(url, content=body, headers=signed(sb, body) | {"X-KALTURA-HASH-ALGO": "md5"})
            assert answer.status_code == 400 and answer.json()["problems"][0].startswith("X-KALTURA-HASH-ALGO")

            broken = b'{"object": {"partnerId": 1}, "eventNotificationJobId": '
            answer = await http.post(f"{url}/{sb.partner_id}", content=broken, headers=signed(sb, broken))
            assert answer.status_code == 400
            assert answer.json()["problems"][0].startswith("body: not valid JSON")

            incomplete = json.dumps({"object": virtual_event(sb), "eventType": 3}).encode()
            answer = await http.post(url, content=incomplete, headers=signed(sb, incomplete))
            assert answer.status_code == 400
            fields = {p.split(":")[0] for p in answer.json()["problems"]}
            assert {"eventObjectType", "eventNotificationJobId"} <= fields

            answer = await http.post(f"{url}/424242", content=body, headers=signed(sb, body))
            assert answer.status_code == 403
            assert answer.json()["problems"] == ["partner_id: partner 424242 is not configured"]

            answer = await http.post(url, content=b"<xml/>", headers=signed(sb, b"<xml/>", content_type="text/xml"))
            assert answer.status_code == 415

            assert 2001 not in ingest.service.handled_jobs and "2001" not in ingest.service.handled_jobs
            assert metric(ingest.service, "kmsync_ingest_notifications_total", outcome="bad_signature") == 3
    assert await harness.records(ATTENDEE_STATUS) == []


async def test_the_sandbox_delivers_duplicates_and_every_record_lands_once(harness: Harness) -> None:
    scenario = {**SMALL, "notifications": {"kinds": ["virtual_event", "entry"], "duplicate_rate": 1.0,
                                           "retry_base_seconds": 0.2}}
    async with running_sandbox(scenario, seed=8) as sb:
        # Session times come only from the entry notifications (the tenants file lists no sessions).
        async with harness.ingest(sb, with_sessions=False) as ingest:
            sb.sandbox.dispatcher.configure(ingest.notification_url)
            sb.advance_to_end()
            jobs = 2 + len(sb.session_entry_ids)
            log = sb.sandbox.dispatcher.log
            await wait_for(lambda: len(log.delivered) == jobs and all(n == 2 for n in log.delivered.values())
                           and sb.sandbox.dispatcher.pending == 0, within=60, what="every notification twice")
            assert metric(ingest.service, "kmsync_ingest_notifications_total", outcome="accepted") == jobs
            # Every job re-delivered at least once (more if a slow answer made the sandbox retry).
            assert metric(ingest.service, "kmsync_ingest_notifications_total", outcome="duplicate") >= jobs
        truth = sb.truth()
    engagement = await harness.records(SESSION_ENGAGEMENT)
    got = [(e.source_ref.split()[1], e.entry_id, e.user_id) for e in engagement]
    good = {(e["entry_id"], e["email"]) for e in truth["engagement"] if e["defect"] is None}
    assert len(got) == len(set(got)) == 2 * len(good)
    assert {(entry_id, user) for _, entry_id, user in got} == good


async def test_a_kaltura_failure_during_the_triggered_pull_answers_503(harness: Harness, http: httpx.AsyncClient) -> None:
    async with running_sandbox(SMALL, seed=10) as sb:
        sb.advance_to_end()
        tenants = tenants_for(sb, harness.secrets)
        # Kaltura refuses ingest's session.start (a wrong admin secret): the pull cannot run.
        (harness.secrets / "kaltura").write_text("wrong-admin-secret")
        async with harness.ingest(sb, tenants=tenants, retry_after_seconds=11) as ingest:
            body = envelope(3001, virtual_event(sb))
            answer = await http.post(ingest.notification_url, content=body, headers={
                "Content-Type": "application/json",
                "X-KALTURA-SIGNATURE": compute_signature("wrong-admin-secret", body, "sha1")})
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "11"
            assert answer.json()["error"] == "Kaltura unavailable, nothing was acknowledged"
            assert "3001" not in ingest.service.handled_jobs
            assert metric(ingest.service, "kmsync_ingest_errors_total", kind="kaltura") == 1
    assert await harness.records(ATTENDEE_STATUS) == []


async def test_late_rows_are_pulled_even_when_kaltura_clock_and_ingest_clock_disagree(harness: Harness) -> None:
    # Ingest runs on today's clock (as in `make run`) while the sandbox plays last year's event.
    async with running_sandbox(LATE_ROWS, seed=13) as sb:
        async with harness.ingest(sb, with_sessions=False, kaltura_clock=False) as ingest:
            await entry_notification_after_the_end(sb, ingest)
            on_time = len(await harness.records(SESSION_ENGAGEMENT))
            sb.advance_to_end()  # the late analytics rows appear
            await ingest.service.pull_everything()
        truth = sb.truth()
    good = [e for e in truth["engagement"] if e["defect"] is None]
    engagement = await harness.records(SESSION_ENGAGEMENT)
    assert 0 < on_time < len(engagement) == 2 * len(good)


async def test_profile_notifications_already_covered_by_the_watermark_pull_nothing(harness: Harness) -> None:
    scenario = {"registrants": 40, "sessions": 1, "notifications": {"kinds": ["user_profile"], "duplicate_rate": 0.0}}
    async with running_sandbox(scenario, seed=14) as sb:
        async with harness.ingest(sb) as ingest:
            sb.advance_to(sb.sandbox.scenario.event_start)
            await ingest.service.pull_everything()
            pulls = metric(ingest.service, "kmsync_ingest_pulls_total", stream="statuses", outcome="ok")
            sb.sandbox.dispatcher.configure(ingest.notification_url)
            log = sb.sandbox.dispatcher.log
            due = sum(1 for t in sb.truth(sb.now())["attendees"] for _ in t["transitions"])
            await wait_for(lambda: len(log.delivered) == due, what="the deliveries of changes so far")
            delivered_before = len(log.delivered)
            assert delivered_before > 0
            # Every change up to now was already pulled: no notification needed a pull.
            assert metric(ingest.service, "kmsync_ingest_pulls_total", stream="statuses", outcome="ok") == pulls
            sb.advance_to_end()
            await wait_for(lambda: sb.sandbox.dispatcher.pending == 0, within=60, what="the remaining deliveries")
            assert metric(ingest.service, "kmsync_ingest_pulls_total", stream="statuses", outcome="ok") > pulls
        truth = sb.truth()
    statuses = await harness.records(ATTENDEE_STATUS)
    versions = {(s.user_id, s.source_time) for s in statuses}
    assert len(versions) == len(statuses)
    final = {(a["user_id"], a["final_status"]) for a in truth["attendees"] if not a["deleted"]}
    latest: dict[str, Any] = {}
    for s in statuses:
        if s.user_id not in latest or s.source_time > latest[s.user_id].source_time:
            latest[s.user_id] = s
    assert {(u, s.status.value) for u, s in latest.items()} == final


async def test_a_restarted_ingest_still_knows_which_sessions_ended_and_pulls_late_rows_as_final(harness: Harness) -> None:
    # Issue #13: session end times came only from entry notifications and lived in memory, so an
    # ingest restarted after the notification pulled the session's late rows as not final (or, with
    # no sessions in the tenants file, not at all): their custom activities were never emitted.
    async with running_sandbox(LATE_ROWS, seed=17) as sb:
        async with harness.ingest(sb, with_sessions=False, kaltura_clock=False) as ingest:
            await entry_notification_after_the_end(sb, ingest)
        on_time = len(await harness.records(SESSION_ENGAGEMENT))
        sb.advance_to_end()  # the late analytics rows appear while ingest is down
        async with harness.ingest(sb, with_sessions=False, kaltura_clock=False) as restarted:
            await restarted.service.pull_everything()
        truth = sb.truth()
    good = [e for e in truth["engagement"] if e["defect"] is None]
    engagement = await harness.records(SESSION_ENGAGEMENT)
    # Every good row once per report (60013 and 4021), each a final snapshot: nothing re-sent as not final.
    assert 0 < on_time < len(engagement) == 2 * len(good)
    assert all(s.is_final for s in engagement)
