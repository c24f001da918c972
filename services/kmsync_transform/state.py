"""Transform's four tables in memory, and their records in the compacted state topic.

One topic holds all four tables: the record key is `<table>:<state key>`, the value the entry as
JSON, a tombstone (no value) deletes it. Compaction keeps the last value per key, so reading the
topic from the start to its end rebuilds the tables. Pure: no I/O here.
"""

from __future__ import annotations

import json
from typing import Any

from kmsync_transform.staged import DELETED, StagedMapping
from kmsync_transform.transformer import TransformState

TABLES = ("statuses", "activity_ledger", "poll_slots", "poll_answers")


def record_key(table: str, key: str) -> bytes:
    return f"{table}:{key}".encode()


def record_value(value: Any) -> bytes | None:
    """The entry as compact JSON; None (a tombstone) for a deletion."""
    if value is DELETED:
        return None
    return json.dumps(value, separators=(",", ":")).encode()


class Tables:
    """The tables as dicts; `load()` applies state records, `stage()` opens a batch's views."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {name: {} for name in TABLES}
        #: State records read that belong to no known table (another version's); ignored.
        self.ignored = 0

    def load(self, key: bytes | None, value: bytes | None) -> None:
        table, sep, state_key = (key or b"").decode("utf-8", "replace").partition(":")
        if not sep or table not in self.data:
            self.ignored += 1
            return
        if value is None:
            self.data[table].pop(state_key, None)
        else:
            self.data[table][state_key] = json.loads(value)

    def stage(self) -> StagedTables:
        return StagedTables({name: StagedMapping(table) for name, table in self.data.items()})

    def __len__(self) -> int:
        return sum(len(t) for t in self.data.values())


class StagedTables:
    """A batch's write-behind views: the Transformer reads and writes them; the app writes the
    changes to the state topic, and only after Kafka has acknowledged them commits them to memory."""

    def __init__(self, views: dict[str, StagedMapping]) -> None:
        self.views = views

    def transform_state(self) -> TransformState:
        v = self.views
        return TransformState(v["statuses"], v["activity_ledger"], v["poll_slots"], v["poll_answers"])

    def records(self) -> list[tuple[bytes, bytes | None]]:
        """(key, value) of every staged change, for the state topic."""
        return [(record_key(table, key), record_value(value))
                for table, view in self.views.items() for key, value in view.changes().items()]

    def commit(self) -> None:
        for view in self.views.values():
            view.commit()
