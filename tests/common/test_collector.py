"""The services' garbage collector schedule (kmsync_common.collector): Python's young and middle thresholds, far
fewer automatic full collections, a cycle in the oldest generation still freed by the next one, and Python's
thresholds back afterwards however the block ends."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest

from kmsync_common.collector import PYTHONS_FULL_THRESHOLD, scheduled_collections
from kmsync_config.settings import CommonSettings
from kmsync_ingest.metrics import IngestMetrics
from kmsync_sink.metrics import SinkMetrics
from kmsync_transform.metrics import TransformMetrics


@pytest.fixture(autouse=True)
def _pythons_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, PYTHONS_FULL_THRESHOLD)
    yield
    gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: reference counting alone never frees it


def _collections_while_objects_pile_up() -> dict[int, int]:
    """Collections per generation while 300,000 tracked objects are made and kept (as a sink's windows keep
    operations), then dropped: enough middle collections for Python's schedule to start full ones."""
    runs = {0: 0, 1: 0, 2: 0}

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            runs[info["generation"]] += 1

    gc.collect()
    gc.callbacks.append(count)
    try:
        kept = [[i] for i in range(300_000)]
        del kept
    finally:
        gc.callbacks.remove(count)
    return runs


def test_pythons_own_schedule_runs_full_collections_while_objects_pile_up() -> None:
    runs = _collections_while_objects_pile_up()
    assert runs[1] >= 2 * PYTHONS_FULL_THRESHOLD and runs[2] >= 1  # what the schedule is for


def test_the_schedule_runs_no_full_collection_in_the_same_work() -> None:
    with scheduled_collections(full_threshold=1_000):
        assert gc.get_threshold() == (700, 10, 1_000)
        runs = _collections_while_objects_pile_up()
    assert runs[0] > 0 and runs[1] >= 2 * PYTHONS_FULL_THRESHOLD  # young and middle ones as before
    assert runs[2] == 0
    assert gc.get_threshold() == (700, 10, PYTHONS_FULL_THRESHOLD)


def test_a_full_collection_still_frees_a_cycle_in_the_oldest_generation() -> None:
    with scheduled_collections(full_threshold=1_000):
        node = Node()
        gc.collect(1)  # it survives a middle collection while referenced: now in the oldest generation
        ref = weakref.ref(node)
        del node
        gc.collect(1)  # young and middle collections never look at the oldest generation
        assert ref() is not None
        gc.collect()
        assert ref() is None


def test_pythons_thresholds_come_back_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), scheduled_collections(full_threshold=1_000):
        raise RuntimeError("boom")
    assert gc.get_threshold() == (700, 10, PYTHONS_FULL_THRESHOLD)


def test_a_nonsense_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="full_threshold"), scheduled_collections(full_threshold=0):
        pass


def test_the_setting_defaults_to_the_schedule_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CommonSettings().gc_full_threshold == 1_000
    monkeypatch.setenv("KMSYNC_GC_FULL_THRESHOLD", "10")
    assert CommonSettings().gc_full_threshold == PYTHONS_FULL_THRESHOLD


@pytest.mark.parametrize("metrics", [IngestMetrics, TransformMetrics, SinkMetrics])
def test_each_service_shows_pythons_collections_on_its_metrics(
        metrics: type[IngestMetrics] | type[TransformMetrics] | type[SinkMetrics]) -> None:
    text = generate_latest(metrics().registry).decode()
    assert 'python_gc_collections_total{generation="2"}' in text
