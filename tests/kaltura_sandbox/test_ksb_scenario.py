"""Scenario generator: deterministic under a seed, and realistic in the ways ingest depends on."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kaltura_sandbox.clock import ScenarioClock
from kaltura_sandbox.config import ScenarioConfig, ScenarioFileError, load_scenario_file
from kaltura_sandbox.scenario import Scenario, generate
from kaltura_sandbox.state import ScenarioView
from kaltura_sandbox.statuses import ALLOWED_NEXT, HIGH_ATTENDANCE, INITIAL, STATUSES
from kmsync_common.clock import FakeClock


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioConfig(), seed=11)


def test_same_seed_same_event_and_different_seed_different_event() -> None:
    config = ScenarioConfig(registrants=400)
    a, b, c = generate(config, 1), generate(config, 1), generate(config, 2)
    assert ScenarioView(a).truth() == ScenarioView(b).truth()
    assert a.admin_secret == b.admin_secret and a.app_guid == b.app_guid
    assert ScenarioView(a).truth()["attendees"] != ScenarioView(c).truth()["attendees"]
    assert a.app_guid != c.app_guid


def test_default_is_a_few_thousand_registrants_over_several_sessions(scenario: Scenario) -> None:
    assert len(scenario.registrants) == 3000
    assert len(scenario.sessions) >= 3
    assert len({s.entry_id for s in scenario.sessions}) == len(scenario.sessions)
    assert all(s.entry_id.startswith("1_") and s.name for s in scenario.sessions)


def test_status_histories_follow_allowed_paths(scenario: Scenario) -> None:
    for r in scenario.registrants:
        statuses = [t.status for t in r.transitions]
        assert statuses[0] in INITIAL, (r.user_id, statuses)
        for before, after in itertools.pairwise(statuses):
            assert after in ALLOWED_NEXT[before], (r.user_id, statuses)
        times = [t.at for t in r.transitions]
        assert times == sorted(times) and len(set(times)) == len(times), r.user_id


def test_every_kind_of_outcome_occurs(scenario: Scenario) -> None:
    finals = Counter(r.final_status for r in scenario.registrants)
    for status in ("invited", "confirmed", "autoConfirmed", "attended", "participated", "blocked",
                   "unregistered", "participatedPostEvent"):
        assert finals[status] > 0, status
    seen = {t.status for r in scenario.registrants for t in r.transitions}
    assert seen == set(STATUSES)


def test_soft_deleted_profiles_are_unregistered_ones(scenario: Scenario) -> None:
    deleted = [r for r in scenario.registrants if r.deleted_at is not None]
    assert len(deleted) == scenario.config.soft_deleted
    assert all(r.final_status == "unregistered" and r.deleted_at > r.transitions[-1].at for r in deleted)


def test_bulk_invitations_share_timestamps(scenario: Scenario) -> None:
    invites = Counter(r.transitions[0].at for r in scenario.registrants if r.transitions[0].status == "invited")
    assert max(invites.values()) > 50  # ties an inclusive updatedAt watermark must survive


def test_emails_are_mixed_case_and_unique_ignoring_case(scenario: Scenario) -> None:
    emails = [r.email for r in scenario.registrants if r.email]
    assert any(e != e.lower() for e in emails) and any(e == e.lower() for e in emails)
    assert len({e.lower() for e in emails}) == len(emails)


def test_at_most_ten_polls_per_session_in_slots_one_to_n(scenario: Scenario) -> None:
    by_entry = defaultdict(list)
    for p in scenario.polls:
        by_entry[p.entry_id].append(p.index)
    assert by_entry
    for indexes in by_entry.values():
        assert len(indexes) <= 10
        assert sorted(indexes) == list(range(1, len(indexes) + 1))
    assert max(len(i) for i in by_entry.values()) == 10


def test_answered_polls_match_poll_answer_rows(scenario: Scenario) -> None:
    answers = Counter((a.entry_id, a.user_id) for a in scenario.poll_answers)
    for e in scenario.engagement:
        assert e.answered_polls == answers.get((e.entry_id, e.user_id), 0)


def test_engagement_agrees_with_statuses(scenario: Scenario) -> None:
    by_user = {r.user_id: r for r in scenario.registrants}
    interacted = {e.user_id for e in scenario.engagement if e.interacted}
    for e in scenario.engagement:
        r = by_user[e.user_id]
        assert {t.status for t in r.transitions} & HIGH_ATTENDANCE, e.user_id
        assert 0 <= e.completion_rate <= 1 and 0 <= e.engaged_ratio <= 1
        assert e.total_reactions == e.clap + e.heart + e.think + e.wow + e.smile
        assert e.available_at > e.viewed_to - timedelta(seconds=1)
    for r in scenario.registrants:
        if "participated" in {t.status for t in r.transitions}:
            assert r.user_id in interacted, r.user_id


def test_malformed_rows_are_present_and_labelled(scenario: Scenario) -> None:
    defects = Counter(e.defect for e in scenario.engagement)
    for kind in ("bad_email", "missing_email", "missing_fields", "non_numeric"):
        assert defects[kind] > 0, kind
    assert Counter(a.defect for a in scenario.poll_answers)["missing_fields"] == 3
    bad_users = [r for r in scenario.registrants if r.email_defect]
    assert len(bad_users) == scenario.config.malformed_users
    assert any(r.email is None for r in bad_users) and any(r.email for r in bad_users)


def test_some_rows_arrive_late(scenario: Scenario) -> None:
    ends = {s.entry_id: s.end for s in scenario.sessions}
    lag = timedelta(seconds=scenario.config.late_lag_seconds)
    assert any(e.available_at == ends[e.entry_id] + lag for e in scenario.engagement)


def test_truth_as_of_shows_only_what_happened_by_then(scenario: Scenario) -> None:
    view = ScenarioView(scenario)
    assert view.truth(scenario.origin)["attendees"] == []
    mid = view.truth(scenario.event_start)
    assert mid["engagement"] == []
    assert 0 < len(mid["attendees"]) <= len(scenario.registrants)
    full = view.truth()
    assert len(full["engagement"]) == len(scenario.engagement)
    assert len(full["poll_answers"]) == len(scenario.poll_answers)


def test_yaml_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("registrants: 50\nsessions: 2\nnotifications:\n  hash_algo: sha256\n", encoding="utf-8")
    config = load_scenario_file(path)
    assert (config.registrants, config.sessions, config.notifications.hash_algo) == (50, 2, "sha256")
    assert config.notifications.duplicate_rate == ScenarioConfig().notifications.duplicate_rate
    assert len(generate(config, 0).registrants) == 50


@pytest.mark.parametrize(
    ("text", "field"),
    [("registrant: 5\n", "registrant"), ("max_polls_per_session: 21\n", "max_polls_per_session"),
     ("notifications:\n  hash_algo: md5\n", "notifications.hash_algo"), ("- 1\n", "mapping")],
)
def test_yaml_errors_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioFileError, match=field.replace(".", r"\.")):
        load_scenario_file(path)


def test_clock_steps_and_plays_at_speed() -> None:
    real = FakeClock()
    real.advance(100)
    origin = datetime(2025, 1, 1, tzinfo=UTC)
    clock = ScenarioClock(origin, speed=0.0, real=real)
    real.advance(50)
    assert clock.now() == origin  # paused
    clock.advance(30)
    assert clock.now() == origin + timedelta(seconds=30)
    clock.set_speed(60)
    real.advance(2)
    assert clock.now() == origin + timedelta(seconds=150)
    with pytest.raises(ValueError):
        clock.advance(-1)
    clock.reset()
    assert clock.now() == origin
