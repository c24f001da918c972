"""The sink's memory: the email → lead id cache (per instance) and the custom activity ledger."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from kmsync_contracts.outcomes import ActivityIntent


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

    def peek(self, email: str) -> int | None:
        """The id if cached, without counting a hit or a miss or refreshing its place (outcomes' lead id)."""
        return self._ids.get(email)

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


class ActivityWrites:
    """What the sink knows of custom activities, which are insert-only in Marketo (marketo-api.md
    §7.1): a replayed op_id must never be sent twice.

    - written: op_ids Marketo accepted (from marketo.results.v1 at start and the sink's own outcomes);
    - intents: op_ids the sink was about to send (marketo.activity-intents.v1, intents.py). An op_id
      with an intent and not written is *uncertain*: it may be in Marketo; it is verified against the
      lead's activity log before it is sent again;
    - live records: each intent record on the topic (key: an intent batch id, one per Add Custom
      Activities call; a record of the per-op shape older sinks wrote: its op id) with the op_ids it
      lists whose outcome is not certain yet. An op_id is held by its newest record only: a record
      whose op_ids are all certain or held by newer records is *settled* and its key is returned, to be
      tombstoned (intents.py). A settled key is never returned while an op it listed may still need
      it."""

    def __init__(self) -> None:
        self._written: set[str] = set()
        self._intents: dict[str, ActivityIntent] = {}
        #: Live record key → its op_ids not yet certain (and not held by a newer record).
        self._open: dict[str, set[str]] = {}
        #: op_id → the key of the record holding its intent.
        self._held_by: dict[str, str] = {}
        #: Live keys this process recorded itself.
        self._own: set[str] = set()

    def add(self, op_id: str) -> None:
        self._written.add(op_id)

    def __contains__(self, op_id: object) -> bool:
        return op_id in self._written

    def __len__(self) -> int:
        return len(self._written)

    def intend(self, intent: ActivityIntent) -> list[str]:
        """One intent in a record of its own, keyed by its op id (the shape before intent batches)."""
        return self.intend_batch(intent.op_id, [intent])

    def intend_batch(self, key: str, intents: Iterable[ActivityIntent], *, own: bool = False) -> list[str]:
        """The record ``key`` lists these intents; returns the keys of records this settles: older ones
        whose every open op_id this one now holds, or this one if newer records hold all of its op_ids (a
        start reads the topic's partitions in any order). An op's intent is the newest one recorded (its
        verification waits for the latest call that may still run at Marketo).

        ``own``: recorded by this process (IntentLog.record). Its memory of its own live records is newer
        than the topic, so a record or tombstone of such a key read back (ledger_reader.py) is ignored: a
        re-read record would bring back activities resolved since, and a tombstone read before the key's
        newer record could drop an intent still needed."""
        if not own and key in self._own:
            self._refresh(key, intents)
            return []
        settled: list[str] = []
        ops = self._open.get(key, set())
        for intent in intents:
            op_id = intent.op_id
            known = self._intents.get(op_id)
            if known is not None and known.recorded_at > intent.recorded_at and self._held_by[op_id] != key:
                continue  # held by a newer record
            self._intents[op_id] = intent
            older = self._held_by.get(op_id)
            if older is not None and older != key and self._release(older, op_id):
                settled.append(older)
            self._held_by[op_id] = key
            ops.add(op_id)
        if ops:
            self._open[key] = ops
            if own:
                self._own.add(key)
        else:
            settled.append(key)
        return settled

    def _refresh(self, key: str, intents: Iterable[ActivityIntent]) -> None:
        """A record of an own live key read back: only newer intents of its open op_ids are taken (the same
        batch sent again by another replica meanwhile; its call may still run at Marketo)."""
        ops = self._open[key]
        for intent in intents:
            known = self._intents.get(intent.op_id)
            if intent.op_id in ops and known is not None and known.recorded_at < intent.recorded_at:
                self._intents[intent.op_id] = intent

    def resolve(self, op_id: str) -> str | None:
        """This operation's outcome is certain: its intent is dropped. Returns the key of its record if
        that record is settled now (every op_id it listed certain or held by a newer record)."""
        self._intents.pop(op_id, None)
        key = self._held_by.pop(op_id, None)
        return key if key is not None and self._release(key, op_id) else None

    def drop_record(self, key: str) -> None:
        """The record ``key`` was tombstoned: the intents only it held are dropped (not if this process
        recorded the key and holds it live: intend_batch)."""
        if key in self._own:
            return
        for op_id in self._open.pop(key, ()):
            if self._held_by.get(op_id) == key:
                del self._held_by[op_id]
                self._intents.pop(op_id, None)

    def _release(self, key: str, op_id: str) -> bool:
        """``op_id`` no longer needs record ``key``; whether the record is settled now."""
        ops = self._open.get(key)
        if ops is None:
            return False
        ops.discard(op_id)
        if ops:
            return False
        del self._open[key]
        self._own.discard(key)
        return True

    def intent(self, op_id: str) -> ActivityIntent | None:
        return self._intents.get(op_id)

    def uncertain(self, op_id: str) -> ActivityIntent | None:
        """The intent of an operation that may have been applied (not known written), else None."""
        return None if op_id in self._written else self._intents.get(op_id)

    def live_records(self) -> dict[str, frozenset[str]]:
        """Live record key → the op_ids it still holds (tests, diagnostics)."""
        return {key: frozenset(ops) for key, ops in self._open.items()}

    @property
    def intents(self) -> int:
        return len(self._intents)
