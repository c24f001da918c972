"""A history load yields to live data upstream of the lanes (issue #18).

The lanes begin at transform's output: a backfill's rows share the Kaltura topics' partitions with
live rows, so a loader that writes faster than transform reads puts every live row behind the
backlog it builds (measured: live p95 1.2 s alone, 13.1 s during a million-row backfill, 12.7 s of
it before transform's output; docs/benchmarks.md "Live during backfill"). So `kmsync backfill`
loads its next chunk only while transform's backlog on the Kaltura topics — records past what
transform's consumer group has committed — is at most ``KMSYNC_BACKFILL_MAX_TRANSFORM_LAG``. Live rows
then wait behind at most that many records. 0 turns the pacing off (a load into a pipeline whose
transform is not running, or a dedicated one). Transform's committed offsets move in steps (measured:
every 1.25-1.5 s): a limit of 2,000 held a million-row load to ~300 rows/s in an aborted run, while
3,000 (the default) kept it just ahead of transform on a quiet machine instead of minutes ahead of it
(docs/decisions.md, "Live before backfill").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from kmsync_common.errors import DependencyUnavailable
from kmsync_contracts.topics import TRANSFORM_INPUTS
from kmsync_kafka.clients import topic_name
from kmsync_kafka.lag import group_lag
from kmsync_kafka.reading import topic_partitions

log = logging.getLogger(__name__)

#: How often the backlog is read again while the loader waits.
POLL_SECONDS = 0.25
#: Tries to read the backlog before a chunk goes without pacing.
COORDINATOR_ATTEMPTS = 10


async def wait_below(read_backlog: Callable[[], Awaitable[int]], limit: int,
                     sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                     poll_seconds: float = POLL_SECONDS) -> int:
    """Return once the backlog is at most ``limit`` (at once when ``limit`` is 0: no pacing); the number of
    waits it took."""
    if limit <= 0:
        return 0
    waits = 0
    while await read_backlog() > limit:
        waits += 1
        await sleep(poll_seconds)
    return waits


class TransformBacklogGate:
    """``await gate.wait()`` before each chunk of a history load."""

    def __init__(self, bootstrap: str, prefix: str, transform_group: str, limit: int) -> None:
        self.limit = limit
        self.bootstrap = bootstrap
        self.group_id = f"{prefix}{transform_group}"
        # Transform's backlog on any of its inputs delays every live row it has not reached.
        self._topics = [topic_name(t, prefix) for t in TRANSFORM_INPUTS]
        #: The admin client and reader ``start`` opened (None: not started, or no pacing); ``stop`` closes them.
        self._clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None
        self._close = contextlib.AsyncExitStack()
        self._partitions: list[TopicPartition] = []
        self._next_note = 0.0
        #: Seconds the load waited for transform, in all.
        self.waited_seconds = 0.0

    async def start(self) -> None:
        """Open the clients that read the backlog (none when ``limit`` is 0: no pacing). Raises
        DependencyUnavailable; a start that raises or is cancelled closes what it opened (an aiokafka client never
        closed is an ERROR "Unclosed AIOKafkaConsumer" whenever the garbage collector finalises it)."""
        if self.limit <= 0 or self._clients is not None:
            return
        async with contextlib.AsyncExitStack() as opened:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            opened.push_async_callback(admin.close)
            reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                      isolation_level="read_committed")
            opened.push_async_callback(reader.stop)
            try:
                await admin.start()
                await reader.start()
                partitions = [tp for topic in self._topics for tp in await topic_partitions(reader, topic)]
            except KafkaError as exc:
                raise DependencyUnavailable(f"Kafka unreachable for the load's pacing: {type(exc).__name__}") from None
            self._clients, self._partitions = (admin, reader), partitions
            self._close = opened.pop_all()

    async def backlog(self) -> int:
        """Transform's backlog; 0 (no pacing) when the broker cannot say after a few tries (a fresh broker
        without a group coordinator yet), so the load never hangs on the pacing itself. 0 without pacing (limit 0);
        a gate with a limit that was not started raises (a load must not go unpaced without a word)."""
        if self._clients is None:
            if self.limit > 0:
                raise RuntimeError("the backfill's pacing gate was asked for the backlog before start()")
            return 0
        admin, reader = self._clients
        for attempt in range(1, COORDINATOR_ATTEMPTS + 1):
            try:
                return await group_lag(admin, reader, self._partitions, self.group_id)
            except KafkaError as exc:
                if not exc.retriable or attempt == COORDINATOR_ATTEMPTS:
                    log.warning("transform's backlog not read (%s): this chunk is loaded without pacing",
                                type(exc).__name__)
                    return 0
                await asyncio.sleep(POLL_SECONDS)
        return 0

    async def wait(self) -> None:
        started = time.monotonic()
        if await wait_below(self._noted_backlog, self.limit):
            waited = time.monotonic() - started
            self.waited_seconds += waited
            log.info("history load waited %.1f s for transform's backlog to fall to %d records "
                     "(KMSYNC_BACKFILL_MAX_TRANSFORM_LAG): live rows are not queued behind it", waited, self.limit)

    async def _noted_backlog(self) -> int:
        """The backlog; said once a minute while the load waits on it (transform down: the load waits)."""
        n = await self.backlog()
        now = time.monotonic()
        if n > self.limit and now >= self._next_note:
            self._next_note = now + 60.0
            # A warning, so `kmsync backfill` shows it without a logging set-up (Python's last-resort handler).
            log.warning("history load waiting: transform's backlog is %d records (above %d, "
                        "KMSYNC_BACKFILL_MAX_TRANSFORM_LAG; live rows go first); is transform running?", n, self.limit)
        return n

    async def stop(self) -> None:
        """Close what ``start`` opened (each client, even when closing another raises); again: nothing."""
        self._clients = None
        await self._close.aclose()
