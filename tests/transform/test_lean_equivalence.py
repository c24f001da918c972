"""The lean engine does the quix engine's work: for the same input (statuses, engagement snapshots, poll answers
through the polls' repartition, a forward-only skip, dead letters) it commits the same operations, decisions and
dead letters (partitions, keys, bytes), and the same state records on the same changelog topics (keys, values
without their expiry stamps, the column family and stamp headers), so either engine can recover the other's
state. Real broker, both engines in this process, a few seconds each."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from kmsync_bench.transform_cpu import RETENTION, Input, counted, operations, person, produce, tenants
from kmsync_common.clock import SystemClock
from kmsync_contracts.topics import ATTENDEE_STATUS, MARKETO_OPS, SESSION_ENGAGEMENT, TRANSFORM_DECISIONS, TRANSFORM_DLQ
from kmsync_kafka import topic_name
from kmsync_kafka.reading import read_to_end
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.waiting import wait_for
from kmsync_transform.engine_lean import LeanTransform
from kmsync_transform.engine_quix import QuixTransform
from kmsync_transform.internal_topics import LeanTopics
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.settings import TransformSettings

PEOPLE = 6
#: Operations and records in the emitted form carry the clock (emitted_at): both engines read this one.
FIXED = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
#: quixstreams' expiry stamp in front of a state value (quixstreams.state.rocksdb.ttl_codec): 8 bytes.
STAMP_BYTES = 8


class FixedNow(SystemClock):
    def now(self) -> datetime:
        return FIXED


def workload() -> list[Input]:
    """Each person's statuses, engagement snapshot and poll answer, then a status regression (a forward-only
    skip decision) and records that are not JSON (dead letters), one of them a poll answer."""
    records = [r for i in range(PEOPLE) for r in person(i)]
    poll = person(2)[3]
    return [*records, person(0)[0], (SESSION_ENGAGEMENT, b"partner:event:nobody", b"not json"),
            (ATTENDEE_STATUS, person(1)[1][1], b"{}"), (poll[0], poll[1], b"not json")]


def run(engine_kind: str, broker: KafkaBroker, prefix: str, state_dir: Path, records: list[Input]) -> None:
    """Produce the records under ``prefix`` and run one engine until it has emitted every operation and read
    every record, then stop it (its checkpoint in hand is committed on the way out)."""
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

    def done() -> bool:
        read, ops = counted(metrics)
        return read >= len(records) and ops >= operations(PEOPLE, engagement_only=False)

    def watch() -> None:
        asyncio.run(wait_for(done, within=120, what="every input record and operation"))
        stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start()
    watcher.join(timeout=10)
    assert done()


def committed(broker: KafkaBroker, topic: str, prefix: str = "") -> Counter[tuple[int, bytes | None, bytes | None]]:
    """(partition, key, value) of every committed record (read_committed); ``prefix`` (in the source
    topics that decisions and dead letters name) replaced by ``<prefix>``."""
    mark = prefix.encode()
    return Counter((m.partition, m.key, m.value.replace(mark, b"<prefix>") if mark and m.value else m.value)
                   for m in asyncio.run(read_to_end(broker.bootstrap, topic)))


def state_records(broker: KafkaBroker, topic: str) -> dict[tuple[int, bytes | None], tuple[bytes | None, bytes]]:
    """(partition, key) → (value without its stamp, stamped header) of the last record per key on a changelog,
    i.e. what a recovery from it gives, for the default column family (quixstreams also writes system records
    of its own). How often a key was written depends on the checkpoints, which the engines time differently."""
    out: dict[tuple[int, bytes | None], tuple[bytes | None, bytes]] = {}
    for m in asyncio.run(read_to_end(broker.bootstrap, topic)):
        headers = dict(m.headers)
        if headers.get("__column_family__") != b"default":
            continue
        out[(m.partition, m.key)] = (None if m.value is None else m.value[STAMP_BYTES:],
                                     headers.get("__ttl_stamped__", b""))
    return out


@pytest.mark.kafka
def test_the_lean_engine_commits_what_the_quix_engine_commits(kafka_broker: KafkaBroker, topic_prefix: str,
                                                              tmp_path: Path) -> None:
    records = workload()
    prefixes = {kind: f"{topic_prefix}{kind}." for kind in ("quix", "lean")}
    for kind, prefix in prefixes.items():
        run(kind, kafka_broker, prefix, tmp_path / kind, records)
    for spec in (MARKETO_OPS, TRANSFORM_DECISIONS, TRANSFORM_DLQ):
        quix, lean = (committed(kafka_broker, topic_name(spec, p), p) for p in prefixes.values())
        assert lean == quix, spec.name
        assert quix, f"the workload makes no {spec.name} record"
    ops = committed(kafka_broker, topic_name(MARKETO_OPS, prefixes["lean"]))
    op_ids = [orjson.loads(value)["op_id"] for _, _, value in ops.elements() if value is not None]
    assert len(op_ids) == len(set(op_ids)) == operations(PEOPLE, engagement_only=False)
    for kind in ("status", "engagement", "polls"):  # every state record, on the changelog quixstreams names
        topics = [LeanTopics.of(TransformSettings(topic_prefix=p), polls_partitions=6) for p in prefixes.values()]
        quix_records, lean_records = (state_records(kafka_broker, _changelog(t, kind)) for t in topics)
        assert lean_records == quix_records and lean_records, kind


def _changelog(topics: LeanTopics, kind: str) -> str:
    """A store's changelog: an input topic's, or the polls' repartition topic's."""
    if kind == "polls":
        assert topics.repartition is not None
        topic = topics.repartition
    else:
        spec = ATTENDEE_STATUS if kind == "status" else SESSION_ENGAGEMENT
        topic = next(t for t, s in topics.spec_by_topic.items() if s is spec)
    changelog = topics.changelog_of(topic)
    assert changelog is not None
    return changelog
