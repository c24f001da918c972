"""An invalid profile without a usable updatedAt never moves the statuses watermark past profiles not yet
read (pure: kaltura_source.problem_time and boundary.select_after, as the puller uses them)."""

from __future__ import annotations

from datetime import UTC, datetime

from kmsync_ingest.boundary import Boundary, select_after
from kmsync_ingest.kaltura_source import NO_TIME, problem_time

T1 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
T2 = datetime(2026, 3, 2, 12, 5, tzinfo=UTC)


def test_the_first_pull_of_an_event_is_not_cut_short_by_a_page_of_invalid_profiles_without_a_time() -> None:
    # The walk's first page (ordered by updatedAt, one watermark commit per page, puller.py): invalid
    # profiles, one without an updatedAt, one with a naive one; the second page: valid profiles.
    first = [(problem_time({"id": "bad-1"}, None, None), "bad-1"),
             (problem_time({"id": "bad-2", "updatedAt": "2026-03-02T12:00:00"}, None, None), "bad-2")]
    fresh, boundary = select_after(first, lambda item: item, None)
    assert [ident for _, ident in fresh] == ["bad-1", "bad-2"]
    assert boundary is not None and boundary.watermark == NO_TIME, "never the clock"
    fresh, boundary = select_after([(T1, "p-1"), (T2, "p-2")], lambda item: item, boundary)
    assert [ident for _, ident in fresh] == ["p-1", "p-2"], "read, not skipped as already produced"
    assert boundary == Boundary(T2, frozenset({"p-2"}))


def test_an_invalid_profile_takes_its_own_time_else_the_walks_else_the_stored_watermark() -> None:
    assert problem_time({"updatedAt": "2026-03-02T12:05:00Z"}, T1, None) == T2
    assert problem_time({}, T1, T2) == T1
    assert problem_time("not an object", None, T2) == T2
    assert problem_time(None, None, None) == NO_TIME


def test_at_the_stored_watermark_an_invalid_profile_is_dead_lettered_once() -> None:
    stored = Boundary(T1, frozenset({"p-1"}))
    fresh, after = select_after([(problem_time({}, None, T1), "index:3")], lambda item: item, stored)
    assert fresh == [(T1, "index:3")] and after == Boundary(T1, frozenset({"p-1", "index:3"}))
    again, _ = select_after([(problem_time({}, None, T1), "index:3")], lambda item: item, after)
    assert again == []
