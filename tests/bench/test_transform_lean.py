"""kmsync_bench.transform_lean's lean loop does the quix engine's work (so it cannot measure less): for
the same input it commits the same operations, decisions and dead letters (keys, bytes, partitions), and
writes the same state entries to a changelog topic. Real broker, a few seconds per engine."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from kmsync_bench.transform_cpu import RETENTION, Input, counted, person, produce, tenants
from kmsync_bench.transform_lean import OFFSET_KEY, LeanState, LeanTransform, PartitionStore, changelog_name
from kmsync_common.clock import SystemClock
from kmsync_contracts.groups import TRANSFORM_APP_ID
from kmsync_contracts.topics import (
    ATTENDEE_STATUS,
    MARKETO_OPS,
    POLL_RESPONSES,
    SESSION_ENGAGEMENT,
    TRANSFORM_DECISIONS,
    TRANSFORM_DLQ,
)
from kmsync_kafka import topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.engine_quix import QuixTransform
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.settings import TransformSettings

PEOPLE = 6
#: Operations and records in the emitted form carry the clock (emitted_at): both engines read this one.
FIXED = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


class FixedNow(SystemClock):
    def now(self) -> datetime:
        return FIXED


def workload() -> list[Input]:
    """Each person's statuses and engagement snapshot (no polls: the lean loop has no repartition), then a
    status regression (a forward-only skip decision) and a record that is not JSON (a dead letter)."""
    records = [r for i in range(PEOPLE) for r in person(i) if r[0] is not POLL_RESPONSES]
    return [*records, person(0)[0], (SESSION_ENGAGEMENT, b"partner:event:nobody", b"not json"),
            (ATTENDEE_STATUS, person(1)[1][1], b"{}")]


def run(engine_kind: str, broker: KafkaBroker, prefix: str, state_dir: Path, records: list[Input]) -> None:
    """Produce the records under ``prefix`` and run one engine until it has read every one, then stop it
    (its checkpoint in hand is committed on the way out)."""
    asyncio.run(produce(broker.bootstrap, prefix, records))
    settings = TransformSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, transform_state_dir=state_dir,
                                 transform_state_retention_seconds=int(RETENTION.total_seconds()))
    metrics = TransformMetrics()
    if engine_kind == "lean":
        lean = LeanTransform(settings, tenants(), metrics=metrics, clock=FixedNow())
        start, stop = lean.run, lean.stop
    else:
        quix = QuixTransform(settings, tenants(), metrics=metrics, clock=FixedNow())
        start = quix.run

        def stop() -> None:
            assert quix.app is not None
            quix.app.stop()

    def watch() -> None:
        asyncio.run(wait_for(lambda: counted(metrics)[0] >= len(records), within=120, what="every input record"))
        stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start()
    watcher.join(timeout=10)
    assert counted(metrics)[0] == len(records)


def committed(broker: KafkaBroker, topic: str, prefix: str = "") -> Counter[tuple[int, bytes | None, bytes | None]]:
    """(partition, key, value) of every committed record (read_committed); ``prefix`` (in the source
    topics that decisions and dead letters name) replaced by ``<prefix>``."""
    mark = prefix.encode()
    return Counter((m.partition, m.key, m.value.replace(mark, b"<prefix>") if mark and m.value else m.value)
                   for m in asyncio.run(read_to_end(broker.bootstrap, topic)))


def state_keys(broker: KafkaBroker, topic: str, quoted: bool) -> set[tuple[bytes, str]]:
    """(message key, state key) of a changelog's state records (column family "default": quixstreams also
    writes a system marker); quixstreams writes the state key as JSON text."""
    out = set()
    for m in asyncio.run(read_to_end(broker.bootstrap, topic)):
        if dict(m.headers).get("__column_family__") != b"default":
            continue
        assert m.key is not None and m.value is not None
        prefix, _, name = m.key.partition(b"|")
        out.add((prefix, orjson.loads(name) if quoted else name.decode()))
    return out


@pytest.mark.kafka
def test_the_lean_loop_commits_what_the_quix_engine_commits(kafka_broker: KafkaBroker, topic_prefix: str,
                                                            tmp_path: Path) -> None:
    records = workload()
    run("quix", kafka_broker, f"{topic_prefix}quix.", tmp_path / "quix", records)
    run("lean", kafka_broker, f"{topic_prefix}lean.", tmp_path / "lean", records)
    for spec in (MARKETO_OPS, TRANSFORM_DECISIONS, TRANSFORM_DLQ):
        quix = committed(kafka_broker, topic_name(spec, f"{topic_prefix}quix."), f"{topic_prefix}quix.")
        lean = committed(kafka_broker, topic_name(spec, f"{topic_prefix}lean."), f"{topic_prefix}lean.")
        assert lean == quix, spec.name
        assert quix, f"the workload makes no {spec.name} record"
    ops = committed(kafka_broker, topic_name(MARKETO_OPS, f"{topic_prefix}lean."))
    op_ids = [orjson.loads(value)["op_id"] for _, _, value in ops.elements() if value is not None]
    assert len(op_ids) == len(set(op_ids)) == 8 * PEOPLE  # two leads, statuses, labels; an object, an activity
    for spec in (ATTENDEE_STATUS, SESSION_ENGAGEMENT):  # every state entry on the store's changelog
        quix_keys = state_keys(kafka_broker, changelog_name(f"{topic_prefix}quix.{TRANSFORM_APP_ID}",
                                                            topic_name(spec, f"{topic_prefix}quix.")), quoted=True)
        lean_keys = state_keys(kafka_broker, changelog_name(f"{topic_prefix}lean.{TRANSFORM_APP_ID}",
                                                            topic_name(spec, f"{topic_prefix}lean.")), quoted=False)
        assert lean_keys == quix_keys and lean_keys, spec.name


def test_state_reads_the_checkpoint_in_hand_then_rocksdb_once_it_is_applied(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "store", "changelog", 0)
    state = LeanState()
    state.bind(store, b"partner:event:user")
    state.set("statuses:member", {"status": "Attended", "step": 50})
    state.set("activity_ledger:a", "2026-12-06T18:00:00+00:00")
    state.delete("activity_ledger:a")
    assert state.get("statuses:member") == {"status": "Attended", "step": 50} and not state.exists("activity_ledger:a")
    assert store.db.get(b"partner:event:user|statuses:member") is None  # nothing in RocksDB before the commit
    store.apply(41)
    assert store.updates == {}
    assert state.get("statuses:member") == {"status": "Attended", "step": 50}  # now read from RocksDB
    assert state.get("activity_ledger:a", "absent") == "absent"
    assert store.db.get(OFFSET_KEY) == b"41"
    state.bind(store, b"partner:event:other")
    assert state.get("statuses:member") is None  # another message key's entries are its own
    store.close()
