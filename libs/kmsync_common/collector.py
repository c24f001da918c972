"""The cyclic garbage collector's schedule in kmsync's long-running services (issue #22).

CPython frees almost everything by reference counting; its cyclic collector only finds garbage that refers to
itself. Its automatic schedule (thresholds 700, 10, 10) runs a *full* collection, one that visits every tracked
object in the process, whenever the objects promoted to the oldest generation since the last one reach a quarter
of that generation. A sink under load keeps windows of decoded operations alive for a few hundred milliseconds:
they are promoted, die, and start the next full collection, again and again. Measured on the capacity path
(docs/benchmarks.md, "Section 4, session 15"), full collections were ≈ 30 % of the sink's CPU, ≈ 135 ms
each.

So the services run the collector on a schedule of their own:
- young and middle collections stay automatic, at Python's own thresholds (700 and 10), so short-lived cycles are
  still found at once (a young threshold of 20,000 or a middle one of 50 measured no better: the same
  benchmarks section);
- automatic full collections are switched off (the oldest generation's threshold is out of reach);
- a thread of its own runs one full collection every ``full_interval_seconds``, so cyclic garbage that reached
  the oldest generation lives at most that long.

``full_interval_seconds`` 0 leaves Python's own schedule untouched. The setting is
KMSYNC_GC_FULL_INTERVAL_SECONDS (docs/configuration.md). Python's own ``python_gc_*`` metrics show the
collections on each service's /metrics.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: Gen-1 collections before a full one would start automatically: more than a process ever runs.
NO_AUTOMATIC_FULL = 1 << 30
#: A full collection longer than this stalls the process noticeably: logged as a warning.
SLOW_FULL_SECONDS = 1.0


class FullCollections:
    """A daemon thread that runs ``gc.collect()`` every ``interval_seconds`` until ``stop()``."""

    def __init__(self, interval_seconds: float) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be positive, not {interval_seconds}")
        self.interval_seconds = interval_seconds
        #: Full collections run so far, the objects they found unreachable and the seconds they took.
        self.runs = 0
        self.collected = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._done = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="kmsync-gc", daemon=True)

    def start(self) -> FullCollections:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def wait_for_runs(self, runs: int, timeout: float) -> bool:
        """Whether at least ``runs`` full collections have run within ``timeout`` seconds."""
        with self._done:
            return self._done.wait_for(lambda: self.runs >= runs, timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.collect()

    def collect(self) -> int:
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        with self._done:
            self.runs += 1
            self.collected += found
            self.seconds += took
            self._done.notify_all()
        level = logging.WARNING if took > SLOW_FULL_SECONDS else logging.DEBUG
        log.log(level, "full garbage collection: %d unreachable objects in %.3f s", found, took)
        return found


@contextlib.contextmanager
def scheduled_collections(full_interval_seconds: float) -> Iterator[FullCollections | None]:
    """This process on the schedule above while the block runs; Python's thresholds are put back after it.
    Yields the full collections' thread, or None (Python's own schedule) when the interval is 0."""
    if full_interval_seconds <= 0:
        yield None
        return
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], NO_AUTOMATIC_FULL)
    collections = FullCollections(full_interval_seconds).start()
    try:
        yield collections
    finally:
        collections.stop()
        gc.set_threshold(*before)
