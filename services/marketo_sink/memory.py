"""The sink's per-instance memory: the email → lead id cache and the custom activity ledger."""

from __future__ import annotations

from collections import OrderedDict


class LeadCache:
    """Bounded LRU of email → Marketo lead id (emails are normalised lower-case by transform)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, int] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, email: str) -> int | None:
        lead_id = self._ids.get(email)
        if lead_id is None:
            self.misses += 1
            return None
        self.hits += 1
        self._ids.move_to_end(email)
        return lead_id

    def __contains__(self, email: object) -> bool:
        return email in self._ids

    def put(self, email: str, lead_id: int) -> None:
        if self.capacity <= 0:
            return
        self._ids[email] = lead_id
        self._ids.move_to_end(email)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def evict(self, email: str) -> None:
        self._ids.pop(email, None)

    def __len__(self) -> int:
        return len(self._ids)


class ActivityLedger:
    """op_ids of custom activities already written. Custom activities are insert-only in Marketo
    (marketo-api.md §7.1), so a replayed op_id must never be sent twice. Filled from
    marketo.results.v1 on start and from the sink's own outcomes."""

    def __init__(self) -> None:
        self._written: set[str] = set()

    def add(self, op_id: str) -> None:
        self._written.add(op_id)

    def __contains__(self, op_id: object) -> bool:
        return op_id in self._written

    def __len__(self) -> int:
        return len(self._written)
