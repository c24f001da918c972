"""A write-behind view of a table: reads see staged writes, the table only gets them on commit().

The app computes a batch's operations against staged views of its tables, waits until Kafka has
acknowledged the operations, and only then writes the new state (changes(), then commit()). A crash
in between replays the batch against the old state and re-emits the same operations under the same
op_ids (at-least-once) instead of remembering operations that never reached Kafka (losing them).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

DELETED = object()


class StagedMapping(MutableMapping[str, Any]):
    def __init__(self, backing: MutableMapping[str, Any]) -> None:
        self.backing = backing
        self.staged: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.staged:
            value = self.staged[key]
            if value is DELETED:
                raise KeyError(key)
            return value
        return self.backing[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str) and key in self.staged:
            return self.staged[key] is not DELETED
        return key in self.backing

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __setitem__(self, key: str, value: Any) -> None:
        self.staged[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.staged[key] = DELETED

    def __iter__(self) -> Iterator[str]:
        keys = [k for k in self.backing if k not in self.staged]
        keys += [k for k, v in self.staged.items() if v is not DELETED]
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def changes(self) -> dict[str, Any]:
        """The staged writes: key → new value, or `DELETED` for a deletion."""
        return dict(self.staged)

    def commit(self) -> None:
        for key, value in self.staged.items():
            if value is DELETED:
                self.backing.pop(key, None)
            else:
                self.backing[key] = value
        self.staged.clear()

    def discard(self) -> None:
        self.staged.clear()
