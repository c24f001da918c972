"""Whether one of a worker's Sync Leads calls may still be running at Marketo, for its drain.

The client waits before it replays (or returns the failure of) a Sync Leads attempt Marketo may still be
processing: until ``ambiguous_replay_delay_seconds`` after its send (kmsync_marketo/retry_replay.py,
docs/reference/marketo-api.md §5.1). A stop that abandons such a call, or one whose request is on the wire, lets the
partition's next owner upsert the same emails at once, while the first request may still run: a possible duplicate
lead. So the worker's drain goes on while one is in flight (worker.py ``InstanceWorker.stop``), and this module
tells it when.

The client says it through one public hook, ``CallStats.lead_writes_in_process``: its Sync Leads calls with a
request sent and not answered yet, or held by the replay delay (from the first hold until the call returns, its
replay's answer included). Which answers leave a write running is the client's knowledge (libs/kmsync_marketo), not
this module's. An instance's two lanes share one client, so the other lane's call, counted while this worker has a
lead call in flight, counts here too: that drain may wait longer than it needed (still bounded), never shorter.

Once the drain is extended, the client sends no new Sync Leads request (``LeadCallWatch.stop_new_requests``: a lead
call that waited for a limiter permit, the 1021 company fallback's second request wait unsent), and the drain ends
early when only such an unsent request is left to this worker's window (``LeadCallWatch.unsent``): cancelling the
window then leaves nothing running at Marketo.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from kmsync_marketo.client import ActivityRecord, LeadActivity, LeadSyncResult
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_marketo.outcomes import Outcome
from kmsync_marketo.transport import CallStats
from kmsync_sink.writer import BulkWriter, MarketoWriter


def call_stats(writer: object) -> CallStats | None:
    """The counters of the writer's transport (``MarketoClient.transport.stats``); None for a writer without one."""
    stats = getattr(getattr(writer, "transport", None), "stats", None)
    return stats if isinstance(stats, CallStats) else None


class LeadCallWatch:
    """A worker's Sync Leads calls in flight, and whether the client has one Marketo may be processing now.
    ``held_drain_seconds``: how much longer than its drain timeout the worker's stop waits for such a call."""

    def __init__(self, stats: CallStats | None, held_drain_seconds: float = 0.0) -> None:
        self._stats = stats
        self.held_drain_seconds = held_drain_seconds
        self._in_flight = 0
        #: The tasks running those calls (a call's requests are sent from its task: ``unsent``).
        self._tasks: Counter[asyncio.Task[Any] | None] = Counter()

    @contextmanager
    def call(self) -> Iterator[None]:
        """Around one Sync Leads call."""
        task = asyncio.current_task()
        self._in_flight += 1
        self._tasks[task] += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._tasks[task] -= 1
            if not self._tasks[task]:
                del self._tasks[task]

    def held(self) -> bool:
        """A call is in flight while the client has a Sync Leads call Marketo may be processing: a request sent and
        not answered yet, or a call held by the replay delay (``CallStats.lead_writes_in_process``)."""
        return self._in_flight > 0 and self._stats is not None and self._stats.lead_writes_in_process > 0

    def stop_new_requests(self) -> None:
        """No new Sync Leads request of the client goes on the wire from now on (``CallStats.stop_lead_writes``: one
        waits unsent, before the limiter or after its permit, until it is cancelled; every later attempt of a call
        once held still goes out). The client is shared by the instance's two lanes, which stop together (a stop
        takes every worker; a revocation every worker of an instance one of whose workers leaves, service.py
        ``on_revoked``)."""
        if self._stats is not None:
            self._stats.stop_lead_writes()

    def unsent(self) -> bool:
        """Only a cancellation can end this worker's lead calls, and it leaves nothing running at Marketo: one of them
        waits with its request unsent (``stop_new_requests``) and the client has no Sync Leads call Marketo may be
        processing (this worker's or the other lane's)."""
        stats = self._stats
        return (stats is not None and stats.lead_writes_in_process == 0
                and any(task in stats.lead_writes_unsent for task in self._tasks))

    def changed(self) -> asyncio.Event | None:
        """The client's current event for the next change (a Sync Leads call stops being in process or a request starts
        waiting unsent): take it before reading ``unsent``, then wait on it; None without a client that reports its
        calls."""
        return self._stats.lead_writes_changed if self._stats is not None else None


class WatchedWriter:
    """The instance's writer as a worker's window executor uses it: every Sync Leads call goes through ``watch``."""

    def __init__(self, writer: MarketoWriter, watch: LeadCallWatch) -> None:
        self.writer = writer
        self.watch = watch

    @property
    def limiter(self) -> InstanceLimiter:
        return self.writer.limiter

    async def sync_leads(self, leads: Sequence[Mapping[str, Any]]) -> LeadSyncResult:
        with self.watch.call():
            return await self.writer.sync_leads(leads)

    async def sync_program_member_status(
        self, program_id: int, status_name: str, lead_ids: Sequence[int]
    ) -> list[Outcome]:
        return await self.writer.sync_program_member_status(program_id, status_name, lead_ids)

    async def sync_custom_objects(self, api_name: str, records: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        return await self.writer.sync_custom_objects(api_name, records)

    async def add_custom_activities(self, activities: Sequence[ActivityRecord]) -> list[Outcome]:
        return await self.writer.add_custom_activities(activities)

    async def sync_program_member_data(self, program_id: int, records: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        return await self.writer.sync_program_member_data(program_id, records)

    async def custom_activity_types(self) -> list[dict[str, Any]]:
        return await self.writer.custom_activity_types()

    async def lead_activities(
        self, activity_type_ids: Sequence[int], lead_ids: Sequence[int], since: datetime
    ) -> list[LeadActivity]:
        return await self.writer.lead_activities(activity_type_ids, lead_ids, since)

    async def usage_today(self, *, reconcile: bool = True) -> int:
        return await self.writer.usage_today(reconcile=reconcile)

    def bulk(self) -> BulkWriter | None:
        return self.writer.bulk()

    async def aclose(self) -> None:
        await self.writer.aclose()
