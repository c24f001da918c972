"""Pure: transform's per-record steps over partitioned, keyed state (no I/O, no engine types).

An engine that keeps state per message key (quix, engine_quix.py) calls these once per record:

- statuses and engagement snapshots are processed on their input partition: the input key
  `partner:event:user` already puts every record of one person in one event on one partition, and
  the state they touch (the member's status, the person's activity ledger entries) is that person's
  within the event (one event → one Marketo instance and program);
- poll responses are first routed (`route_poll`) and re-keyed by their session, then processed on the
  partition that owns the session (`poll`), since a session's slots collect answers of every user.

State is read and written through `KeyedState` (the engine's state scoped to the current message key);
`StateTable` presents one table of it as the MutableMapping the pure modules take. Every write carries
the retention, so an event's state expires that long after its last record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from kmsync_config.tenants import TenantsConfig
from kmsync_contracts.codecs import encode, encode_fields
from kmsync_contracts.outcomes import TransformDecision
from kmsync_contracts.topics import POLL_RESPONSES, TopicSpec
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.polls import session_key
from kmsync_transform.routing import Routed, RoutedPoll, route
from kmsync_transform.transformer import Transformer, TransformState

#: Where an output goes: marketo.ops.v1 (key munchkin id; marketo.ops.backfill.v1 for a record of the backfill
#: lane, issue #18), transform.dlq.v1 (key: the input's key) or transform.decisions.v1 (key partner:event:user).
Destination = Literal["ops", "ops_backfill", "dlq", "decisions"]
Output = tuple[Destination, bytes, bytes]


#: A StateTable's mark for a key it has not read yet (None is an absent entry).
_UNREAD = object()


class KeyedState(Protocol):
    """The engine's state for the current message key (quixstreams' State has this shape)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, ttl: timedelta | None = None) -> None: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class StateTable(MutableMapping[str, Any]):
    """One table (`statuses`, `activity_ledger`, ...) of a KeyedState: keys `<table>:<key>`.

    Bound to one record's state at a time (``bind``), it remembers what it read and wrote during that
    record: a status record reads its
    member's status, label and lead entries up to five times (forward_only.py, labels.py, lead_fields.py),
    and each engine read deserializes again (issue #22: the engine's reads were a fifth of the per-record
    CPU). The values are JSON-shaped (dicts, lists, text, numbers), the modules copy a value before they
    change it, and nothing else writes this key's state during the record, so a value read again is the
    one the engine would give. Iteration and len() are not offered: the pure modules only look entries
    up and write them."""

    def __init__(self, state: KeyedState, table: str, ttl: timedelta | None) -> None:
        self.state = state
        self.prefix = f"{table}:"
        self.ttl = ttl
        self._known: dict[str, Any] = {}

    def bind(self, state: KeyedState) -> None:
        """Serve the next record's state (its message key's): nothing read before is remembered."""
        self.state = state
        self._known.clear()

    def _value(self, key: str) -> Any:
        """The entry's value (None when absent), read from the engine once."""
        value = self._known.get(key, _UNREAD)
        if value is _UNREAD:
            value = self._known[key] = self.state.get(self.prefix + key)
        return value

    def __getitem__(self, key: str) -> Any:
        value = self._value(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._value(key)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._value(key) is not None

    def __setitem__(self, key: str, value: Any) -> None:
        self.state.set(self.prefix + key, value, ttl=self.ttl)
        self._known[key] = value

    def __delitem__(self, key: str) -> None:
        self.state.delete(self.prefix + key)
        self._known[key] = None

    def flush(self) -> None:
        """Write what the record deferred (nothing: a StateTable writes through)."""

    def __iter__(self) -> Iterator[str]:
        raise TypeError("a keyed state table cannot be iterated")

    def __len__(self) -> int:
        raise TypeError("a keyed state table has no length")


#: The member's entries of the statuses table (forward_only.py's status under the member key, labels.py's
#: ``label|<member>``, lead_fields.py's ``lead|<member>``), as MemberTable names their parts.
MEMBER_PARTS = ("label", "lead")
#: MemberTable's layout mark in an engine entry; a status entry of the earlier layout has no such key.
MEMBER_LAYOUT = "member.v2"


class MemberTable(StateTable):
    """The statuses table with a member's status, label and lead fingerprint in ONE engine entry,
    ``statuses:<member>`` = {"member.v2": 1, "status": ..., "label": ..., "lead": ...} (issue #22).

    A status record used to write up to three engine entries (2.5 per record on the capacity workload),
    each a changelog record the broker takes; now it writes one key, which quixstreams' checkpoint turns
    into one changelog record however often the record sets it. Every write carries the TTL, so the
    member's entry expires as its three did. State of the earlier layout is read as it was written:
    an engine entry without the layout mark is the member's bare status, and the label and lead entries
    are then read from their own keys; the first write after an upgrade moves all three into the one
    entry (the old keys are no longer read and expire with their TTL). Writes are deferred to `flush()`
    at the end of the record: a status record sets the status, the label and the lead (2.5 engine
    writes, each serialized and stamped by quixstreams) and the engine gets one."""

    def __init__(self, state: KeyedState, table: str, ttl: timedelta | None) -> None:
        super().__init__(state, table, ttl)
        self._dirty: set[str] = set()

    def bind(self, state: KeyedState) -> None:
        super().bind(state)
        self._dirty.clear()

    def flush(self) -> None:
        for member in self._dirty:
            self.state.set(self.prefix + member, self._known[member], ttl=self.ttl)
        self._dirty.clear()

    def _split(self, key: str) -> tuple[str, str]:
        """(member key, part) of a table key."""
        head, sep, member = key.partition("|")
        if sep and head in MEMBER_PARTS:
            return member, head
        return key, "status"

    def _entry(self, member: str) -> dict[str, Any]:
        """The member's entry (its parts), read from the engine once per record."""
        entry = self._known.get(member, _UNREAD)
        if entry is _UNREAD:
            found = self.state.get(self.prefix + member)
            if isinstance(found, dict) and MEMBER_LAYOUT in found:
                entry = found
            else:  # the earlier layout, or nothing yet
                entry = {MEMBER_LAYOUT: 1}
                parts = {"status": found, **{p: self.state.get(f"{self.prefix}{p}|{member}") for p in MEMBER_PARTS}}
                entry.update((p, v) for p, v in parts.items() if v is not None)
            self._known[member] = entry
        return entry

    def _value(self, key: str) -> Any:
        member, part = self._split(key)
        return self._entry(member).get(part)

    def __setitem__(self, key: str, value: Any) -> None:
        member, part = self._split(key)
        self._known[member] = {**self._entry(member), part: value}
        self._dirty.add(member)

    def __delitem__(self, key: str) -> None:
        member, part = self._split(key)
        # Written, not deleted, when no part is left: the mark keeps earlier-layout keys from being read again.
        self._known[member] = {p: v for p, v in self._entry(member).items() if p != part}
        self._dirty.add(member)


def transform_state(state: KeyedState, ttl: timedelta | None) -> TransformState:
    return TransformState(MemberTable(state, "statuses", ttl), StateTable(state, "activity_ledger", ttl),
                          StateTable(state, "poll_slots", ttl), StateTable(state, "poll_answers", ttl))


class _Unbound:
    """The state of KeyedSteps' tables before a record binds its own."""

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("no record's state is bound")

    def set(self, key: str, value: Any, ttl: timedelta | None = None) -> None:
        raise RuntimeError("no record's state is bound")

    def delete(self, key: str) -> None:
        raise RuntimeError("no record's state is bound")

    def exists(self, key: str) -> bool:
        raise RuntimeError("no record's state is bound")


@dataclass(frozen=True)
class Envelope:
    """What crosses the repartition topic: a routed poll (keyed by its session) or the dead letter
    of a poll response that could not be routed (keyed by the input key), with its decision if any
    (an unusable email: "U" + the dead letter's length, a space, the dead letter, the decision)."""

    key: str
    routed: RoutedPoll | None = None
    #: The encoded dead letter, passed through as it is.
    dead_letter: bytes | None = None
    #: The encoded decision that goes with the dead letter, passed through as it is.
    decision: bytes | None = None

    def encode(self) -> bytes:
        if self.routed is not None:
            return b"R" + self.routed.model_dump_json().encode()
        assert self.dead_letter is not None
        if self.decision is not None:
            return b"U%d %b%b" % (len(self.dead_letter), self.dead_letter, self.decision)
        return b"D" + self.dead_letter

    @classmethod
    def decode(cls, key: str, raw: bytes) -> Envelope:
        kind, body = raw[:1], raw[1:]
        if kind == b"R":
            return cls(key, routed=RoutedPoll.model_validate_json(body))
        if kind == b"D":
            return cls(key, dead_letter=body)
        if kind == b"U":
            length, _, rest = body.partition(b" ")
            return cls(key, dead_letter=rest[:int(length)], decision=rest[int(length):])
        raise ValueError(f"not a transform repartition record (starts with {kind!r})")


class KeyedSteps:
    """The steps an engine runs per record; `clock` is read once per record."""

    def __init__(
        self,
        tenants: TenantsConfig,
        metrics: TransformMetrics,
        *,
        clock: Callable[[], datetime],
        retention: timedelta | None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """``options``: the Transformer's mapping settings (``TransformSettings.transformer_options``; None: its
        defaults)."""
        self.tenants = tenants
        self.metrics = metrics
        self.clock = clock
        self.retention = retention
        self.options: dict[str, Any] = dict(options or {})
        # One Transformer over four tables each record binds to its key's state (one built per record,
        # with its tables and helpers, cost about 2 % of a record's CPU; issue #22).
        self._tables = (MemberTable(_Unbound(), "statuses", retention),
                        *(StateTable(_Unbound(), name, retention) for name in ("activity_ledger", "poll_slots",
                                                                                 "poll_answers")))
        self._now = datetime.min
        self._transformer = Transformer(tenants, TransformState(*self._tables), clock=self._record_time,
                                        **self.options)

    def _record_time(self) -> datetime:
        """The clock the Transformer reads: the time the current record was read at."""
        return self._now

    def record(self, spec: TopicSpec, raw: bytes, source: SourceRef, state: KeyedState) -> list[Output]:
        """A status or an engagement snapshot, on its input partition, against its key's state."""
        now = self.clock()
        routed = route(spec, raw, source, self.tenants, now)
        self.metrics.routed(spec.name, routed)
        if routed.dead_letter is not None:
            return [("dlq", _key(source), encode(routed.dead_letter)), *_decisions(routed.decision)]
        assert routed.routed is not None
        return self._apply(routed.routed, source, state, now)

    def route_poll(self, raw: bytes, source: SourceRef) -> Envelope:
        """Stage 1 of a poll response: route it and key it by its session (or dead-letter it)."""
        routed = route(POLL_RESPONSES, raw, source, self.tenants, self.clock())
        self.metrics.routed(POLL_RESPONSES.name, routed)
        if routed.dead_letter is not None:
            return Envelope(source.key or "", dead_letter=encode(routed.dead_letter),
                            decision=encode(routed.decision) if routed.decision is not None else None)
        assert isinstance(routed.routed, RoutedPoll)
        r = routed.routed
        return Envelope(session_key(r.munchkin_id, r.record.virtual_event_id, r.record.entry_id), routed=r)

    def poll(self, envelope: Envelope, state: KeyedState) -> list[Output]:
        """Stage 2 of a poll response, on the partition that owns its session."""
        if envelope.dead_letter is not None:
            out: list[Output] = [("dlq", envelope.key.encode(), envelope.dead_letter)]
            if envelope.decision is not None:
                out.append(("decisions", envelope.key.encode(), envelope.decision))
            return out
        assert envelope.routed is not None
        return self._apply(envelope.routed, envelope.routed.source, state, self.clock())

    def _apply(self, routed: Routed, source: SourceRef, state: KeyedState, now: datetime) -> list[Output]:
        for table in self._tables:
            table.bind(state)
        self._now = now
        result = self._transformer.apply(routed)
        for table in self._tables:
            table.flush()
        self.metrics.stepped(result)
        lane: Destination = "ops_backfill" if routed.record.lane == "backfill" else "ops"
        # encode()'s bytes, from the fields (codecs.encode_fields: 40 % less for an engagement row's two).
        out: list[Output] = [(lane, op.munchkin_id.encode(), encode_fields(op)) for op in result.ops]
        out += [("dlq", _key(source), encode(dl)) for dl in result.dead_letters]
        out += _decisions(*result.decisions)
        return out


def _key(source: SourceRef) -> bytes:
    return (source.key or "").encode()


def _decisions(*decisions: TransformDecision | None) -> list[Output]:
    return [("decisions", d.partition_key().encode(), encode(d)) for d in decisions if d is not None]
