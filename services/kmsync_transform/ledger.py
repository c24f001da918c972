"""The activity ledger: a custom activity is insert-only in Marketo (docs/reference/marketo-api.md §7.1), so each
one is emitted at most once per (instance, person, session), under a deterministic id.

The first final snapshot of a session wins; a replayed or late final snapshot finds its id in the
ledger and emits nothing (the custom object still takes the late figures, it is an upsert).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from kmsync_contracts.seed import ENGAGEMENT_ACTIVITY_API_NAME
from kmsync_transform.op_ids import op_id


def activity_op_id(munchkin_id: str, virtual_event_id: int, entry_id: str, email: str) -> str:
    return op_id("custom_activity", munchkin_id, ENGAGEMENT_ACTIVITY_API_NAME, virtual_event_id, entry_id, email)


class ActivityLedger:
    """op_id → when it was first emitted (ISO text), in any mutable mapping (a table of the app)."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    def seen(self, activity_id: str) -> bool:
        return activity_id in self.table

    def claim(self, activity_id: str, emitted_at: str) -> bool:
        """True exactly once per id: the caller emits the activity only then."""
        if activity_id in self.table:
            return False
        self.table[activity_id] = emitted_at
        return True
