"""Remembers which Kaltura notification jobs were handled (docs/reference/kaltura-api.md §2.5: Kaltura retries
anything but 200/204, so the same eventNotificationJobId can arrive more than once).

A job id is remembered only after its notification was fully handled (its pull acknowledged by
Kafka), so a delivery that failed with 503 is processed again when Kaltura retries it. Bounded:
the oldest ids are forgotten first; a forgotten replay only re-triggers an idempotent pull.
"""

from __future__ import annotations

from collections import OrderedDict


class HandledJobs:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def remember(self, job_id: str) -> None:
        self._ids[job_id] = None
        self._ids.move_to_end(job_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
