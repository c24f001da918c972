"""The sink's memory: the email → lead id cache (per instance) and the custom activity ledger."""

from __future__ import annotations

from collections import OrderedDict

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
      lead's activity log before it is sent again.

    An intent this process recorded itself (``own``) and has not resolved is newer than anything of that
    op_id a catch-up can read back (the reader reads up to ends taken when it starts, and lags behind this
    process's own sends): an older intent or tombstone read from the topic never replaces or drops it. A
    tombstone read over it would make the op look certain while its call may still be answered ambiguously
    (a blind resend: a duplicate); an older intent would move its verification earlier."""

    def __init__(self) -> None:
        self._written: set[str] = set()
        self._intents: dict[str, ActivityIntent] = {}
        self._own: set[str] = set()

    def add(self, op_id: str) -> None:
        self._written.add(op_id)

    def __contains__(self, op_id: object) -> bool:
        return op_id in self._written

    def __len__(self) -> int:
        return len(self._written)

    def intend(self, intent: ActivityIntent, *, own: bool = False) -> None:
        """``own``: recorded by this process (acknowledged by Kafka); else read from the topic."""
        if own:
            self._own.add(intent.op_id)
        elif intent.op_id in self._own:
            return  # this process's own intent is newer than one read back
        self._intents[intent.op_id] = intent

    def resolve(self, op_id: str) -> None:
        """This process knows the operation's outcome is certain."""
        self._own.discard(op_id)
        self._intents.pop(op_id, None)

    def tombstone_read(self, op_id: str) -> None:
        """A tombstone read from the topic: another writer (or this process, earlier) found it certain."""
        if op_id not in self._own:
            self._intents.pop(op_id, None)

    def intent(self, op_id: str) -> ActivityIntent | None:
        return self._intents.get(op_id)

    def uncertain(self, op_id: str) -> ActivityIntent | None:
        """The intent of an operation that may have been applied (not known written), else None."""
        return None if op_id in self._written else self._intents.get(op_id)

    @property
    def intents(self) -> int:
        return len(self._intents)
