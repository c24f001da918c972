"""Transform's per-record state reads (issue #22): a StateTable reads each entry from the engine once
per record, and what it gives back is what the engine would (quixstreams stores JSON: every read
of the engine is a fresh copy)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

from kmsync_contracts.topics import ATTENDEE_STATUS, POLL_RESPONSES
from kmsync_transform.keyed import Envelope, KeyedSteps, StateTable
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.transformer import Transformer, TransformState

from .golden_inputs import NOW, _json, _line, inputs, sources, status, tenants_config
from .test_golden_output import GOLDEN, assert_same_lines
from .test_keyed_steps import message_key


class JsonState:
    """One message key's state as quixstreams keeps it: values serialized on write, a fresh copy on
    every read; counts the reads of each key."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.reads: Counter[str] = Counter()

    def get(self, key: str, default: Any = None) -> Any:
        self.reads[key] += 1
        return json.loads(self.data[key]) if key in self.data else default

    def set(self, key: str, value: Any, ttl: timedelta | None = None) -> None:
        self.data[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def exists(self, key: str) -> bool:
        return key in self.data


def steps() -> KeyedSteps:
    return KeyedSteps(tenants_config(), TransformMetrics(), clock=lambda: NOW, retention=timedelta(days=30))


def test_a_status_record_reads_each_state_entry_once() -> None:
    """Forward-only, the label order and the lead memory all look at the member's entries: the
    status entry, the label and the lead fingerprint are read from the engine once each."""
    s, state = steps(), JsonState()
    for n, name in enumerate(("registered", "confirmed")):
        raw = _json(status(name, minutes=n))
        state.reads.clear()
        outputs = s.record(ATTENDEE_STATUS, raw, next(sources([(ATTENDEE_STATUS, raw)])), state)
        assert [dest for dest, _, _ in outputs].count("ops") >= 2
        assert state.reads and max(state.reads.values()) == 1, state.reads
        # The member's status, label and lead live in one entry (keyed.MemberTable); only before it exists
        # are the earlier layout's label and lead keys looked at.
        want = {"statuses:123-ABC-456", "statuses:label", "statuses:lead"} if n == 0 else {"statuses:123-ABC-456"}
        assert {key.split("|")[0] for key in state.reads} == want


def test_a_state_table_gives_back_what_was_written_and_deleted_in_the_record() -> None:
    state = JsonState()
    table = StateTable(state, "statuses", None)
    assert table.get("m") is None and "m" not in table
    table["m"] = {"name": "Registered", "step": 30}
    assert table["m"] == {"name": "Registered", "step": 30} and state.reads["statuses:m"] == 1
    del table["m"]
    assert "m" not in table and state.reads["statuses:m"] == 1 and "statuses:m" not in state.data


def test_the_golden_bytes_over_a_state_that_stores_json() -> None:
    """The golden operations and dead letters, byte for byte, when every engine read is a copy of
    JSON (as quixstreams' RocksDB state gives it), not the object a record wrote."""
    s, stores = steps(), dict[str, JsonState]()
    lines: list[str] = []
    for (spec, raw), source in zip(inputs(), sources(inputs()), strict=True):
        if spec is POLL_RESPONSES:
            envelope = s.route_poll(raw, source)
            crossed = Envelope.decode(envelope.key, envelope.encode())
            outputs = s.poll(crossed, stores.setdefault(crossed.key, JsonState()))
        else:
            outputs = s.record(spec, raw, source, stores.setdefault(message_key(raw), JsonState()))
        lines += [_line(dest, key, value) for dest, key, value in outputs if dest != "decisions"]
    assert_same_lines(lines, [line for line in GOLDEN.read_text().splitlines() if line.startswith(("ops\t", "dlq\t"))])


def test_each_record_reads_its_own_key_state() -> None:
    """The steps' tables serve one record at a time: the same person's status against another key's
    (empty) state is new there, whatever the previous record read and wrote."""
    s, first, second = steps(), JsonState(), JsonState()
    raw = _json(status("registered"))
    source = next(sources([(ATTENDEE_STATUS, raw)]))
    assert [d for d, _, _ in s.record(ATTENDEE_STATUS, raw, source, first)].count("ops") == 3
    assert [d for d, _, _ in s.record(ATTENDEE_STATUS, raw, source, first)].count("ops") == 0  # a repeat
    assert [d for d, _, _ in s.record(ATTENDEE_STATUS, raw, source, second)].count("ops") == 3
    assert second.data.keys() == first.data.keys()


class WriteCountingState(JsonState):
    """JsonState that also remembers which keys each record wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.written: set[str] = set()
        self.sets = 0

    def set(self, key: str, value: Any, ttl: timedelta | None = None) -> None:
        self.written.add(key)
        self.sets += 1
        super().set(key, value, ttl)


def earlier_layout_steps() -> KeyedSteps:
    """The steps as the previous version ran them: the statuses table as plain StateTable entries, the
    member's status, ``label|<member>`` and ``lead|<member>`` each under its own engine key."""
    s = steps()
    s._tables = (StateTable(s._tables[0].state, "statuses", s.retention), *s._tables[1:])
    s._transformer = Transformer(s.tenants, TransformState(*s._tables), clock=s._record_time, **s.options)
    return s


def run(s: KeyedSteps, items: list[Any], stores: dict[str, WriteCountingState]) -> list[list[str]]:
    """Each input's output lines (polls through the repartition envelope), against stores by key."""
    out = []
    for (spec, raw), source in items:
        if spec is POLL_RESPONSES:
            envelope = s.route_poll(raw, source)
            crossed = Envelope.decode(envelope.key, envelope.encode())
            outputs = s.poll(crossed, stores.setdefault(crossed.key, WriteCountingState()))
        else:
            state = stores.setdefault(message_key(raw), WriteCountingState())
            state.written.clear()
            state.sets = 0
            outputs = s.record(spec, raw, source, state)
        out.append([_line(dest, key, value) for dest, key, value in outputs])
    return out


def test_a_status_record_writes_one_state_entry() -> None:
    """The member's status, label and lead fingerprint are one engine entry (one changelog record per
    checkpoint), not three: every status record writes at most one key, once (the writes are deferred to
    the record's end), and no label|/lead| key exists."""
    stores: dict[str, WriteCountingState] = {}
    s = steps()
    items = list(zip(inputs(), sources(inputs()), strict=True))
    written = []
    for item in items:
        run(s, [item], stores)
        if item[0][0] is ATTENDEE_STATUS:
            state = stores[message_key(item[0][1])]
            assert state.sets == len(state.written)
            written.append(len(state.written))
    assert written and max(written) == 1 and sum(written) > len(written) / 2
    keys = {key for state in stores.values() for key in state.data}
    assert not [k for k in keys if k.startswith(("statuses:label|", "statuses:lead|"))]
    entries = [json.loads(state.data[k]) for state in stores.values() for k in state.data if k.startswith("statuses:")]
    assert any("label" in e and "lead" in e and "status" in e for e in entries), entries


def test_state_of_the_earlier_layout_is_read_after_an_upgrade() -> None:
    """The golden inputs are processed by the previous version's layout, then replayed (and a second,
    later pass of the same people) by this one over the same state: the outputs are those of a run that
    never changed layout. Statuses, labels and lead fingerprints written before the upgrade still count
    (a replayed status sends no second lead upsert, a lower label stays undecided)."""
    items = list(zip(inputs(), sources(inputs()), strict=True))
    upgraded: dict[str, WriteCountingState] = {}
    run(earlier_layout_steps(), items, upgraded)
    old_keys = {key for state in upgraded.values() for key in state.data}
    assert [k for k in old_keys if k.startswith("statuses:label|")] and [k for k in old_keys if
                                                                          k.startswith("statuses:lead|")]
    after = run(steps(), items, upgraded)
    same: dict[str, WriteCountingState] = {}
    run(steps(), items, same)
    assert after == run(steps(), items, same)
    assert sum(map(len, after)) > 0
