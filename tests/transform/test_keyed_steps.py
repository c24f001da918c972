"""The quix engine's per-record steps (keyed.py) without a broker: the golden bytes, the state they
keep per message key, and the retention every write carries."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from kmsync_contracts.kaltura_records import kaltura_key
from kmsync_contracts.topics import POLL_RESPONSES
from kmsync_transform.keyed import Envelope, KeyedSteps, StateTable
from kmsync_transform.metrics import TransformMetrics

from .golden_inputs import NOW, _line, inputs, metric_lines, sources, tenants_config
from .test_golden_output import GOLDEN, assert_same_lines


class DictState:
    """quixstreams' State for one message key, in a dict; remembers each write's ttl."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttls: dict[str, timedelta | None] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, ttl: timedelta | None = None) -> None:
        self.data[key] = value
        self.ttls[key] = ttl

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def exists(self, key: str) -> bool:
        return key in self.data


class KeyedStores:
    """One DictState per message key, as a partitioned store scopes state."""

    def __init__(self) -> None:
        self.by_key: dict[str, DictState] = {}

    def __call__(self, key: str) -> DictState:
        return self.by_key.setdefault(key, DictState())


def message_key(raw: bytes) -> str:
    """The input's Kafka key as ingest writes it, partner:event:user (golden_inputs' sources() give
    other keys, which the dead letters carry)."""
    try:
        r = json.loads(raw)
        return kaltura_key(r["partner_id"], r["virtual_event_id"], r["user_id"])
    except (ValueError, KeyError, TypeError):
        return "(undecodable)"


def steps(metrics: TransformMetrics, retention: timedelta | None = timedelta(days=30)) -> KeyedSteps:
    return KeyedSteps(tenants_config(), metrics, clock=lambda: NOW, retention=retention)


def test_the_quix_steps_give_the_golden_bytes_and_metrics() -> None:
    """Statuses and engagement against their input key's state; polls routed, sent through the
    repartition envelope's bytes and stepped against their session's state: the same operations and
    dead letters, byte for byte and in order, as the pure path, and the same metric counts."""
    metrics = TransformMetrics()
    s, stores = steps(metrics), KeyedStores()
    lines: list[str] = []
    for (spec, raw), source in zip(inputs(), sources(inputs()), strict=True):
        if spec is POLL_RESPONSES:
            envelope = s.route_poll(raw, source)
            crossed = Envelope.decode(envelope.key, envelope.encode())
            outputs = s.poll(crossed, stores(crossed.key))
        else:
            outputs = s.record(spec, raw, source, stores(message_key(raw)))
        lines += [_line(dest, key, value) for dest, key, value in outputs if dest != "decisions"]
    want = [line for line in GOLDEN.read_text().splitlines() if line.startswith(("ops\t", "dlq\t"))]
    want += [line for line in GOLDEN.read_text().splitlines() if line.startswith("metric")]
    assert_same_lines(lines + metric_lines(metrics), want)
    assert len(stores.by_key) > 1  # the state really was split by key


def test_every_state_write_carries_the_retention() -> None:
    stores = KeyedStores()
    s = steps(TransformMetrics(), retention=timedelta(hours=5))
    for (spec, raw), source in zip(inputs(), sources(inputs()), strict=True):
        if spec is not POLL_RESPONSES:
            s.record(spec, raw, source, stores(message_key(raw)))
    ttls = [ttl for state in stores.by_key.values() for ttl in state.ttls.values()]
    assert ttls and set(ttls) == {timedelta(hours=5)}


def test_a_state_table_is_one_prefix_of_the_key_state() -> None:
    state = DictState()
    ledger, statuses = StateTable(state, "activity_ledger", None), StateTable(state, "statuses", None)
    ledger["a"] = "2026-11-27T09:00:00+00:00"
    assert "a" in ledger and "a" not in statuses and statuses.get("a") is None
    assert state.data == {"activity_ledger:a": "2026-11-27T09:00:00+00:00"}
    del ledger["a"]
    assert "a" not in ledger
