"""The pull mode for one virtual event: statuses since the watermark, ended sessions' reports.

* Statuses (docs/reference/kaltura-api.md §7.1 step 1): pages of user-profile/list with
  updatedAtGreaterThanOrEqual=watermark ordered by updatedAt (the client walks them as a keyset).
  Each page's new records are committed together with the watermark past them (the page's newest
  updatedAt and the ids stamped exactly then), so the next pull re-reads that instant and skips
  those ids. With ``KMSYNC_STATUSES_OVERLAP_SECONDS`` a pull starts that long before the watermark (a
  version Kaltura makes visible late is UNCONFIRMED, docs/reference/kaltura-api.md §7.1.1): the boundary
  remembers the versions produced in that window (boundary.py), so a re-read one is skipped (counted and
  logged) and only a version not produced before is produced.
* Engagement and polls (§7.1 steps 2-3): each session that has ended is pulled, then re-pulled
  every ``session_repull`` until ``late_data_window`` after ingest first pulled it as ended,
  because analytics rows arrive late (§7.5). Rows are de-duplicated by content, so a re-pull
  produces only rows that are new or changed (or newly final).
* Pulls of one stream never overlap; a trigger that arrives while one runs waits for it and
  then runs again only if no pull started after the trigger arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from kmsync_common import hash_email
from kmsync_common.clock import Clock, SystemClock
from kmsync_config import EventConfig
from kmsync_contracts import DeadLetter, KalturaRecord, SessionTimes
from kmsync_ingest.boundary import Boundary, Overlap, capped, select_after, select_changed
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.notifications import Notification
from kmsync_ingest.publisher import Publisher
from kmsync_ingest.source import Item, KalturaSource, SessionWindow, Stream
from kmsync_ingest.times import iso_time, unix_time
from kmsync_ingest.watermarks import WatermarkStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullResult:
    stream: Stream
    scope: str
    read: int
    produced: int
    dead_lettered: int
    duplicates: int


#: How many marks a big snapshot's digests are spread over (by the digest's first hex digit).
SHARDS = 16


def _shard_scope(entry_id: str, k: int) -> str:
    return f"{entry_id}#{k}"


@dataclass(frozen=True)
class PullTiming:
    late_data_window: timedelta = timedelta(hours=24)
    session_repull: timedelta = timedelta(minutes=10)
    #: Above this many digests a snapshot's seen set is sharded (20,000 x ~23 bytes ≈ 460 KB).
    max_ids_per_mark: int = 20_000
    #: Statuses pulls re-read this far before the watermark, remembering at most this many versions (settings).
    statuses_overlap: Overlap = field(default_factory=Overlap)


def _hashed_email(item: Item[Any]) -> str:
    return hash_email(getattr(item.record, "email", None))


#: A dead-lettered profile is remembered apart from the record's versions (boundary.py): an invalid profile is
#: never taken for a version produced before, and never makes a valid one stale.
INVALID = "invalid:"


def version_of(item: Item[Any]) -> tuple[datetime, str]:
    """An item's (time, id) for the statuses boundary."""
    return item.time, item.ident if item.problem is None else f"{INVALID}{item.ident}"


def place_unstamped(items: Sequence[Item[Any]], boundary: Boundary | None) -> tuple[list[Item[Any]], set[int]]:
    """Invalid profiles without a readable updatedAt (``Item.time_unknown``) stamped at the newest time this page
    and the boundary know (it never moves the watermark), and which of them (``id()``) the boundary remembers
    already: re-reads, not dead-lettered again but remembered again at the new stamp, so the memory keeps them as
    long as the walk returns them. Not where the walk started (the source's stamp when no valid profile came
    before it): with an overlap that moves with the watermark, and such a profile was dead-lettered again on every
    pull, and counted as late."""
    if not any(i.time_unknown for i in items):
        return list(items), set()
    newest = max([i.time for i in items if not i.time_unknown] + ([boundary.watermark] if boundary else []),
                 default=None)
    placed: list[Item[Any]] = []
    reread: set[int] = set()
    for item in items:
        if item.time_unknown:
            item = item if newest is None else replace(item, time=newest)
            if boundary is not None and version_of(item)[1] in boundary.newest:
                reread.add(id(item))
        placed.append(item)
    return placed, reread


def dead_letter_for(item: Item[Any], key: str, now: datetime) -> DeadLetter:
    assert item.problem is not None
    p = item.problem
    return DeadLetter(
        stage="ingest", reason_code=p.reason_code.value, reason=p.reason, source_key=key,
        source_topic=None, payload={"source_ref": p.source_ref, "row": p.payload}, failed_at=now,
    )


class EventPuller:
    def __init__(
        self,
        event: EventConfig,
        source: KalturaSource,
        publisher: Publisher,
        watermarks: WatermarkStore,
        metrics: IngestMetrics,
        timing: PullTiming,
        clock: Clock | None = None,
    ) -> None:
        self.event = event
        self.source = source
        self.publisher = publisher
        self.watermarks = watermarks
        self.metrics = metrics
        self.timing = timing
        #: Monotonic pull start times and dead letters' failed_at (not Kaltura's clock: see source.now()).
        self.clock = clock or SystemClock()
        self._locks: dict[str, asyncio.Lock] = {}
        #: Set when the service stops: a pull ends after the page it is on.
        self.stopping = False
        #: Monotonic start time of the last successful pull of each lock scope.
        self._last_ok_start: dict[str, float] = {}

    async def idle(self) -> None:
        """Wait until no pull of this event is running (each ends after its page once stopping)."""
        for lock in list(self._locks.values()):
            async with lock:
                pass

    @property
    def ids(self) -> tuple[int, int]:
        return self.event.partner_id, self.event.virtual_event_id

    def _lock(self, scope: str) -> asyncio.Lock:
        return self._locks.setdefault(scope, asyncio.Lock())

    async def _commit(
        self, stream: Stream, scope: str, fresh: Sequence[Item[Any]], watermark: datetime, seen: frozenset[str],
        extra: Sequence[tuple[str, frozenset[str]]] = (), recent: Boundary | None = None,
    ) -> tuple[int, int]:
        """Produce the fresh items with the watermark that covers them (atomically when the
        publisher is transactional); returns (records, dead letters)."""
        records: list[KalturaRecord] = [i.record for i in fresh if i.record is not None]
        letters = [
            dead_letter_for(i, f"{self.event.partner_id}:{self.event.virtual_event_id}:{i.ident}", self.clock.now())
            for i in fresh if i.problem is not None
        ]
        pid, vid = self.ids
        await self.watermarks.commit(pid, vid, stream, scope, watermark, seen, records, letters, extra,
                                     via=self.publisher, recent=recent)
        if letters:
            self.metrics.bad_rows.labels("pull").inc(len(letters))
        return len(records), len(letters)

    # ------------------------------------------------------------------------------ statuses
    def covers_profile(self, note: Notification) -> bool:
        """A UserProfile notification (the sandbox's extension) whose version the stored statuses
        watermark already covers needs no pull: it is in Kafka already."""
        if note.kind != "user_profile":
            return False
        obj = note.fields.get("object")
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            return False
        when = iso_time(obj.get("updatedAt"))
        boundary = self.watermarks.boundary(*self.ids, "statuses")
        if when is None or boundary is None:
            return False
        return boundary.covers(when, obj["id"])

    async def pull_statuses(self, requested_at: float | None = None) -> PullResult:
        """Everything changed since the stored watermark; returns what was produced."""
        async with self._lock("statuses"):
            if requested_at is not None and self._last_ok_start.get("statuses", -1.0) >= requested_at:
                return PullResult("statuses", "", 0, 0, 0, 0)
            started = self.clock.monotonic()
            try:
                result = await self._pull_statuses()
            except Exception:
                self.metrics.pulls.labels("statuses", "error").inc()
                raise
            self._last_ok_start["statuses"] = started
            self.metrics.pulls.labels("statuses", "ok").inc()
            return result

    async def _pull_statuses(self) -> PullResult:
        pid, vid = self.ids
        boundary = self.watermarks.boundary(pid, vid, "statuses")
        overlap = self.timing.statuses_overlap
        read = produced = dead = dups = 0
        pages = self.source.statuses(self.event, boundary.read_from(overlap.window) if boundary else None)
        try:
            async for items in pages:
                read += len(items)
                self.metrics.records_in.labels("statuses", "pull").inc(len(items))
                items, reread = place_unstamped(items, boundary)
                fresh, after = select_after(items, version_of, boundary, overlap)
                fresh = [i for i in fresh if id(i) not in reread]
                dups += len(items) - len(fresh)
                self.metrics.duplicates.labels("statuses").inc(len(items) - len(fresh))
                self._report_overlap(items, fresh, boundary, after)
                # The page's records and the watermark past them (and its overlap memory) are committed together.
                if after is not None and after != boundary:
                    p, d = await self._commit("statuses", "", fresh, after.watermark, after.seen_ids, recent=after)
                    produced, dead = produced + p, dead + d
                boundary = after
                if self.stopping:
                    break
        finally:
            closer = getattr(pages, "aclose", None)
            if closer is not None:
                await closer()
        return PullResult("statuses", "", read, produced, dead, dups)

    def _report_overlap(
        self, items: Sequence[Item[Any]], fresh: Sequence[Item[Any]], before: Boundary | None, after: Boundary | None
    ) -> None:
        """Make the overlap's decisions visible: each version older than the watermark that was re-read and
        skipped as already produced (debug, email hashed), each one produced late because only the overlap
        found it (warning: Kaltura showed it after a newer one; never a dead letter, which is no evidence of
        that), each one skipped as stale because a newer version of the profile was produced (info), and a
        window cut short by its memory's cap."""
        if before is None:
            return
        produced = {id(i) for i in fresh}
        skipped = late = stale = 0
        for item in items:
            when, ident = version_of(item)
            if when >= before.watermark or (id(item) in produced and item.problem is not None):
                continue
            if id(item) in produced:
                late += 1
                log.warning("statuses of event %s: profile %s updated at %s (%s) was not visible when a newer "
                            "version was read; found by the overlap re-read and produced now",
                            self.event.virtual_event_id, item.ident, item.time.isoformat(), _hashed_email(item))
            elif before.superseded(when, ident) and not before.covers(when, ident):
                stale += 1
                log.info("statuses of event %s: profile %s updated at %s (%s) read after its newer version at %s was "
                         "produced (a lagging read): stale, skipped", self.event.virtual_event_id, item.ident,
                         when.isoformat(), _hashed_email(item), before.newest[ident].isoformat())
            elif before.recent_from is not None and item.time >= before.recent_from:
                skipped += 1
                if log.isEnabledFor(logging.DEBUG):  # thousands per pull at an event's start: no hash unless logged
                    log.debug("statuses of event %s: profile %s updated at %s (%s) re-read by the overlap: already "
                              "produced, skipped", self.event.virtual_event_id, item.ident, item.time.isoformat(),
                              _hashed_email(item))
        self.metrics.statuses_overlap.labels("skipped").inc(skipped)
        self.metrics.statuses_overlap.labels("late").inc(late)
        self.metrics.statuses_overlap.labels("stale").inc(stale)
        if skipped or late:
            log.info("statuses of event %s: the overlap re-read %d version(s) already produced (skipped) and found "
                     "%d produced late", self.event.virtual_event_id, skipped, late)
        if after is not None and capped(before, after, self.timing.statuses_overlap):
            self.metrics.statuses_overlap.labels("capped").inc()
            log.warning("statuses of event %s: more than %d versions in the overlap window; the next pull re-reads "
                        "only from %s (KMSYNC_STATUSES_OVERLAP_MAX_IDS)", self.event.virtual_event_id,
                        self.timing.statuses_overlap.max_recent, (after.recent_from or after.watermark).isoformat())

    # ------------------------------------------------------------------------------ sessions
    async def learn_session(self, note: Notification) -> None:
        """Remember an entry's times from its notification (docs/reference/kaltura-api.md §7.2: ENTRY changed),
        durably: they are stored with the watermarks (scope ``window:<entry>``) and acknowledged by
        Kafka before the notification is answered, so a restarted ingest still knows the session
        has ended. Without them it pulled ended sessions as not final, and the late rows it found
        then never became custom activities (issue #13's chaos run)."""
        if note.kind != "entry" or note.entry_id is None:
            return
        obj = note.fields.get("object")
        obj = obj if isinstance(obj, dict) else note.fields
        start, end = unix_time(obj.get("startDate")), unix_time(obj.get("endDate"))
        if end is None:
            return
        name = obj.get("name")
        times = SessionTimes(name=name if isinstance(name, str) else None, start=start, end=end)
        pid, vid = self.ids
        stored = self.watermarks.get(pid, vid, "engagement", self._window_scope(note.entry_id))
        if stored is None or stored.session != times:
            # In a transaction like every other mark: a plain write behind a killed ingest's open
            # transaction would stay invisible to read_committed loads until that one is aborted.
            await self.watermarks.commit(pid, vid, "engagement", self._window_scope(note.entry_id), end,
                                         frozenset(), session=times, via=self.publisher)

    def learnt_window(self, entry_id: str) -> SessionWindow | None:
        """The session's times as stored: from its entry notification, else (a session pulled as
        ended before its times were stored, by an older ingest) ended no later than that pull."""
        pid, vid = self.ids
        window = self.watermarks.get(pid, vid, "engagement", self._window_scope(entry_id))
        if window is not None and window.session is not None:
            t = window.session
            return SessionWindow(entry_id, t.name, t.start, t.end)
        ended = self.watermarks.get(pid, vid, "engagement", self._ended_scope(entry_id))
        if ended is not None:
            return SessionWindow(entry_id, None, None, ended.watermark)
        return None

    async def known_sessions(self) -> list[SessionWindow]:
        """Kaltura's sessions of the event, plus times learnt from notifications; when the
        tenants file lists sessions, only those."""
        found = {s.entry_id: s for s in await self.source.sessions(self.event)}
        pid, vid = self.ids
        learnt = {mark.scope.split(":", 1)[1] for mark in self.watermarks
                  if (mark.partner_id, mark.virtual_event_id, mark.stream) == (pid, vid, "engagement")
                  and mark.scope.startswith(("window:", "ended:"))}
        for entry_id in learnt | set(found):
            if entry_id not in found or found[entry_id].end is None:
                window = self.learnt_window(entry_id)
                if window is not None:
                    found[entry_id] = window
        configured = {s.entry_id for s in self.event.sessions}
        return [s for s in found.values() if not configured or s.entry_id in configured]

    @staticmethod
    def _window_scope(entry_id: str) -> str:
        return f"window:{entry_id}"

    def _ended_scope(self, entry_id: str) -> str:
        return f"ended:{entry_id}"

    def _due(self, session: SessionWindow, now: datetime, force: bool) -> bool:
        """Ended sessions until the late-data window closes. A session whose end Kaltura did not
        tell (no entry notification yet) is pulled on the re-pull interval, as non-final figures.

        The window starts when ingest first pulled the session as ended (stored durably under the
        scope ``ended:<entry>``), measured on the same clock as the pulls, so it holds even when
        Kaltura's clock and ingest's disagree (the sandbox plays last year's event)."""
        if session.end is not None and session.end > now:
            return False
        if force:
            return True
        pid, vid = self.ids
        mark = self.watermarks.get(pid, vid, "engagement", session.entry_id)
        if mark is None:
            return True
        ended = self.watermarks.get(pid, vid, "engagement", self._ended_scope(session.entry_id))
        if session.end is not None and ended is not None and now - ended.watermark > self.timing.late_data_window:
            return False  # past the late-data window
        return now - mark.watermark >= self.timing.session_repull

    async def pull_sessions(self, entry_id: str | None = None, requested_at: float | None = None) -> list[PullResult]:
        """Pull the ended sessions that are due (or the one named, if it has ended)."""
        sessions = await self.known_sessions()
        if entry_id is not None:
            sessions = [s for s in sessions if s.entry_id == entry_id]
        now = await self.source.now()
        results: list[PullResult] = []
        for session in sessions:
            if self.stopping:
                break
            if self._due(session, now, force=entry_id is not None):
                results += await self.pull_session(session, now, requested_at)
        return results

    async def pull_session(
        self, session: SessionWindow, now: datetime, requested_at: float | None = None
    ) -> list[PullResult]:
        scope = f"session:{session.entry_id}"
        async with self._lock(scope):
            if requested_at is not None and self._last_ok_start.get(scope, -1.0) >= requested_at:
                return []
            started = self.clock.monotonic()
            results = []
            streams: tuple[Stream, ...] = ("engagement", "polls")
            for stream in streams:
                try:
                    results.append(await self._pull_snapshot(stream, session, now))
                except Exception:
                    self.metrics.pulls.labels(stream, "error").inc()
                    raise
                self.metrics.pulls.labels(stream, "ok").inc()
            pid, vid = self.ids
            ended_scope = self._ended_scope(session.entry_id)
            first_final = session.end is not None and session.end <= now
            if first_final and self.watermarks.get(pid, vid, "engagement", ended_scope) is None:
                await self.watermarks.commit(pid, vid, "engagement", ended_scope, now, frozenset(),
                                             via=self.publisher)
            if first_final:
                # Only a pull of the session as ended answers a trigger that came after it started:
                # a scheduled pull that read the sessions before an entry notification told their
                # end pulls them as not final, and the notification's own pull must still run.
                self._last_ok_start[scope] = started
            return results

    async def _pull_snapshot(self, stream: Stream, session: SessionWindow, now: datetime) -> PullResult:
        pid, vid = self.ids
        items: list[Item[Any]]
        if stream == "engagement":
            items = list(await self.source.engagement(self.event, session))
        else:
            items = list(await self.source.poll_answers(self.event, session))
        self.metrics.records_in.labels(stream, "pull").inc(len(items))
        entry = session.entry_id
        mark = self.watermarks.get(pid, vid, stream, entry)
        seen = frozenset(mark.seen_ids) if mark else frozenset()
        sharded_before = self.watermarks.get(pid, vid, stream, _shard_scope(entry, 0)) is not None
        if sharded_before:
            for k in range(SHARDS):
                shard = self.watermarks.get(pid, vid, stream, _shard_scope(entry, k))
                seen |= frozenset(shard.seen_ids) if shard else frozenset()
        fresh, current = select_changed(items, lambda i: {"id": i.ident, **i.content}, seen)
        self.metrics.duplicates.labels(stream).inc(len(items) - len(fresh))
        # A big snapshot's digests are split over SHARDS marks (a Kafka record is at most ~1 MB).
        extra: list[tuple[str, frozenset[str]]] = []
        main = current
        if len(current) > self.timing.max_ids_per_mark:
            main = frozenset()
            extra = [(_shard_scope(entry, k), frozenset(d for d in current if int(d[0], 16) % SHARDS == k))
                     for k in range(SHARDS)]
        elif sharded_before:
            extra = [(_shard_scope(entry, k), frozenset()) for k in range(SHARDS)]
        # Always stored: the engagement mark's time is also when this session was last pulled.
        produced, dead = await self._commit(stream, entry, fresh, now, main, extra)
        return PullResult(stream, entry, len(items), produced, dead, len(items) - len(fresh))

    async def pull_all(self) -> list[PullResult]:
        results = [await self.pull_statuses()]
        results += await self.pull_sessions()
        return results

