"""Pure: each poll's position in its session, from the whole session's poll answers pull.

Kaltura gives no position or index for a stand-alone poll, and the pollsActivity report's row
order is undocumented (docs/reference/kaltura-api.md §11, UNCONFIRMED), so the position is derived
from what every pull of a session carries, per `KMSYNC_POLL_ORDER`:

- ``first_answer`` (default): by each poll's earliest ``answered_at`` (a poll launched earlier is
  answered earlier), ties by ``poll_id``;
- ``report_row``: by the first row each poll appears in (relies on the undocumented row order);
- ``poll_id``: by poll id.

Positions are 1-based per session and cover every poll of the session, also past 10 (transform
decides what has no slot). Computed over one whole pull, they number a session's polls the same for
every attendee, which transform, partitioned by attendee, cannot.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

PollOrder = Literal["first_answer", "report_row", "poll_id"]


def poll_positions(rows: Iterable[tuple[str, str, datetime]], order: PollOrder = "first_answer"
                   ) -> dict[tuple[str, str], int]:
    """(entry_id, poll_id, answered_at) of every row, in report order → {(entry_id, poll_id): position}."""
    first_row: dict[tuple[str, str], int] = {}
    first_answer: dict[tuple[str, str], datetime] = {}
    for n, (entry_id, poll_id, answered_at) in enumerate(rows):
        key = (entry_id, poll_id)
        first_row.setdefault(key, n)
        if key not in first_answer or answered_at < first_answer[key]:
            first_answer[key] = answered_at
    by_session: dict[str, list[tuple[str, str]]] = {}
    for key in first_row:
        by_session.setdefault(key[0], []).append(key)
    positions: dict[tuple[str, str], int] = {}
    for keys in by_session.values():
        if order == "first_answer":
            keys.sort(key=lambda k: (first_answer[k], k[1]))
        elif order == "report_row":
            keys.sort(key=lambda k: first_row[k])
        else:
            keys.sort(key=lambda k: k[1])
        positions.update({k: n for n, k in enumerate(keys, start=1)})
    return positions
