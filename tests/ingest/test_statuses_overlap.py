"""Statuses pulled through the real puller from a Kaltura sandbox that shows some profile versions late
(replica lag, UNCONFIRMED: docs/reference/kaltura-api.md §7.1.1), into a real Kafka broker.

Without an overlap (KMSYNC_STATUSES_OVERLAP_SECONDS=0) a version that becomes visible after a newer updatedAt
was read is never pulled: the silent loss this setting exists for, asserted here so the risk stays documented.
With an overlap longer than the lag it is pulled exactly once, across a restart (the overlap memory is read
back from ingest.watermarks.v1), nothing else is produced twice, and the watermark never moves back."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kaltura_sandbox.formats import fmt_time
from kaltura_sandbox.scenario import Registrant, Transition
from kaltura_sandbox.testing import RunningSandbox, running_sandbox
from kmsync_config import TenantsConfig
from kmsync_contracts import AttendeeStatus, DeadLetter
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import ATTENDEE_STATUS, INGEST_DLQ
from kmsync_ingest.settings import IngestSettings
from kmsync_testing.ingest import metric, running_ingest, settings_for, tenants_for
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic
from kmsync_testing.waiting import wait_for

LAG = 1800
SCENARIO = {"registrants": 150, "sessions": 1, "late_profile_rate": 0.2, "late_profile_seconds": LAG}


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _visible(truth: dict[str, Any]) -> set[tuple[str, datetime]]:
    return {(a["user_id"], _when(a["status_time"])) for a in truth["attendees"] if not a["deleted"]}


def _late_case(sb: RunningSandbox) -> tuple[Registrant, Transition, datetime, datetime]:
    """A late version L, a time when a newer version of another profile is visible but L is not, and when L
    shows (and is still the profile's current version)."""
    view = sb.sandbox.view
    late_keys = {(r.user_id, t.at) for r, t, _ in view.late_versions()}
    on_time = sorted(t.at for r in sb.sandbox.scenario.registrants for t in r.transitions
                     if (r.user_id, t.at) not in late_keys and t.at > sb.now())
    for r, t, shows in view.late_versions():
        newer = [at for at in on_time if t.at < at < shows]
        current = view.profile(r, shows)
        if newer and current is not None and current["updatedAt"] == fmt_time(t.at):
            return r, t, newer[0], shows
    raise AssertionError("the scenario has no late version to test")


async def _pull(settings: IngestSettings, tenants: TenantsConfig, sb: RunningSandbox, key: tuple[int, int],
                marks: list[datetime]) -> dict[str, float]:
    async with running_ingest(settings, tenants, sb) as ingest:
        await wait_for(lambda: key in ingest.service.pullers, within=30, what="the event's puller")
        await ingest.service.pullers[key].pull_statuses()
        boundary = ingest.service.watermarks.boundary(*key, "statuses")
        assert boundary is not None
        marks.append(boundary.watermark)
        return {o: metric(ingest.service, "kmsync_ingest_statuses_overlap_total", outcome=o)
                for o in ("skipped", "late", "capped")}


@pytest.mark.parametrize("overlap", [0, 2 * LAG])
async def test_a_version_shown_late_is_lost_without_overlap_and_pulled_once_with_it(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, overlap: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kmsync_ingest.puller")
    async with running_sandbox(SCENARIO, seed=5) as sb:
        tenants = tenants_for(sb, tmp_path / "secrets")
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, sb, statuses_overlap_seconds=overlap)
        key = (sb.partner_id, sb.virtual_event_id)
        person, late, hidden_at, shows_at = _late_case(sb)
        marks: list[datetime] = []
        expected: set[tuple[str, datetime]] = set()
        counts = []
        # Pull 1 while L is hidden but a newer version is visible; each pull in a new ingest (a restart: the
        # overlap memory is read back from Kafka); pull 2 once L shows; pull 3 at the scenario's end.
        for when in (hidden_at, shows_at, sb.sandbox.scenario.end):
            sb.advance_to(when)
            counts.append(await _pull(settings, tenants, sb, key, marks))
            expected |= _visible(sb.truth(sb.now()))

    statuses = [v for _, v in await read_topic(kafka_broker.bootstrap, ATTENDEE_STATUS, topic_prefix)]
    assert all(isinstance(s, AttendeeStatus) for s in statuses)
    got = Counter((s.user_id, s.source_time) for s in statuses)
    version = (person.user_id, late.at)
    assert marks == sorted(marks) and marks[0] > late.at, "the watermark passed L before it showed, never moved back"
    assert max(got.values()) == 1, "a status version was produced twice"
    assert version in expected
    late_versions = {(r.user_id, t.at) for r, t, _ in sb.sandbox.view.late_versions()}
    if overlap == 0:
        assert version not in got, "without an overlap the version shown late is lost"
        assert expected - set(got) <= late_versions, "only versions shown late are lost"
        assert all(c["late"] == 0 and c["skipped"] == 0 for c in counts)
    else:
        assert got[version] == 1, "the overlap pulled the version shown late exactly once"
        assert set(got) == expected, "nothing lost"
        assert counts[1]["late"] >= 1 and counts[1]["skipped"] >= 1, "the re-read is visible in the metrics"
        assert counts[1]["capped"] == 0
        said = [r.getMessage() for r in caplog.records if r.name == "kmsync_ingest.puller"]
        assert any(person.profile_id in m and "found by the overlap" in m for m in said), "the late one is named"
        assert any("already produced, skipped" in m for m in said), "each skipped re-read is logged"
        assert person.email is None or not any(person.email.lower() in m.lower() for m in said), "emails hashed"


def _quiet_start(sb: RunningSandbox) -> tuple[Registrant, datetime, list[datetime]]:
    """A profile version at T with no other change in the 125 s before it, and three other changes (at distinct
    times) within 115 s after it, before the profile changes again: pulls at those times move the watermark
    while T is in the overlap window, the first profile of that window."""
    regs = sb.sandbox.scenario.registrants
    changes = sorted((t.at, r.index) for r in regs for t in r.transitions if t.at > sb.now())
    for at, i in changes:
        near = [(when, j) for when, j in changes if at - timedelta(seconds=125) <= when <= at + timedelta(seconds=200)]
        after = sorted({when for when, j in near if at < when < at + timedelta(seconds=115) and j != i})
        if (len(after) >= 3 and regs[i].email and not any(when < at for when, _ in near)
                and not any(j == i and when > at for when, j in near)):
            return regs[i], at, after[:3]
    raise AssertionError("the scenario has no quiet change to test")


async def test_an_invalid_profile_at_the_start_of_the_window_is_dead_lettered_once_and_never_late(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_sandbox({"registrants": 150, "sessions": 1}, seed=5) as sb:
        person, at, later = _quiet_start(sb)
        view = sb.sandbox.view
        served = view.profile

        def unreadable(r: Registrant, now: datetime) -> dict[str, Any] | None:
            # Listed at its place in the updatedAt order, but the updatedAt it shows cannot be read.
            shown = served(r, now)
            return {**shown, "updatedAt": "not a time"} if shown is not None and r is person else shown

        monkeypatch.setattr(view, "profile", unreadable)
        tenants = tenants_for(sb, tmp_path / "secrets")
        settings = settings_for(kafka_broker.bootstrap, topic_prefix, sb, statuses_overlap_seconds=120)
        key = (sb.partner_id, sb.virtual_event_id)
        marks: list[datetime] = []
        counts = []
        # Each pull in a new ingest (the memory is read back from Kafka); the watermark moves on every pull
        # after the first and stays within 120 s of the invalid profile, which starts the window from pull 3.
        for when in (at, *later):
            sb.advance_to(when)
            counts.append(await _pull(settings, tenants, sb, key, marks))

    assert marks[1:] == later and marks[-1] - at < timedelta(seconds=120)
    letters = [v for _, v in await read_topic(kafka_broker.bootstrap, INGEST_DLQ, topic_prefix)]
    assert all(isinstance(d, DeadLetter) for d in letters)
    invalid = [d for d in letters if d.reason_code == ReasonCode.INVALID_PROFILE.value
               and (d.source_key or "").endswith(f":{person.profile_id}")]
    assert len(invalid) == 1, f"the invalid profile was dead-lettered {len(invalid)} times in {len(marks)} pulls"
    assert all(c["late"] == 0 for c in counts), "a dead letter is never counted as a version shown late"
    statuses = [v for _, v in await read_topic(kafka_broker.bootstrap, ATTENDEE_STATUS, topic_prefix)]
    got = Counter((s.user_id, s.source_time) for s in statuses if isinstance(s, AttendeeStatus))
    assert got and max(got.values()) == 1 and person.user_id not in {u for u, _ in got}
