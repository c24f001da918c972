"""KalturaClient against the running sandbox over real HTTP on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from kaltura_sandbox.testing import RunningSandbox, running_sandbox
from kmsync_kaltura import (
    AttendanceStatus,
    EngagementRow,
    InvalidKSError,
    KalturaClient,
    KalturaSettings,
    StartSessionError,
    UserProfile,
)


def settings_for(sb: RunningSandbox, **overrides: Any) -> KalturaSettings:
    return KalturaSettings(service_url=sb.service_url, user_profile_url=sb.user_profile_url,
                           partner_id=sb.partner_id, admin_secret=sb.admin_secret, **overrides)


@pytest_asyncio.fixture
async def sb() -> AsyncIterator[RunningSandbox]:
    async with running_sandbox({"registrants": 800, "sessions": 3}, seed=21) as running:
        yield running


async def pull_all(client: KalturaClient, sb: RunningSandbox, since: Any = None) -> tuple[list[UserProfile], Any]:
    out: list[UserProfile] = []
    watermark = since
    async for page in client.iter_user_profiles(sb.app_guid, since=since):
        assert not page.errors
        out += page.profiles
        watermark = page.watermark
    return out, watermark


async def test_attendees_joined_with_users_match_the_ground_truth(sb: RunningSandbox) -> None:
    sb.advance_to_end()
    async with KalturaClient(settings_for(sb, profile_page_size=100)) as client:
        attendees = []
        async for page in client.iter_attendees(sb.app_guid):
            attendees += page.attendees
    truth = {a["user_id"]: a for a in sb.truth()["attendees"] if not a["deleted"]}
    assert len(attendees) == len(truth)
    assert {a.profile.user_id for a in attendees} == set(truth)
    for a in attendees:
        t = truth[a.profile.user_id]
        assert a.profile.event_data.attendance_status == AttendanceStatus(t["final_status"])
        assert a.email == t["email"]  # mixed case preserved, None when Kaltura has none
        assert a.user is not None and a.user.first_name == t["first_name"]
    assert any(a.email is None for a in attendees)


async def test_watermark_pull_gets_exactly_what_changed(sb: RunningSandbox) -> None:
    scenario = sb.sandbox.scenario
    async with KalturaClient(settings_for(sb, profile_page_size=50)) as client:
        sb.advance_to(scenario.event_start)
        first, watermark = await pull_all(client, sb)
        assert first and watermark is not None
        sb.advance_to_end()
        second, _ = await pull_all(client, sb, since=watermark)
    end_truth = {a["user_id"]: a for a in sb.truth()["attendees"] if not a["deleted"]}
    changed = {u for u, a in end_truth.items()
               if a["transitions"][-1]["at"] >= watermark.isoformat().replace("+00:00", "Z")}
    got = {p.user_id for p in second}
    # Inclusive watermark: the changed ones plus at most the profiles sitting exactly on it.
    assert changed <= got
    assert all(p.updated_at >= watermark for p in second)
    latest = {p.user_id: p for p in [*first, *second]}
    for user_id, t in end_truth.items():
        assert latest[user_id].event_data.attendance_status.value == t["final_status"]


async def test_keyset_walk_survives_updates_and_long_timestamp_ties_mid_walk(sb: RunningSandbox) -> None:
    """Small pages (ties of 100+ bulk invitations exceed them) while time moves between pages."""
    scenario = sb.sandbox.scenario
    sb.advance_to(scenario.event_start - timedelta(hours=1))
    step = (scenario.end - sb.now()) / 40
    latest: dict[str, UserProfile] = {}
    async with KalturaClient(settings_for(sb, profile_page_size=9)) as client:
        async for page in client.iter_user_profiles(sb.app_guid):
            for p in page.profiles:
                key = p.id
                assert key not in latest or latest[key].updated_at < p.updated_at, "same version twice"
                latest[key] = p
            sb.advance(step.total_seconds())
    truth = {a["profile_id"]: a for a in sb.truth(sb.now())["attendees"] if not a["deleted"]}
    missing = set(truth) - set(latest)
    assert not missing
    stale = [k for k, t in truth.items() if latest[k].event_data.attendance_status.value != t["final_status"]]
    assert not stale


async def test_invalid_ks_triggers_one_reauth_and_retry(sb: RunningSandbox) -> None:
    sb.advance_to_end()
    async with KalturaClient(settings_for(sb)) as client:
        await client.get_engagement_page(sb.virtual_event_id, sb.session_entry_ids[0])
        assert client.sessions_started == 1
        sb.sandbox.ks.revoke_all()
        page = await client.get_engagement_page(sb.virtual_event_id, sb.session_entry_ids[0])
        assert page.rows and client.sessions_started == 2
        sb.sandbox.ks.reject_all = True
        with pytest.raises(InvalidKSError) as caught:
            await client.list_users(["anyone"])
        assert caught.value.code == "INVALID_KS"
        assert client.sessions_started == 3  # the held KS failed, exactly one new session failed too
        assert sb.admin_secret not in str(caught.value)
        assert client._ks is not None and client._ks not in str(caught.value)
        assert client._ks not in repr(caught.value.kaltura_args)


async def test_wrong_secret_is_a_start_session_error(sb: RunningSandbox) -> None:
    settings = KalturaSettings(service_url=sb.service_url, user_profile_url=sb.user_profile_url,
                               partner_id=sb.partner_id, admin_secret="definitely-wrong")
    async with KalturaClient(settings) as client:
        with pytest.raises(StartSessionError) as caught:
            await client.list_users(["x"])
    assert "definitely-wrong" not in str(caught.value)


@pytest.mark.parametrize("delimiter", ["|", ",", "\t"])
async def test_engagement_pages_match_truth_and_bad_rows_are_reported(sb: RunningSandbox, delimiter: str) -> None:
    sb.advance_to_end()
    truth = sb.truth()["engagement"]
    async with KalturaClient(settings_for(sb, report_page_size=37, report_delimiter=delimiter)) as client:
        for entry in sb.session_entry_ids:
            rows: list[EngagementRow] = []
            errors = []
            async for page in client.iter_engagement(sb.virtual_event_id, entry):
                rows += [r.row for r in page.rows]
                errors += page.errors
            expected = [e for e in truth if e["entry_id"] == entry]
            good = {e["email"]: e for e in expected if e["defect"] is None}
            assert {r.email for r in rows} == set(good)
            for r in rows:
                t = good[r.email]
                assert r.entry_id == entry
                assert r.total_view_time == pytest.approx(t["total_minutes"])
                assert r.count_poll_answered == t["answered_polls"]
                assert r.count_reaction_clicked == t["total_reactions"]
                assert r.combined_live_engaged_users_play_time_ratio == pytest.approx(t["engaged_ratio"], abs=1e-4)
            assert len(errors) == sum(1 for e in expected if e["defect"] is not None)
            assert all(e.line >= 1 and e.message for e in errors)
            assert len({e.line for e in errors} | {len(rows)}) >= 1


async def test_engagement_csv_4021_through_the_serve_url(sb: RunningSandbox) -> None:
    sb.advance_to_end()
    entry = sb.session_entry_ids[1]
    async with KalturaClient(settings_for(sb)) as client:
        result = await client.get_engagement_csv(sb.virtual_event_id, entry)
    expected = [e for e in sb.truth()["engagement"] if e["entry_id"] == entry]
    by_email = {e["email"]: e for e in expected if e["defect"] is None}
    assert {r.row.email for r in result.rows} == set(by_email)
    for located in result.rows:
        t = by_email[located.row.email]
        assert located.row.entry_id == entry
        assert located.row.answered_polls == t["answered_polls"]
        assert located.row.clap_clicked_count == t["clap"]
        assert located.row.mic_on == pytest.approx(t["mic_on_minutes"])
    assert len(result.errors) == len(expected) - len(by_email)
    assert sorted(e.line for e in result.errors) == [e.line for e in result.errors]


async def test_report_pull_stops_at_the_12000_row_cap() -> None:
    big = {"registrants": 13_500, "sessions": 1, "attend_rate": 1.0, "unregister_rate": 0.0, "block_rate": 0.0,
           "late_row_rate": 0.0, "max_polls_per_session": 1}
    async with running_sandbox(big, seed=8) as sb:
        sb.advance_to_end()
        async with KalturaClient(settings_for(sb, report_page_size=5000)) as client:
            pages = [p async for p in client.iter_engagement(sb.virtual_event_id, sb.session_entry_ids[0])]
    assert pages[0].total_count > 12_000 and pages[-1].capped
    # Page 3 of 5000 would pass the cap and be refused; rows 10,001-12,000 come as page 6 of 2000.
    assert [(p.page_index, p.page_size) for p in pages] == [(1, 5000), (2, 5000), (6, 2000)]
    assert sum(len(p.rows) + len(p.errors) for p in pages) == 12_000
    lines = sorted([r.line for p in pages for r in p.rows] + [e.line for p in pages for e in p.errors])
    assert lines == list(range(1, 12_001))


async def test_poll_answers_through_the_reports_microservice(sb: RunningSandbox) -> None:
    sb.advance_to_end()
    entry = sb.session_entry_ids[0]
    waits: list[float] = []

    async def record_sleep(seconds: float) -> None:
        waits.append(seconds)

    settings = settings_for(sb, reports_url=sb.reports_url, report_poll_interval_seconds=0.25)
    async with KalturaClient(settings, sleep=record_sleep) as client:
        result = await client.get_poll_answers(sb.virtual_event_id, entry)
    assert waits == [0.25]  # first status check says "processing", the second "completed"
    truth = [a for a in sb.truth()["poll_answers"] if a["entry_id"] == entry]
    good = {(a["user_id"], a["poll_id"]): a for a in truth if a["defect"] is None}
    assert {(r.row.user_id, r.row.poll_id) for r in result.rows} == set(good)
    for located in result.rows:
        t = good[(located.row.user_id, located.row.poll_id)]
        assert located.row.answer == t["answer_as_exported"]
        assert located.row.question == t["question_as_exported"]
    assert len(result.errors) == len(truth) - len(good) > 0


async def test_a_report_that_never_completes_is_not_ready(sb: RunningSandbox) -> None:
    from kmsync_kaltura import ReportNotReadyError

    sb.advance_to_end()

    async def no_wait(seconds: float) -> None:
        return None

    settings = settings_for(sb, reports_url=sb.reports_url, report_poll_max_checks=1)
    async with KalturaClient(settings, sleep=no_wait) as client:
        with pytest.raises(ReportNotReadyError):
            await client.get_poll_answers(sb.virtual_event_id, sb.session_entry_ids[0])


def _a_run_and_a_member_leaving_it(sb: RunningSandbox, page: int) -> tuple[datetime, datetime, list[str], datetime]:
    """(now, T, the run's profile ids, when) in the scenario: at ``now`` more than ``page`` + 1 profiles share the
    updatedAt T (an invite batch), and the next change of any profile, at ``when``, is one member of the run's first
    page leaving it (the listing orders a run by profile id)."""
    view, regs = sb.sandbox.view, sb.sandbox.scenario.registrants
    times = sorted({t.at for r in regs for t in r.transitions})
    for now, when in itertools.pairwise(times):
        movers = [r.profile_id for r in regs if any(t.at == when for t in r.transitions)]
        if len(movers) != 1:
            continue
        runs: dict[datetime, list[str]] = defaultdict(list)
        for r, t in view.visible_heads(now):
            runs[t.at].append(r.profile_id)
        for at, members in runs.items():
            members.sort()
            if len(members) > page + 1 and movers[0] in members[:page]:
                return now, at, members, when
    raise AssertionError("the scenario has no run that a member leaves mid-walk")


async def test_a_member_of_a_run_longer_than_a_page_is_not_skipped_when_another_leaves_it_mid_walk(
        sb: RunningSandbox) -> None:
    """Inside a run of identical updatedAt the walk pages by offset; a member updated after the first page leaves
    the run and every later member shifts back by one, so the one behind the first page's end moved into it. The
    walk goes over the run again and returns it (before: skipped, and never read again; session 12's ingest crash
    bench lost invite-only registrants of a 26-profile invite batch that way)."""
    page = 10
    now, at, run, when = _a_run_and_a_member_leaving_it(sb, page)
    sb.advance_to(now)
    moved: list[datetime] = []

    async def a_member_leaves_after_the_first_page(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/user-profile/list") and not moved:
            moved.append(sb.advance_to(when))

    async with httpx.AsyncClient(event_hooks={"response": [a_member_leaves_after_the_first_page]}) as http:
        client = KalturaClient(settings_for(sb, profile_page_size=page), http=http)
        returned: list[tuple[str, datetime]] = []
        async for p in client.iter_user_profiles(sb.app_guid, since=at):
            returned += [(x.id, x.updated_at) for x in p.profiles]
    assert moved, "the clock was moved during the walk"
    assert set(run) <= {pid for pid, _ in returned}, "a member of the run was skipped"
    assert len(returned) == len(set(returned)), "a version was returned twice"
    # Nothing after the run before the run is complete: a pull stopping meanwhile keeps its watermark at the run.
    last_of_run = max(i for i, (_, updated) in enumerate(returned) if updated == at)
    assert all(updated == at for _, updated in returned[:last_of_run]), "a later profile came before the run's end"
