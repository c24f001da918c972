"""One way to read /metrics: prometheus_client's parser, summed over samples and replicas."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from kmsync_common.metrics_text import sample_sum


def exposition(calls: dict[str, int], records: list[int]) -> str:
    registry = CollectorRegistry()
    counter = Counter("kmsync_x_calls", "calls", ["munchkin_id", "outcome"], registry=registry)
    for outcome, n in calls.items():
        counter.labels("123-ABC-456", outcome).inc(n)
    histogram = Histogram("kmsync_x_records_per_call", "records", registry=registry)
    for n in records:
        histogram.observe(n)
    return generate_latest(registry).decode()


def test_samples_add_up_by_exact_name_and_labels() -> None:
    text = exposition({"ok": 3, "throttled": 2}, [10, 30])
    assert sample_sum(text, "kmsync_x_calls_total") == 5
    assert sample_sum(text, "kmsync_x_calls_total", {"outcome": "throttled"}) == 2
    assert sample_sum(text, "kmsync_x_calls_total", {"outcome": "throttled", "munchkin_id": "999-XXX-999"}) == 0
    assert sample_sum(text, "kmsync_x_calls") == 0  # the family name is not a sample of a counter
    assert sample_sum(text, "kmsync_x_records_per_call_sum") == 40
    assert sample_sum(text, "kmsync_x_records_per_call_count") == 2
    assert sample_sum(text, "kmsync_x_nobody_exposes_this") == 0


def test_the_expositions_of_several_replicas_add_up() -> None:
    both = exposition({"ok": 3}, [10]) + "\n" + exposition({"ok": 4}, [5, 5])
    assert sample_sum(both, "kmsync_x_calls_total", {"outcome": "ok"}) == 7
    assert sample_sum(both, "kmsync_x_records_per_call_sum") == 20
