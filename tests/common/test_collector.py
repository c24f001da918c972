"""The services' garbage collector schedule (kmsync_common.collector): no automatic full collections, young and
middle ones at Python's thresholds, a full one on a timer that frees cycles in the oldest generation, and Python's
schedule back afterwards."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest

from kmsync_common.collector import NO_AUTOMATIC_FULL, FullCollections, scheduled_collections
from kmsync_config.settings import CommonSettings
from kmsync_ingest.metrics import IngestMetrics
from kmsync_sink.metrics import SinkMetrics
from kmsync_transform.metrics import TransformMetrics


@pytest.fixture(autouse=True)
def _thresholds_kept() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: reference counting alone never frees it


def _old_cycle() -> weakref.ref[Node]:
    """A cycle in the oldest generation (it survived a gen-1 collection while referenced), now unreferenced."""
    node = Node()
    gc.collect(1)
    assert gc.is_tracked(node)
    return weakref.ref(node)


def test_the_schedule_switches_automatic_full_collections_off_and_puts_pythons_back() -> None:
    gc.set_threshold(700, 10, 10)
    with scheduled_collections(full_interval_seconds=60) as full:
        assert isinstance(full, FullCollections)
        assert gc.get_threshold() == (700, 10, NO_AUTOMATIC_FULL)
    assert gc.get_threshold() == (700, 10, 10)
    assert not full._thread.is_alive()


def test_an_interval_of_zero_keeps_pythons_own_schedule() -> None:
    gc.set_threshold(700, 10, 10)
    with scheduled_collections(full_interval_seconds=0) as full:
        assert full is None
        assert gc.get_threshold() == (700, 10, 10)


def test_the_timer_frees_a_cycle_in_the_oldest_generation() -> None:
    with scheduled_collections(full_interval_seconds=0.05) as full:
        assert full is not None
        ref = _old_cycle()
        assert full.wait_for_runs(full.runs + 1, timeout=30)
        assert ref() is None
        assert full.collected >= 1


def test_a_full_collection_is_counted() -> None:
    full = FullCollections(3600)
    ref = _old_cycle()
    gc.collect(1)  # young and middle collections never look at the oldest generation
    assert ref() is not None
    assert full.collect() >= 1
    assert ref() is None and full.runs == 1 and full.collected >= 1 and full.seconds >= 0


def test_a_nonsense_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_seconds"):
        FullCollections(0)


def test_the_settings_default_to_the_schedule_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CommonSettings().gc_full_interval_seconds == 60.0
    monkeypatch.setenv("KMSYNC_GC_FULL_INTERVAL_SECONDS", "0")
    assert CommonSettings().gc_full_interval_seconds == 0.0


@pytest.mark.parametrize("metrics", [IngestMetrics, TransformMetrics, SinkMetrics])
def test_each_service_shows_pythons_collections_on_its_metrics(
        metrics: type[IngestMetrics] | type[TransformMetrics] | type[SinkMetrics]) -> None:
    text = generate_latest(metrics().registry).decode()
    assert 'python_gc_collections_total{generation="2"}' in text
