"""Pipelined Bulk custom object imports of one instance: the jobs its windows started and left to
finish in the background, the records those jobs hold, and the operations waiting for them.

Marketo takes minutes per bulk job and works through its queue two at a time (docs/reference/marketo-api.md §9.1:
≤ 2 processing, ≤ 10 queued including those; poll every 5–30 s). A window therefore does not wait
for its bulk custom object jobs: the instance's next window goes on while they are polled. Two
rules keep that safe:

- **A bounded pipeline.** At most ``max_jobs`` of the instance's jobs are outstanding; a window that
  would start one more waits (on a semaphore, never polling) until one has finished.
- **One writer per record.** A custom object record (object, dedupe key; ``planner.object_key``)
  in an outstanding job is held: a later upsert of it waits here, unsent, until that job has
  finished. Marketo runs two jobs at once and a smaller later job can finish first, so sending the
  newer value alongside could let the older row land last (§9.1: every row is insert-or-update).
  If the job's row for the record fails and is retried, the held upserts wait for that retry too
  (they may go with it in one window, where the planner merges them in offset order).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from kmsync_sink.pending import PendingOp
from kmsync_sink.planner import ObjectKey

#: Told when a job has ended (finished, failed or cancelled): the keys it held and its task.
JobEnded = Callable[[frozenset[ObjectKey], "asyncio.Task[None]"], None]


class BulkPipeline:
    """The background bulk jobs of one instance and the record keys they hold."""

    def __init__(self, max_jobs: int, on_ended: JobEnded | None = None) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be ≥ 1 (got {max_jobs}); 0 means no pipeline at all")
        self.max_jobs = max_jobs
        self._slots = asyncio.Semaphore(max_jobs)
        self._keys: Counter[ObjectKey] = Counter()
        self._on_ended = on_ended
        #: Jobs running in the background (drain waits for them).
        self.tasks: set[asyncio.Task[None]] = set()

    def holds(self, key: ObjectKey) -> bool:
        """An outstanding job carries this record."""
        return key in self._keys

    @property
    def outstanding(self) -> int:
        return len(self.tasks)

    async def start(
        self, keys: Iterable[ObjectKey], job: Callable[[], Coroutine[Any, Any, None]], name: str = "bulk-job"
    ) -> asyncio.Task[None]:
        """Wait for a free slot, hold ``keys``, and run ``job`` in the background. The keys are held
        from the moment this returns (the caller's next window sees them) until the job has ended;
        then the slot is free again."""
        await self._slots.acquire()
        held = frozenset(keys)
        self._keys.update(held)
        task = asyncio.create_task(job(), name=name)
        self.tasks.add(task)
        # A done callback, not a ``finally`` in the job: it runs even for a task cancelled before
        # its first step.
        task.add_done_callback(lambda t: self._ended(t, held))
        return task

    def _ended(self, task: asyncio.Task[None], keys: frozenset[ObjectKey]) -> None:
        self.tasks.discard(task)
        self._keys.subtract(keys)
        for k in keys:
            if self._keys[k] <= 0:
                del self._keys[k]
        self._slots.release()
        if self._on_ended is not None:
            self._on_ended(keys, task)


class HeldOps:
    """Operations waiting for a record an outstanding job holds, in the order they were held."""

    def __init__(self) -> None:
        self._by_key: dict[ObjectKey, list[PendingOp]] = {}
        #: Key → the time a retry of that record's failed row becomes due.
        self._retry_due: dict[ObjectKey, float] = {}

    def __len__(self) -> int:
        return sum(len(ops) for ops in self._by_key.values())

    def hold(self, key: ObjectKey, p: PendingOp) -> None:
        self._by_key.setdefault(key, []).append(p)

    def retry_due(self, key: ObjectKey, not_before: float) -> None:
        """The outstanding job's row of ``key`` failed and retries at ``not_before``: the held
        upserts of that record must not leave before it."""
        self._retry_due[key] = max(not_before, self._retry_due.get(key, not_before))

    def release(self, keys: Iterable[ObjectKey]) -> list[PendingOp]:
        """The job holding ``keys`` has ended: its held operations, none due before a retry of the
        same record."""
        out: list[PendingOp] = []
        for k in keys:
            due = self._retry_due.pop(k, None)
            for p in self._by_key.pop(k, []):
                if due is not None:
                    p.not_before = max(p.not_before, due)
                out.append(p)
        return out

    def drop(self) -> list[PendingOp]:
        """Remove and return every held operation (the worker stops; they were never sent)."""
        out = [p for ops in self._by_key.values() for p in ops]
        self._by_key.clear()
        self._retry_due.clear()
        return out
