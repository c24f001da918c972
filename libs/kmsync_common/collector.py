"""The cyclic garbage collector's schedule in kmsync's long-running services (issue #22).

CPython frees almost everything by reference counting; its cyclic collector only finds garbage that refers to
itself. Its automatic schedule (thresholds 700, 10, 10) runs a *full* collection, one that visits every tracked
object in the process, whenever the objects promoted to the oldest generation since the last one reach a quarter
of that generation. A sink under load keeps windows of decoded operations alive for a few hundred milliseconds:
they are promoted, die, and start the next full collection, again and again. Measured on the capacity path
(docs/benchmarks.md, "The cyclic garbage collector"), full collections were ≈ 30 % of the sink's CPU, ≈ 135 ms
each.

So the services run the collector on a schedule of their own:
- young collections stay automatic, after ``young_threshold`` net allocations of tracked objects (Python's
  default is 700), so short-lived cycles are still found at once;
- automatic full collections are switched off (the oldest generation's threshold is out of reach);
- a thread of its own runs one full collection every ``full_interval_seconds``, so cyclic garbage that reached
  the oldest generation lives at most that long.

``full_interval_seconds`` 0 leaves Python's own schedule untouched. The settings are KMSYNC_GC_* (README.md,
"Configuration"). Python's own ``python_gc_*`` metrics show the collections on each service's /metrics.
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
#: Young (gen-0) collections per gen-1 collection: Python's default.
MIDDLE_THRESHOLD = 10
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
def scheduled_collections(young_threshold: int, full_interval_seconds: float) -> Iterator[FullCollections | None]:
    """This process on the schedule above while the block runs; Python's thresholds are put back after it.
    Yields the full collections' thread, or None (Python's own schedule) when the interval is 0."""
    if full_interval_seconds <= 0:
        yield None
        return
    if young_threshold < 1:
        raise ValueError(f"young_threshold must be at least 1, not {young_threshold}")
    before = gc.get_threshold()
    gc.set_threshold(young_threshold, MIDDLE_THRESHOLD, NO_AUTOMATIC_FULL)
    collections = FullCollections(full_interval_seconds).start()
    try:
        yield collections
    finally:
        collections.stop()
        gc.set_threshold(*before)
