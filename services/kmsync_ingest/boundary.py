"""De-duplication at the inclusive watermark boundary, and for re-pulled snapshots (pure logic).

Statuses: user-profile/list is filtered with updatedAtGreaterThanOrEqual=WATERMARK, so records
stamped exactly at the watermark come back on the next pull; they are skipped when their id is in
the stored ``seen_ids`` (docs/reference/kaltura-api.md §7.1: "inclusive ⇒ dedupe on (id, updatedAt)").

Engagement and polls are snapshots re-read for late data; a row is new when its content digest
was not produced before for that scope.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Boundary:
    """The inclusive watermark and the ids already produced at exactly that instant."""

    watermark: datetime
    seen_ids: frozenset[str]


def select_after(
    items: Iterable[T], stamp: Callable[[T], tuple[datetime, str]], boundary: Boundary | None
) -> tuple[list[T], Boundary | None]:
    """Items not yet produced, in input order, and the boundary after producing them.

    ``stamp`` gives an item's (time, id). Older than the watermark, or at it with a seen id, is a
    duplicate. The new boundary is the latest time seen and every id stamped with it.
    """
    fresh: list[T] = []
    latest = boundary.watermark if boundary else None
    at_latest: set[str] = set(boundary.seen_ids) if boundary else set()
    seen_in_batch: set[tuple[datetime, str]] = set()
    for item in items:
        when, ident = stamp(item)
        if (when, ident) in seen_in_batch:
            continue
        seen_in_batch.add((when, ident))
        if boundary is not None and (
            when < boundary.watermark or (when == boundary.watermark and ident in boundary.seen_ids)
        ):
            continue
        fresh.append(item)
        if latest is None or when > latest:
            latest, at_latest = when, {ident}
        elif when == latest:
            at_latest.add(ident)
    if latest is None:
        return fresh, None
    return fresh, Boundary(latest, frozenset(at_latest))


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
