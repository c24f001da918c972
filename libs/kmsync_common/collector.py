"""The cyclic garbage collector's schedule in kmsync's long-running services (issue #22).

CPython frees almost everything by reference counting; its cyclic collector only finds garbage that refers to
itself. It collects in three generations. With its thresholds (700, 10, 10) a *full* collection, one that visits
every tracked object in the process, runs after every 10 middle collections once the objects promoted to the
oldest generation since the last one reach a quarter of it. A sink under load keeps windows of decoded
operations alive for a few hundred milliseconds: they are promoted, die, and start the next full collection,
again and again. Measured on the capacity path (docs/benchmarks.md, "Section 4, session 15"), full collections
were ≈ 30 % of the sink's CPU, ≈ 135 ms each.

So the services keep Python's young and middle thresholds (other values measured no better) and raise the third
one, the middle collections before a full one, from 10 to ``full_threshold`` (KMSYNC_GC_FULL_THRESHOLD, 1,000 by
default; docs/configuration.md). Full collections stay automatic: they run on whichever thread allocates, as
Python's own do (mostly the service's event loop or engine loop), far less often (the sink: 2 full collections
against 120 in a 60,000-row benchmark run); cyclic garbage that reached the oldest generation waits for the next
one. Python's ``python_gc_*`` metrics show the collections on
each service's /metrics.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: Python's own third threshold: middle collections before a full one.
PYTHONS_FULL_THRESHOLD = 10


@contextlib.contextmanager
def scheduled_collections(full_threshold: int) -> Iterator[None]:
    """This process with ``full_threshold`` middle collections before a full one while the block runs (Python's
    young and middle thresholds unchanged); the thresholds as they were are put back after it, however it ends."""
    if full_threshold < 1:
        raise ValueError(f"full_threshold must be at least 1, not {full_threshold}")
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], full_threshold)
    try:
        yield
    finally:
        gc.set_threshold(*before)
