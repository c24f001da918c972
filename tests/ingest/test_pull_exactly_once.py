"""Pull mode against the Kaltura sandbox and real Kafka: every distinct source record reaches its
topic exactly once, also when ingest is restarted in the middle of the scenario."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from kaltura_sandbox.testing import running_sandbox
from kmsync_contracts import AttendeeStatus, DeadLetter, PollResponse, SessionEngagement
from kmsync_contracts.topics import ATTENDEE_STATUS, INGEST_DLQ, POLL_RESPONSES, SESSION_ENGAGEMENT
from kmsync_testing.ingest import metric, running_ingest, settings_for, tenants_for
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic
from kmsync_testing.waiting import wait_for

SCENARIO = {"registrants": 240, "sessions": 2, "session_minutes": 30, "late_row_rate": 0.2,
            "late_lag_seconds": 3600, "report_lag_seconds": 60}


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _visible_status_versions(truth: dict[str, Any]) -> set[tuple[str, datetime]]:
    return {(a["user_id"], _when(a["status_time"])) for a in truth["attendees"] if not a["deleted"]}


async def test_scenario_arrives_exactly_once_across_a_restart(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path
) -> None:
    async with running_sandbox(SCENARIO, seed=11) as sb:
        tenants = tenants_for(sb, tmp_path / "secrets")
        # A low limit: the sessions' de-duplication sets are sharded over several watermarks.
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, sb, watermark_max_ids=40)
        scenario = sb.sandbox.scenario
        # Mid-scenario: the first session has ended and its on-time analytics are out, the second
        # is running, statuses are still moving; late rows are not out yet.
        middle = scenario.sessions[0].end + timedelta(minutes=5)
        sb.advance_to(middle)
        async with running_ingest(settings, tenants, sb) as first:
            await first.service.pull_everything()
            await first.service.pull_everything()  # an immediate re-pull adds nothing
        truth_middle = sb.truth(sb.now())

        sb.advance_to_end()
        async with running_ingest(settings, tenants, sb) as second:
            restored = len(list(second.service.watermarks))
            await second.service.pull_everything()
            await second.service.pull_everything()
        truth_end = sb.truth()

    assert restored >= 1 + 2 * 2 + 16, "the restarted ingest read the (sharded) watermarks back from Kafka"
    statuses = [v for _, v in await read_topic(kafka_broker.bootstrap, ATTENDEE_STATUS, topic_prefix)]
    engagement = [v for _, v in await read_topic(kafka_broker.bootstrap, SESSION_ENGAGEMENT, topic_prefix)]
    polls = [v for _, v in await read_topic(kafka_broker.bootstrap, POLL_RESPONSES, topic_prefix)]
    dlq = [v for _, v in await read_topic(kafka_broker.bootstrap, INGEST_DLQ, topic_prefix)]

    assert_statuses_once(statuses, truth_middle, truth_end)
    assert_engagement_once(engagement, truth_end, middle)
    assert_polls_and_bad_rows_once(polls, dlq, truth_end)


def assert_statuses_once(statuses: list[Any], truth_middle: dict[str, Any], truth_end: dict[str, Any]) -> None:
    # Statuses: one record per (user, updatedAt) version visible at either pull, no more, no less.
    assert all(isinstance(s, AttendeeStatus) for s in statuses)
    got_versions = Counter((s.user_id, s.source_time) for s in statuses)
    assert max(got_versions.values()) == 1, "a status version was produced twice"
    expected = _visible_status_versions(truth_middle) | _visible_status_versions(truth_end)
    assert set(got_versions) == expected
    final = {(a["user_id"], a["final_status"]) for a in truth_end["attendees"] if not a["deleted"]}
    latest: dict[str, AttendeeStatus] = {}
    for s in statuses:
        if s.user_id not in latest or s.source_time > latest[s.user_id].source_time:
            latest[s.user_id] = s
    assert {(u, s.status.value) for u, s in latest.items()} == final
    assert all(k for k in latest)  # keyed partner:event:user below


def assert_engagement_once(engagement: list[Any], truth_end: dict[str, Any], middle: datetime) -> None:
    # Engagement: each good row of each report once per (report, session, attendee).
    good = [e for e in truth_end["engagement"] if e["defect"] is None]
    assert all(isinstance(e, SessionEngagement) for e in engagement)
    per_report = Counter((e.source_ref.split()[1], e.entry_id, e.user_id) for e in engagement)
    assert max(per_report.values()) == 1, "an engagement row was produced twice"
    for report in ("60013", "4021"):
        assert {(entry, user) for r, entry, user in per_report if r == report} == {
            (e["entry_id"], e["email"]) for e in good
        }
    late = [e for e in good if _when(e["available_at"]) > middle]
    assert late, "the scenario has rows that arrive after the restart"
    answered = {(e.entry_id, e.user_id): e.answered_polls for e in engagement if e.source_ref.startswith("report 4021")}
    assert all(answered[(e["entry_id"], e["email"])] == e["answered_polls"] for e in good)


def assert_polls_and_bad_rows_once(polls: list[Any], dlq: list[Any], truth_end: dict[str, Any]) -> None:
    # Polls: each good answer once.
    good_answers = {(a["entry_id"], a["poll_id"], a["user_id"]) for a in truth_end["poll_answers"] if a["defect"] is None}
    assert all(isinstance(p, PollResponse) for p in polls)
    got_answers = Counter((p.entry_id, p.poll_id, p.user_id) for p in polls)
    assert max(got_answers.values()) == 1
    assert set(got_answers) == good_answers

    # Bad rows: dead-lettered once each (two engagement reports per damaged row, plus poll rows).
    assert all(isinstance(d, DeadLetter) and d.reason_code == "kmsync.bad_row" for d in dlq)
    bad_engagement = [e for e in truth_end["engagement"] if e["defect"] is not None]
    bad_answers = [a for a in truth_end["poll_answers"] if a["defect"] is not None]
    assert len(dlq) == 2 * len(bad_engagement) + len(bad_answers)
    assert len({(d.reason, str(d.payload)) for d in dlq}) == len(dlq)


async def test_records_are_keyed_partner_event_user(kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path) -> None:
    async with running_sandbox({"registrants": 40, "sessions": 1}, seed=3) as sb:
        sb.advance_to_end()
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, sb)
        async with running_ingest(settings, tenants_for(sb, tmp_path), sb) as ingest:
            results = await ingest.service.pull_everything()
    assert {r.stream for r in results} == {"statuses", "engagement", "polls"}
    for spec in (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES):
        records = await read_topic(kafka_broker.bootstrap, spec, topic_prefix)
        assert records, spec.name
        for key, value in records:
            assert key == f"{sb.partner_id}:{sb.virtual_event_id}:{value.user_id}"
            assert value.source == "pull"


async def test_scheduled_pulls_run_at_start_and_when_woken(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with running_sandbox({"registrants": 60, "sessions": 1}, seed=4) as sb:
        sb.advance_to(sb.sandbox.scenario.event_start)
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, sb, pull_enabled=True,
                                pull_interval_seconds=3600)
        async with running_ingest(settings, tenants_for(sb, tmp_path), sb) as ingest:
            before = _visible_status_versions(sb.truth(sb.now()))

            async def produced() -> int:
                return len(await read_topic(kafka_broker.bootstrap, ATTENDEE_STATUS, topic_prefix))

            await wait_for(lambda: _equals(produced(), len(before)), what="the pull at start")
            sb.advance_to_end()
            after = before | _visible_status_versions(sb.truth())
            ingest.service.wake()
            await wait_for(lambda: _equals(produced(), len(after)), what="the pull after wake()")
            await wait_for(lambda: metric(ingest.service, "kmsync_ingest_pulls_total", stream="statuses",
                                          outcome="ok") == 2, what="the second pull to finish")
            page = (await http.get(f"{ingest.base_url}/metrics")).text
            assert f'kmsync_ingest_records_out_total{{stream="statuses"}} {float(len(after))}' in page
            assert 'kmsync_ingest_pulls_total{outcome="ok",stream="statuses"} 2.0' in page


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_stopping_in_the_middle_of_a_pull_loses_and_repeats_nothing(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path
) -> None:
    async with running_sandbox({"registrants": 300, "sessions": 1}, seed=12) as sb:
        sb.advance_to_end()
        tenants = tenants_for(sb, tmp_path)
        # Small pages: the status walk takes many acknowledged steps, and stop() lands inside it.
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, sb, page_size=25)
        async with running_ingest(settings, tenants, sb) as first:
            service = first.service
            pulling = asyncio.create_task(service.pull_everything())
            await wait_for(lambda: metric(service, "kmsync_ingest_records_out_total", stream="statuses") >= 50,
                           what="the first pages")
            await service.stop()
            await pulling
            stopped_after = metric(service, "kmsync_ingest_records_out_total", stream="statuses")
        async with running_ingest(settings, tenants, sb) as second:
            await second.service.pull_everything()
        expected = _visible_status_versions(sb.truth())
    assert 0 < stopped_after < len(expected), "the first ingest stopped part-way through the walk"
    statuses = [v for _, v in await read_topic(kafka_broker.bootstrap, ATTENDEE_STATUS, topic_prefix)]
    versions = Counter((s.user_id, s.source_time) for s in statuses)
    assert max(versions.values()) == 1
    assert set(versions) == expected
