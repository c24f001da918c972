"""Several ingest replicas share the pulls through the ingest consumer group: each event is pulled by
the replica that owns its coordination partition, a replica that leaves or dies hands its events
over with their watermarks (no gap, no duplicate), and a notification that reaches a replica which
does not own its event is forwarded to the owner, never lost."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from kaltura_sandbox.testing import RunningSandbox, running_sandbox
from kmsync_config import parse_tenants
from kmsync_contracts import AttendeeStatus, SessionEngagement
from kmsync_contracts.topics import ATTENDEE_STATUS, POLL_RESPONSES, SESSION_ENGAGEMENT
from kmsync_ingest.kaltura_source import KalturaPullSource, client_for
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.ownership import owner_partition, partition_transactional_id
from kmsync_ingest.publisher import Publisher
from kmsync_ingest.puller import EventPuller, PullTiming
from kmsync_ingest.service import IngestService
from kmsync_ingest.watermarks import WatermarkStore
from kmsync_kaltura import compute_signature
from kmsync_testing.ingest import (
    events_on_distinct_partitions,
    ingest_process,
    metric,
    multi_tenants_document,
    running_ingest,
    settings_for,
    tenants_file,
)
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic
from kmsync_testing.waiting import wait_for

PARTITIONS = 4
#: Short, so a killed replica's events move within seconds (heartbeats every third of it).
SESSION_TIMEOUT = 6.0
#: Each partner's poll answers CSV on its sandbox (as settings_for sets for one sandbox).
POLLS = "{service_url}/_sandbox/exports/polls/{entry_id}.csv"
SCENARIO = {"registrants": 120, "sessions": 2, "session_minutes": 30, "late_row_rate": 0.2,
            "late_lag_seconds": 3600, "report_lag_seconds": 60}


@asynccontextmanager
async def sandboxes(count: int, scenario: dict[str, Any]) -> AsyncIterator[list[RunningSandbox]]:
    """``count`` Kaltura sandboxes (one partner and event each) whose events own distinct partitions."""
    async with AsyncExitStack() as stack:
        out = []
        for n, (pid, vid) in enumerate(events_on_distinct_partitions(count, PARTITIONS)):
            config = {**scenario, "partner_id": pid, "virtual_event_id": vid}
            out.append(await stack.enter_async_context(running_sandbox(config, seed=30 + n)))
        yield out


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _visible(truth: dict[str, Any]) -> set[tuple[str, datetime]]:
    return {(a["user_id"], _when(a["status_time"])) for a in truth["attendees"] if not a["deleted"]}


def _middle(sb: RunningSandbox) -> datetime:
    return sb.sandbox.scenario.sessions[0].end + timedelta(minutes=5)


def _owned(service: IngestService) -> set[tuple[int, int]]:
    return set(service.pullers)


def _entry_notification(sb: RunningSandbox, job_id: int) -> tuple[bytes, dict[str, str]]:
    s = sb.sandbox.scenario.sessions[0]
    body = json.dumps({
        "object": {"objectType": "KalturaLiveStreamEntry", "id": s.entry_id, "partnerId": sb.partner_id,
                   "startDate": int(s.start.timestamp()), "endDate": int(s.end.timestamp())},
        "eventObjectType": 1, "eventType": 3, "eventNotificationJobId": job_id,
        "objectType": "KalturaHttpNotification",
    }).encode()
    headers = {"Content-Type": "application/json",
               "X-KALTURA-SIGNATURE": compute_signature(sb.admin_secret, body, "sha1")}
    return body, headers


async def _assert_exactly_once(
    bootstrap: str, prefix: str, sbs: Sequence[RunningSandbox], expected_statuses: dict[int, set[tuple[str, datetime]]],
    final_entries: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    statuses = [v for _, v in await read_topic(bootstrap, ATTENDEE_STATUS, prefix)]
    engagement = [v for _, v in await read_topic(bootstrap, SESSION_ENGAGEMENT, prefix)]
    polls = [v for _, v in await read_topic(bootstrap, POLL_RESPONSES, prefix)]
    assert all(isinstance(s, AttendeeStatus) for s in statuses)
    assert all(isinstance(e, SessionEngagement) for e in engagement)
    for sb in sbs:
        mine = [s for s in statuses if s.partner_id == sb.partner_id and s.virtual_event_id == sb.virtual_event_id]
        versions = Counter((s.user_id, s.source_time) for s in mine)
        assert versions and max(versions.values()) == 1, f"event {sb.virtual_event_id}: a status version twice"
        assert set(versions) == expected_statuses[sb.partner_id], f"event {sb.virtual_event_id}: statuses"
        rows = [e for e in engagement if e.partner_id == sb.partner_id]
        per_row = Counter((e.source_ref.split()[1], e.entry_id, e.user_id, e.is_final) for e in rows)
        assert max(per_row.values()) == 1, f"event {sb.virtual_event_id}: an engagement row twice"
        good = {(e["entry_id"], e["email"]) for e in sb.truth()["engagement"] if e["defect"] is None}
        for report in ("60013", "4021"):
            assert {(entry, user) for r, entry, user, _ in per_row if r == report} == good
        answers = Counter((p.entry_id, p.poll_id, p.user_id) for p in polls if p.partner_id == sb.partner_id)
        good_answers = {(a["entry_id"], a["poll_id"], a["user_id"]) for a in sb.truth()["poll_answers"]
                        if a["defect"] is None}
        assert answers and max(answers.values()) == 1, f"event {sb.virtual_event_id}: a poll answer twice"
        assert set(answers) == good_answers, f"event {sb.virtual_event_id}: poll answers"
        # Final snapshots exactly for the sessions whose end a notification told.
        assert {e.entry_id for e in rows if e.is_final} == {e for e in final_entries if e in sb.session_entry_ids}


async def test_two_replicas_split_the_events_forward_notifications_and_hand_over_on_leaving(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with sandboxes(4, SCENARIO) as sbs:
        tenants = parse_tenants(multi_tenants_document(sbs, tmp_path / "secrets"), "test tenants")
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, polls_csv_url=POLLS,
                                ingest_coordination_partitions=PARTITIONS,
                                ingest_session_timeout_seconds=SESSION_TIMEOUT)
        everything = {(sb.partner_id, sb.virtual_event_id) for sb in sbs}
        for sb in sbs:
            sb.advance_to(_middle(sb))
        async with running_ingest(settings, tenants, None) as first:
            assert _owned(first.service) == everything  # alone, it owns every partition
            async with running_ingest(settings, tenants, None) as second:
                a, b = first.service, second.service
                await wait_for(lambda: _owned(a) | _owned(b) == everything and _owned(a) and _owned(b),
                               within=30, what="the group to split the partitions")
                assert not _owned(a) & _owned(b), "an event is owned by both replicas"
                # Each replica pulls its own events only, at the same time as the other.
                results = await asyncio.gather(a.pull_everything(), b.pull_everything())
                assert all(results)
                for service in (a, b):
                    assert {p.ids for p in service.pullers.values()} == _owned(service)
                    assert metric(service, "kmsync_ingest_records_out_total", stream="statuses") > 0
                expected = {sb.partner_id: _visible(sb.truth(sb.now())) for sb in sbs}

                # A notification for an event of `b` sent to `a` is forwarded and pulled by `b`.
                target = next(sb for sb in sbs if (sb.partner_id, sb.virtual_event_id) in _owned(b))
                body, headers = _entry_notification(target, 9001)
                answer = await http.post(first.notification_url, content=body, headers=headers)
                assert answer.status_code == 200, answer.text
                assert answer.json()["forwarded"] == [f"{target.partner_id}:{target.virtual_event_id}"]
                assert answer.json()["pulled"] == []
                await wait_for(lambda: metric(b, "kmsync_ingest_forwarded_triggers_total", outcome="pulled") == 1,
                               what="the owner to pull the forwarded notification")
                assert metric(a, "kmsync_ingest_notifications_total", outcome="forwarded") == 1
            # `second` left the group: `first` takes its events over with their watermarks.
            await wait_for(lambda: _owned(first.service) == everything, within=30, what="the hand-over")
            assert metric(first.service, "kmsync_ingest_handovers_total", direction="taken") >= 2
            for sb in sbs:
                sb.advance_to_end()
                expected[sb.partner_id] |= _visible(sb.truth())
            await first.service.pull_everything()
            await first.service.pull_everything()  # nothing new
    await _assert_exactly_once(kafka_broker.bootstrap, topic_prefix, sbs, expected,
                               {target.session_entry_ids[0]})


async def test_a_killed_replicas_events_are_taken_over_without_a_gap_or_a_duplicate(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    scenario = {**SCENARIO, "registrants": 240}
    async with sandboxes(4, scenario) as sbs:
        doc = multi_tenants_document(sbs, tmp_path / "secrets")
        tenants = parse_tenants(doc, "test tenants")
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, polls_csv_url=POLLS,
                                ingest_coordination_partitions=PARTITIONS,
                                ingest_session_timeout_seconds=SESSION_TIMEOUT, page_size=5)
        everything = {(sb.partner_id, sb.virtual_event_id) for sb in sbs}
        for sb in sbs:
            sb.advance_to(_middle(sb))
        expected = {sb.partner_id: _visible(sb.truth(sb.now())) for sb in sbs}
        env = {
            "KMSYNC_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "KMSYNC_TOPIC_PREFIX": topic_prefix,
            "KMSYNC_TENANTS_FILE": str(tenants_file(doc, tmp_path / "tenants.yaml")),
            "KMSYNC_INGEST_COORDINATION_PARTITIONS": str(PARTITIONS),
            "KMSYNC_INGEST_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT),
            "KMSYNC_PAGE_SIZE": "5", "KMSYNC_PULL_INTERVAL_SECONDS": "3600", "KMSYNC_SESSION_REPULL_SECONDS": "0",
            "KMSYNC_POLLS_CSV_URL": settings.polls_csv_url,
        }
        async with running_ingest(settings, tenants, None) as survivor:
            s = survivor.service
            async with ingest_process(env, tmp_path / "victim") as victim:
                await wait_for(lambda: len(_owned(s)) == 2, within=30, what="the victim to join and take two events")
                gone = everything - _owned(s)

                async def victim_pulling() -> bool:
                    return await victim.metric(http, "kmsync_ingest_records_out_total", stream="statuses") >= 20

                # The victim pulls its events from the moment it owns them (small pages); kill it mid-walk.
                await wait_for(victim_pulling, within=30, what="the victim's first pages")
                produced_by_victim = await victim.metric(http, "kmsync_ingest_records_out_total", stream="statuses")
                victim.kill()
                await victim.process.wait()
            victims_share = sum(len(expected[pid]) for pid, _ in gone)
            assert 20 <= produced_by_victim < victims_share, "the victim was killed in the middle of its walk"
            # While nobody owns the victim's events, a notification for one is forwarded, not lost.
            target = next(sb for sb in sbs if (sb.partner_id, sb.virtual_event_id) in gone)
            body, headers = _entry_notification(target, 9101)
            answer = await http.post(survivor.notification_url, content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["forwarded"] == [f"{target.partner_id}:{target.virtual_event_id}"]
            # The group drops the dead member after its session timeout; the survivor fences the
            # victim's transactional ids (aborting its open page) and reloads the watermarks.
            await wait_for(lambda: _owned(s) == everything, within=45, what="the take-over of the victim's events")
            await wait_for(lambda: metric(s, "kmsync_ingest_forwarded_triggers_total", outcome="pulled") == 1,
                           within=30, what="the forwarded notification's pull")
            await s.pull_everything()  # finishes the walks the victim was on, from its last watermark
            for sb in sbs:
                sb.advance_to_end()
                expected[sb.partner_id] |= _visible(sb.truth())
            await s.pull_everything()
    statuses = await read_topic(kafka_broker.bootstrap, ATTENDEE_STATUS, topic_prefix)
    total = sum(len(v) for v in expected.values())
    assert len(statuses) == total
    await _assert_exactly_once(kafka_broker.bootstrap, topic_prefix, sbs, expected, {target.session_entry_ids[0]})


async def test_retry_mode_answers_503_at_a_replica_that_does_not_own_the_event(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with sandboxes(2, {"registrants": 40, "sessions": 1}) as sbs:
        tenants = parse_tenants(multi_tenants_document(sbs, tmp_path / "secrets"), "test tenants")
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, polls_csv_url=POLLS,
                                ingest_coordination_partitions=2,
                                ingest_session_timeout_seconds=SESSION_TIMEOUT, not_owner_notifications="retry",
                                retry_after_seconds=3)
        for sb in sbs:
            sb.advance_to_end()
        async with running_ingest(settings, tenants, None) as first, running_ingest(settings, tenants, None) as second:
            a, b = first.service, second.service
            await wait_for(lambda: len(_owned(a)) == len(_owned(b)) == 1, within=30, what="one event each")
            target = next(sb for sb in sbs if (sb.partner_id, sb.virtual_event_id) in _owned(b))
            assert owner_partition(target.partner_id, target.virtual_event_id, 2) in b.owned
            body, headers = _entry_notification(target, 9201)
            refused = await http.post(first.notification_url, content=body, headers=headers)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "3"
            assert "9201" not in a.handled_jobs
            # Kaltura's retry, routed to the owner by the load balancer, is pulled there.
            answer = await http.post(second.notification_url, content=body, headers=headers)
            assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
            assert {p["stream"] for p in answer.json()["pulled"]} == {"engagement", "polls"}
    engagement = [v for _, v in await read_topic(kafka_broker.bootstrap, SESSION_ENGAGEMENT, topic_prefix)]
    assert engagement and {e.partner_id for e in engagement} == {target.partner_id}


async def test_a_paused_owner_fenced_by_another_resumes_from_the_others_watermarks(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path
) -> None:
    # A replica paused long enough for its partition to move (GC, a frozen VM) comes back and is
    # fenced: it must not start a producer under the id again and pull on from its stale marks
    # (that would fence the new owner and repeat its pages), but fence and reload first.
    async with sandboxes(1, {"registrants": 120, "sessions": 1}) as sbs:
        sb = sbs[0]
        tenants = parse_tenants(multi_tenants_document(sbs, tmp_path / "secrets"), "test tenants")
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, polls_csv_url=POLLS,
                                ingest_coordination_partitions=PARTITIONS,
                                page_size=20)
        partition = owner_partition(sb.partner_id, sb.virtual_event_id, PARTITIONS)
        sb.advance_to(_middle(sb))
        expected = _visible(sb.truth(sb.now()))
        async with running_ingest(settings, tenants, None) as paused:
            await paused.service.pull_everything()
            # Meanwhile "another owner" of the partition (same transactional id) pulls on.
            sb.advance_to_end()
            expected |= _visible(sb.truth())
            tx_id = partition_transactional_id(settings.transactional_id, topic_prefix, partition)
            other = Publisher(kafka_broker.bootstrap, topic_prefix, IngestMetrics(), transactional_id=tx_id)
            await other.start()
            try:
                marks = WatermarkStore(other)
                await marks.load()
                event = tenants.events[0]
                source = KalturaPullSource(client_for(event.partner_id, tenants.kaltura_partners[event.partner_id],
                                                      settings), settings)
                usurper = EventPuller(event, source, other, marks, IngestMetrics(), PullTiming())
                assert (await usurper.pull_statuses()).produced > 0
                await source.close()
            finally:
                await other.stop()
            service = paused.service
            await service.pull_everything()  # fenced at its first page: nothing committed
            assert metric(service, "kmsync_ingest_errors_total", kind="kafka") >= 1
            await service.pull_everything()  # fences again, reloads the other's marks, pulls on
            await service.pull_everything()
    statuses = [v for _, v in await read_topic(kafka_broker.bootstrap, ATTENDEE_STATUS, topic_prefix)]
    versions = Counter((s.user_id, s.source_time) for s in statuses)
    assert max(versions.values()) == 1, "a page was committed twice"
    assert set(versions) == expected


async def test_a_rebalance_in_the_middle_of_a_walk_hands_over_after_the_page(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path
) -> None:
    # A replica joining revokes the pulling replica's partitions (eager assignment) while it walks
    # its events page by page: the page in flight commits with its watermark, the walk stops, and
    # whoever gets each event next resumes after that page.
    async with sandboxes(4, {"registrants": 240, "sessions": 1}) as sbs:
        tenants = parse_tenants(multi_tenants_document(sbs, tmp_path / "secrets"), "test tenants")
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, polls_csv_url=POLLS,
                                ingest_coordination_partitions=PARTITIONS,
                                ingest_session_timeout_seconds=SESSION_TIMEOUT, page_size=5)
        for sb in sbs:
            sb.advance_to_end()
        expected = {sb.partner_id: _visible(sb.truth()) for sb in sbs}
        total = sum(len(v) for v in expected.values())
        async with running_ingest(settings, tenants, None) as first:
            a = first.service
            walking = asyncio.create_task(a.pull_everything())
            await wait_for(lambda: metric(a, "kmsync_ingest_records_out_total", stream="statuses") >= 20,
                           what="the first pages")
            async with running_ingest(settings, tenants, None) as second:
                b = second.service
                await walking  # cut short by the revocation
                assert metric(a, "kmsync_ingest_handovers_total", direction="released") >= 1
                cut_at = metric(a, "kmsync_ingest_records_out_total", stream="statuses")
                assert cut_at < total, "the walk was cut short by the rebalance"
                await wait_for(lambda: _owned(a) and _owned(b) and not _owned(a) & _owned(b), within=30,
                               what="the split")
                await asyncio.gather(a.pull_everything(), b.pull_everything())
                await asyncio.gather(a.pull_everything(), b.pull_everything())
                assert metric(b, "kmsync_ingest_records_out_total", stream="statuses") > 0
    statuses = [v for _, v in await read_topic(kafka_broker.bootstrap, ATTENDEE_STATUS, topic_prefix)]
    assert len(statuses) == total
    for sb in sbs:
        versions = Counter((s.user_id, s.source_time) for s in statuses if s.partner_id == sb.partner_id)
        assert max(versions.values()) == 1 and set(versions) == expected[sb.partner_id]


async def test_a_replica_outside_the_group_pulls_nothing_and_forwards_every_notification(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    # KMSYNC_INGEST_GROUP="": an upload/notification-only replica (the old KMSYNC_PULL_ENABLED=false
    # advice would now take events from the group without pulling them on schedule).
    async with sandboxes(1, {"registrants": 40, "sessions": 1}) as sbs:
        sb = sbs[0]
        tenants = parse_tenants(multi_tenants_document(sbs, tmp_path / "secrets"), "test tenants")
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, polls_csv_url=POLLS,
                                ingest_coordination_partitions=PARTITIONS)
        sb.advance_to_end()
        async with running_ingest(settings, tenants, None) as owner, \
                running_ingest(settings.model_copy(update={"ingest_group": ""}), tenants, None) as outside:
            assert _owned(outside.service) == set() and await outside.service.pull_everything() == []
            assert _owned(owner.service) == {(sb.partner_id, sb.virtual_event_id)}
            body, headers = _entry_notification(sb, 9301)
            answer = await http.post(outside.notification_url, content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["forwarded"] == [f"{sb.partner_id}:{sb.virtual_event_id}"]
            await wait_for(lambda: metric(owner.service, "kmsync_ingest_forwarded_triggers_total",
                                          outcome="pulled") == 1, what="the owner's pull")
    engagement = [v for _, v in await read_topic(kafka_broker.bootstrap, SESSION_ENGAGEMENT, topic_prefix)]
    assert engagement and all(e.is_final for e in engagement)
    assert {e.entry_id for e in engagement} == {sb.session_entry_ids[0]}
