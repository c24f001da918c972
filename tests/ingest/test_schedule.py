"""The event's schedule is stamped on every pulled status (docs/design/granular-statuses.md §2): from
Kaltura's Events Platform where the partner has events_api_url (docs/reference/kaltura-api.md §9.1),
else from the tenants file (§9.4), else not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaltura_sandbox.testing import RunningSandbox, running_sandbox
from kmsync_config import parse_tenants
from kmsync_contracts import AttendeeStatus
from kmsync_ingest.kaltura_source import KalturaPullSource, client_for
from kmsync_kaltura.events_platform import event_schedule
from kmsync_testing.ingest import settings_for, tenants_document

SCENARIO = {"registrants": 12, "sessions": 2}
TENANTS_SCHEDULE = {"start": "2025-06-16T12:00:00+00:00", "end": "2025-06-16T18:00:00+00:00"}


async def pulled(sb: RunningSandbox, doc: dict[str, Any]) -> list[AttendeeStatus]:
    tenants = parse_tenants(doc, "test tenants")
    settings = settings_for("127.0.0.1:1", "t.", sb)
    event = tenants.events[0]
    source = KalturaPullSource(client_for(event.partner_id, tenants.kaltura_partners[event.partner_id], settings),
                               settings, sb.now)
    try:
        return [i.record async for page in source.statuses(event, None) for i in page if i.record is not None]
    finally:
        await source.client.aclose()


def document(sb: RunningSandbox, tmp_path: Path, *, api: bool, tenants_schedule: bool) -> dict[str, Any]:
    doc = tenants_document(sb, tmp_path)
    if api:
        doc["kaltura_partners"][sb.partner_id]["events_api_url"] = sb.service_url
    if tenants_schedule:
        doc["events"][0]["schedule"] = TENANTS_SCHEDULE
    return doc


async def test_statuses_carry_the_events_platform_schedule(tmp_path: Path) -> None:
    async with running_sandbox(SCENARIO, seed=3) as sb:
        sb.advance_to_end()
        records = await pulled(sb, document(sb, tmp_path, api=True, tenants_schedule=True))
        scenario = sb.sandbox.scenario
        assert records and {(r.event_start, r.event_end, r.schedule_source) for r in records} == {
            (scenario.event_start, scenario.event_end, "events_api")}


async def test_without_the_api_the_tenants_file_schedule_is_stamped(tmp_path: Path) -> None:
    async with running_sandbox({**SCENARIO, "hide_schedule": True}, seed=3) as sb:
        sb.advance_to_end()
        records = await pulled(sb, document(sb, tmp_path, api=True, tenants_schedule=True))
        assert records and {(r.event_start.isoformat() if r.event_start else None, r.schedule_source)
                            for r in records} == {(TENANTS_SCHEDULE["start"], "tenants")}
        bare = await pulled(sb, document(sb, tmp_path, api=False, tenants_schedule=False))
        assert bare and {(r.event_start, r.event_end, r.schedule_source) for r in bare} == {(None, None, None)}


async def test_the_events_platform_gives_the_sessions_too(tmp_path: Path) -> None:
    async with running_sandbox(SCENARIO, seed=3) as sb:
        tenants = parse_tenants(document(sb, tmp_path, api=True, tenants_schedule=False), "test tenants")
        settings = settings_for("127.0.0.1:1", "t.", sb)
        client = client_for(sb.partner_id, tenants.kaltura_partners[sb.partner_id], settings)
        try:
            schedule = await event_schedule(client, sb.service_url, sb.virtual_event_id)
            assert await event_schedule(client, sb.service_url, sb.virtual_event_id + 1) is None
        finally:
            await client.aclose()
        assert schedule is not None and schedule.doors_open is not None and schedule.doors_open < schedule.start
        assert [(s.entry_id, s.start, s.end) for s in schedule.sessions] == [
            (s.entry_id, s.start, s.end) for s in sb.sandbox.scenario.sessions]


async def test_without_the_events_platform_api_v3_s_main_schedule_event_is_used(tmp_path: Path) -> None:
    async with running_sandbox(SCENARIO, seed=3) as sb:
        sb.advance_to_end()
        records = await pulled(sb, document(sb, tmp_path, api=False, tenants_schedule=True))
        scenario = sb.sandbox.scenario
        assert records and {(r.event_start, r.event_end, r.schedule_source) for r in records} == {
            (scenario.event_start, scenario.event_end, "schedule_event")}


async def test_the_schedule_source_setting_picks_the_source(tmp_path: Path) -> None:
    async with running_sandbox(SCENARIO, seed=3) as sb:
        sb.advance_to_end()
        for setting, api, expected in (("tenants", True, "tenants"), ("events_api", False, "tenants"),
                                       ("schedule_event", True, "schedule_event"), ("events_api", True, "events_api")):
            doc = document(sb, tmp_path, api=api, tenants_schedule=True)
            doc["events"][0]["schedule_source"] = setting
            records = await pulled(sb, doc)
            assert records and {r.schedule_source for r in records} == {expected}, setting
