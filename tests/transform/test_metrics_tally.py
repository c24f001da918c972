"""Transform's counters are counted in plain ints and reach prometheus when the registry is collected
(metrics.Tally, issue #22): a scrape at any moment, mid-batch too, reads exactly what was counted."""

from __future__ import annotations

import threading
from datetime import timedelta

from prometheus_client import generate_latest

from kmsync_contracts import SessionEngagement, encode
from kmsync_contracts.topics import SESSION_ENGAGEMENT
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.keyed import KeyedSteps
from kmsync_transform.metrics import TransformMetrics

from .conftest import PARTNER, T0, tenants_config
from .test_state_reads import JsonState

RECORDS_IN = "kmsync_transform_records_in_total"
OPS_OUT = "kmsync_transform_ops_out_total"


def snapshot(i: int) -> bytes:
    return encode(SessionEngagement(partner_id=PARTNER, virtual_event_id=200, user_id=f"u{i}",
                                    email=f"u{i}@example.com", source="pull", source_time=T0, ingested_at=T0,
                                    entry_id="0_keynote", is_final=True, plays=i))


def step(steps: KeyedSteps, i: int) -> None:
    source = SourceRef(topic=SESSION_ENGAGEMENT.name, partition=0, offset=i, key=f"{PARTNER}:200:u{i}")
    steps.record(SESSION_ENGAGEMENT, snapshot(i), source, JsonState())


def read(metrics: TransformMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_the_record_path_does_not_touch_prometheus_until_a_collection() -> None:
    metrics = TransformMetrics()
    steps = KeyedSteps(tenants_config(), metrics, clock=lambda: T0, retention=timedelta(days=1))
    for i in range(3):
        step(steps, i)
    assert [s for family in metrics.ops_out.collect() for s in family.samples] == []  # not added yet
    assert read(metrics, OPS_OUT, tenant="acme-summit", kind="custom_activity") == 3.0


def test_every_scrape_reads_exactly_what_was_counted_so_far() -> None:
    metrics = TransformMetrics()
    steps = KeyedSteps(tenants_config(), metrics, clock=lambda: T0, retention=timedelta(days=1))
    for i in range(1, 6):
        step(steps, i)
        assert read(metrics, RECORDS_IN, tenant="acme-summit", topic=SESSION_ENGAGEMENT.name) == i
        assert read(metrics, OPS_OUT, tenant="acme-summit", kind="custom_object_upsert") == i
    text = generate_latest(metrics.registry).decode()  # the /metrics route's path
    assert f'{RECORDS_IN}{{tenant="acme-summit",topic="{SESSION_ENGAGEMENT.name}"}} 5.0' in text
    metrics.tally.flush()
    metrics.tally.flush()  # flushing again adds nothing
    assert read(metrics, OPS_OUT, tenant="acme-summit", kind="custom_activity") == 5.0


def test_scrapes_from_another_thread_while_counting_lose_and_double_nothing() -> None:
    metrics = TransformMetrics()
    counted = 20_000
    seen: list[float] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            seen.append(read(metrics, RECORDS_IN, tenant="t", topic="x") or 0.0)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for _ in range(counted):
            metrics.tally.add(metrics.records_in, ("t", "x"))
    finally:
        done.set()
        scraper.join()
    assert seen == sorted(seen) and all(v <= counted for v in seen)
    assert read(metrics, RECORDS_IN, tenant="t", topic="x") == counted
