"""Reading Prometheus text exposition (a service's /metrics), the one way kmsync's tools do it.

`kmsync run`'s progress line, the chaos run and the benchmarks read the services' /metrics; they all
parse it with prometheus_client's own parser rather than with a pattern of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


def sample_sum(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of every sample called exactly `name` (a counter's ``..._total``, a histogram's
    ``..._sum``/``..._count``, a gauge's name) whose labels include all of `labels`.

    `text` may be several expositions one after the other (the replicas of one service): their
    samples add up. A name nobody exposes sums to 0."""
    wanted = dict(labels or {})
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                total += sample.value
    return total
