"""De-duplication at the inclusive watermark boundary, and for re-pulled snapshots (pure logic).

Statuses: user-profile/list is filtered with updatedAtGreaterThanOrEqual=WATERMARK, so records
stamped exactly at the watermark come back on the next pull; they are skipped when their id is in
the stored ``seen_ids`` (docs/reference/kaltura-api.md §7.1: "inclusive ⇒ dedupe on (id, updatedAt)").

Overlap (KMSYNC_STATUSES_OVERLAP_SECONDS): whether Kaltura can make a profile version visible only after a
later updatedAt was served is UNCONFIRMED (docs/reference/kaltura-api.md §7.1.1), so a pull may start that
long before the watermark. The boundary then also remembers every (id, updatedAt) it produced from
``recent_from`` up to the watermark (``recent``): a re-read version found there is skipped, one not found
there is a version that became visible late, and is produced, unless the memory holds a later version of the
same id (``superseded``: a lagging read served an older version after the newer one was produced; producing it
would write older lead fields over newer ones), which is skipped as stale. Before ``recent_from`` nothing is
known, so a pull never starts earlier (``read_from``) and anything older counts as produced, as without an overlap.

Engagement and polls are snapshots re-read for late data; a row is new when its content digest
was not produced before for that scope.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Boundary:
    """The inclusive watermark, the ids already produced at exactly that instant and (with an overlap)
    the (id, time) of every record produced from ``recent_from`` up to the watermark."""

    watermark: datetime
    seen_ids: frozenset[str]
    #: (id, time) of records produced before the watermark, at ``recent_from`` or later.
    recent: frozenset[tuple[str, datetime]] = frozenset()
    #: From when ``recent`` is complete; None: nothing before the watermark is remembered.
    recent_from: datetime | None = None

    def covers(self, when: datetime, ident: str) -> bool:
        """Was this version produced already (or is it too old to tell, so it counts as produced)?"""
        if when > self.watermark:
            return False
        if when == self.watermark:
            return ident in self.seen_ids
        if self.recent_from is None or when < self.recent_from:
            return True
        return (ident, when) in self.recent

    @cached_property
    def newest(self) -> dict[str, datetime]:
        """Each remembered id's newest remembered time (the watermark for ``seen_ids``), built once per boundary."""
        newest: dict[str, datetime] = {}
        for ident, when in self.recent:
            if ident not in newest or when > newest[ident]:
                newest[ident] = when
        newest.update(dict.fromkeys(self.seen_ids, self.watermark))
        return newest

    def superseded(self, when: datetime, ident: str) -> bool:
        """Does the memory hold a later version of this id than ``when`` (so this one must not be produced)?"""
        if when >= self.watermark or self.recent_from is None:
            return False
        later = self.newest.get(ident)
        return later is not None and later > when

    def read_from(self, overlap: timedelta) -> datetime:
        """Where the next pull starts: ``overlap`` before the watermark, never before what ``recent`` covers."""
        if self.recent_from is None or overlap <= timedelta(0):
            return self.watermark
        return max(self.watermark - overlap, self.recent_from)


@dataclass(frozen=True)
class Overlap:
    """How far before the watermark pulls re-read, and how many versions the boundary may remember."""

    window: timedelta = timedelta(0)
    max_recent: int = 10_000


def select_after(
    items: Iterable[T], stamp: Callable[[T], tuple[datetime, str]], boundary: Boundary | None,
    overlap: Overlap | None = None,
) -> tuple[list[T], Boundary | None]:
    """Items not yet produced, in input order, and the boundary after producing them.

    ``stamp`` gives an item's (time, id); ``boundary.covers`` says what is a duplicate and ``boundary.superseded``
    what is stale (an older version of a record whose newer one was produced: never produced). The new boundary is
    the latest time seen and every id stamped with it (the watermark never moves back: an item found late,
    older than the watermark, joins ``recent``), and with an overlap what was produced in its window.
    """
    fresh: list[T] = []
    latest = boundary.watermark if boundary else None
    at_latest: set[str] = set(boundary.seen_ids) if boundary else set()
    produced: set[tuple[str, datetime]] = set(boundary.recent) if boundary else set()
    seen_in_batch: set[tuple[datetime, str]] = set()
    for item in items:
        when, ident = stamp(item)
        if (when, ident) in seen_in_batch:
            continue
        seen_in_batch.add((when, ident))
        if boundary is not None and (boundary.covers(when, ident) or boundary.superseded(when, ident)):
            continue
        fresh.append(item)
        if latest is None or when > latest:
            produced.update((i, latest) for i in at_latest if latest is not None)
            latest, at_latest = when, {ident}
        elif when == latest:
            at_latest.add(ident)
        else:
            produced.add((ident, when))
    if latest is None:
        return fresh, None
    return fresh, _remembered(Boundary(latest, frozenset(at_latest)), produced, boundary, overlap or Overlap())


def _remembered(
    after: Boundary, produced: set[tuple[str, datetime]], before: Boundary | None, overlap: Overlap
) -> Boundary:
    """``after`` with what it must remember of the overlap window (at most ``overlap.max_recent`` versions:
    the oldest instants are forgotten whole, and ``recent_from`` moves up past them)."""
    if overlap.window <= timedelta(0):
        return after
    start = window_start(before, after, overlap)
    kept = sorted((p for p in produced if start <= p[1] < after.watermark), key=lambda p: p[1], reverse=True)
    if len(kept) > overlap.max_recent:
        cut = kept[overlap.max_recent][1]  # every version at this instant or older is forgotten
        kept = [p for p in kept if p[1] > cut]
        start = kept[-1][1] if kept else after.watermark
    if start >= after.watermark:
        return after
    return Boundary(after.watermark, after.seen_ids, frozenset(kept), start)


def window_start(before: Boundary | None, after: Boundary, overlap: Overlap) -> datetime:
    """From when ``after`` can remember every version produced: ``overlap.window`` before its watermark, but
    not before what ``before`` knew (the first pull read everything; an older boundary knew its watermark)."""
    start = after.watermark - overlap.window
    if before is None:
        return start
    return max(start, before.recent_from or before.watermark)


def capped(before: Boundary | None, after: Boundary, overlap: Overlap) -> bool:
    """Did ``after`` forget versions of its window because there were more than ``overlap.max_recent``?"""
    if overlap.window <= timedelta(0) or after == before:
        return False
    return (after.recent_from or after.watermark) > window_start(before, after, overlap)


#: The separator of a remembered version's id and time (microseconds since the epoch) in a stored mark.
_AT = "@"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_recent(boundary: Boundary) -> frozenset[str]:
    """``recent`` and ``recent_from`` as the seen ids of a watermark record: "<id>@<µs>" per version and
    "@<µs>" (an empty id, which no record has) for ``recent_from``."""
    if boundary.recent_from is None:
        return frozenset()
    return frozenset({f"{_AT}{_micros(boundary.recent_from)}", *(f"{i}{_AT}{_micros(t)}" for i, t in boundary.recent)})


def decode_recent(boundary: Boundary, stored: Iterable[str]) -> Boundary:
    """``boundary`` with the memory ``encode_recent`` stored (unreadable entries: no memory at all)."""
    recent: set[tuple[str, datetime]] = set()
    start: datetime | None = None
    for entry in stored:
        ident, _, micros = entry.rpartition(_AT)
        if not micros.isdigit():
            return boundary
        when = _EPOCH + timedelta(microseconds=int(micros))
        if ident:
            recent.add((ident, when))
        else:
            start = when
    if start is None or start >= boundary.watermark:
        return boundary
    return Boundary(boundary.watermark, boundary.seen_ids, frozenset(p for p in recent if p[1] >= start), start)


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


def digest(values: Mapping[str, object]) -> str:
    """A short, stable digest of a row's content (order of keys does not matter)."""
    text = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def select_changed(
    items: Iterable[T], content: Callable[[T], Mapping[str, object]], seen: frozenset[str]
) -> tuple[list[T], frozenset[str]]:
    """Rows whose content was not produced before, and the digests of every current row.

    Keeping only the current digests bounds the stored set by the snapshot's size; a row that
    changes and changes back is produced again, which is a real change of the source record.
    """
    fresh: list[T] = []
    current: set[str] = set()
    for item in items:
        d = digest(content(item))
        if d in current:
            continue
        current.add(d)
        if d not in seen:
            fresh.append(item)
    return fresh, frozenset(current)
