"""Errors every kmsync process shares."""

from __future__ import annotations


class DependencyUnavailable(Exception):
    """Something kmsync depends on (Kafka, an HTTP endpoint) is down or unreachable: not a bug of ours.

    The `kmsync` command maps it (and whatever it was raised from) to exit code 3 with one line.
    Services raise a subclass (e.g. ingest's KafkaUnavailable) from the underlying client error.
    """
