"""The statuses overlap's pure logic (boundary.py): a pull that re-reads a window before the watermark
skips the versions it produced there and produces a version that became visible late, once; the watermark
never moves back; the memory is bounded and survives a round trip through a watermark record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kmsync_ingest.boundary import Boundary, Overlap, capped, decode_recent, encode_recent, select_after

T0 = datetime(2025, 6, 16, 13, 0, tzinfo=UTC)
WINDOW = Overlap(timedelta(seconds=60))


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stamp(item: tuple[datetime, str]) -> tuple[datetime, str]:
    return item


def test_a_version_visible_late_is_lost_without_overlap_and_produced_once_with_it() -> None:
    # Pull 1 sees a@0 and c@20; b@10 exists but is not visible yet (replica lag).
    first = [(s(0), "a"), (s(20), "c")]
    # Pull 2 (starting before the watermark with an overlap) sees all three.
    second = [(s(0), "a"), (s(10), "b"), (s(20), "c")]

    _, without = select_after(first, stamp, None)
    assert without is not None
    lost, _ = select_after([i for i in second if i[0] >= without.read_from(timedelta(0))], stamp, without)
    assert lost == [], "without an overlap the late version b@10 is never produced (the risk this setting covers)"

    _, with_overlap = select_after(first, stamp, None, WINDOW)
    assert with_overlap is not None and with_overlap.read_from(WINDOW.window) == s(-40)
    fresh, after = select_after(second, stamp, with_overlap, WINDOW)
    assert fresh == [(s(10), "b")], "only the late version is produced; a@0 and c@20 are skipped"
    assert after is not None and after.watermark == s(20), "the watermark does not move back for a late version"
    again, same = select_after(second, stamp, after, WINDOW)
    assert again == [] and same == after, "a third read produces nothing"


def test_the_memory_follows_the_watermark_and_forgets_what_left_the_window() -> None:
    _, b1 = select_after([(s(0), "a"), (s(50), "b")], stamp, None, WINDOW)
    assert b1 == Boundary(s(50), frozenset({"b"}), frozenset({("a", s(0))}), s(-10))
    _, b2 = select_after([(s(100), "c")], stamp, b1, WINDOW)
    assert b2 == Boundary(s(100), frozenset({"c"}), frozenset({("b", s(50))}), s(40))
    assert b2.covers(s(50), "b") and not b2.covers(s(45), "x") and b2.covers(s(39), "x")


def test_an_old_boundary_without_memory_starts_at_its_watermark() -> None:
    # A mark written before the overlap existed remembers only its watermark's ids: the first pull with an
    # overlap must not re-produce what it cannot tell from a new version, so it starts at the watermark.
    old = Boundary(s(100), frozenset({"a"}))
    assert old.read_from(WINDOW.window) == s(100)
    _, after = select_after([(s(100), "a"), (s(130), "b")], stamp, old, WINDOW)
    assert after is not None and after.recent_from == s(100) and after.recent == {("a", s(100))}
    assert after.read_from(WINDOW.window) == s(100)


def test_the_memory_is_capped_by_whole_instants_and_the_window_shrinks() -> None:
    items = [(s(t), f"p{t}") for t in range(0, 50, 10)] + [(s(50), "q"), (s(40), "r")]
    small = Overlap(timedelta(seconds=60), max_recent=3)
    _, after = select_after(sorted(items), stamp, None, small)
    assert after is not None
    # Versions before 50: p0, p10, p20, p30, p40, r@40; three kept would split 40 or not: 40 has 2, 30 has 1.
    assert after.recent == {("p40", s(40)), ("r", s(40)), ("p30", s(30))} and after.recent_from == s(30)
    assert capped(None, after, small)
    assert not capped(None, select_after(sorted(items), stamp, None, WINDOW)[1] or after, WINDOW)


def test_the_memory_round_trips_through_a_watermark_record() -> None:
    _, after = select_after([(s(0.123456), "id@with-at"), (s(30), "b")], stamp, None, WINDOW)
    assert after is not None and after.recent
    stored = encode_recent(after)
    assert decode_recent(Boundary(after.watermark, after.seen_ids), stored) == after
    assert decode_recent(Boundary(after.watermark, after.seen_ids), {"garbage"}) == Boundary(after.watermark, after.seen_ids)


def test_overlap_zero_keeps_the_old_boundary() -> None:
    _, after = select_after([(s(0), "a"), (s(5), "b")], stamp, None, Overlap())
    assert after == Boundary(s(5), frozenset({"b"}))
    assert encode_recent(after) == frozenset()


def test_an_older_version_read_after_a_newer_one_was_produced_is_stale_and_not_produced() -> None:
    # Pull 1 produced a@20 (a's newest version), b@30 and c@40 (the watermark); pull 2 reads from a lagging
    # replica that still shows a@10 and c@35, older versions of a and c, and d@25, a version never seen.
    _, first = select_after([(s(20), "a"), (s(30), "b"), (s(40), "c")], stamp, None, WINDOW)
    assert first is not None
    lagging = [(s(10), "a"), (s(25), "d"), (s(30), "b"), (s(35), "c")]
    fresh, after = select_after(lagging, stamp, first, WINDOW)
    assert fresh == [(s(25), "d")], "older versions of a and c would write older lead fields over newer ones"
    assert first.superseded(s(10), "a") and first.superseded(s(35), "c"), "a@20 in the memory, c@40 at the watermark"
    assert not first.superseded(s(25), "d") and not first.superseded(s(20), "a") and not first.superseded(s(45), "a")
    assert after is not None and after.watermark == s(40) and ("d", s(25)) in after.recent
    assert ("a", s(10)) not in after.recent and after.covers(s(20), "a")
    # Without an overlap nothing older than the watermark is produced anyway: nothing is stale there.
    _, plain = select_after([(s(20), "a"), (s(40), "c")], stamp, None)
    assert plain is not None and not plain.superseded(s(10), "a")
