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
        assert {key.split("|")[0] for key in state.reads} == {"statuses:123-ABC-456", "statuses:label",
                                                              "statuses:lead"}


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
