"""Live and backfill lanes of one Marketo instance (issue #18, architecture.md principle 10).

An instance has a worker per lane: live operations (marketo.ops.v1) and backfill operations
(marketo.ops.backfill.v1) collect in windows of their own, so live never waits behind a backfill's
windows; both spend the one instance limiter, which serves live first and caps backfill
(kmsync_marketo.lanes). This module keeps the two lanes' writes of one person in order (pure, no I/O):

- **One lane at a time per person.** An operation whose lead (email) the other lane's window in flight
  is writing, or whose custom object record the other lane's outstanding bulk job carries, waits here
  until that ends (two upserts of one lead in flight at once can make duplicate leads,
  docs/reference/marketo-api.md §5.1; and their order at Marketo would be unknown).
- **Never an older value over a newer one.** Within a lane, Kafka's order is transform's order. Across
  lanes the sink may write them the other way round, so a custom object upsert that transform emitted
  before an upsert of the same record the other lane has already written is not sent: it is answered
  "skipped, kmsync.superseded". Program member statuses need no such rule (transform's forward-only
  state is one for both lanes, and Marketo never moves a member back, §6.1); custom activities are
  de-duplicated by op id (the ledger); lead upserts from backfills carry no fields.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from kmsync_contracts.marketo_ops import CustomObjectUpsert
from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo.lanes import BACKFILL, LIVE, Lane
from kmsync_sink.decisions import Decision
from kmsync_sink.pending import PendingOp
from kmsync_sink.planner import ObjectKey, record_key

#: Records whose last written upsert the gate remembers per instance (oldest forgotten first).
DEFAULT_REMEMBERED_RECORDS = 200_000


def other(lane: Lane) -> Lane:
    return BACKFILL if lane == LIVE else LIVE


@dataclass
class Admission:
    """What a lane's window may send now; the rest waits in the gate or is answered superseded."""

    send: list[PendingOp] = field(default_factory=list)
    superseded: list[Decision] = field(default_factory=list)
    waiting: int = 0


@dataclass
class _LaneState:
    #: Emails the lane's window in flight writes.
    busy: set[str] = field(default_factory=set)
    #: Whether a record is in the lane's outstanding bulk jobs (None: the lane has no pipeline).
    holds: Callable[[ObjectKey], bool] | None = None
    #: Gives operations that waited for the other lane back to this lane's window.
    resume: Callable[[list[PendingOp]], None] = lambda ops: None
    waiting: list[PendingOp] = field(default_factory=list)


class LaneGate:
    """One per instance, shared by its live and backfill workers."""

    def __init__(self, remember: int = DEFAULT_REMEMBERED_RECORDS) -> None:
        self._lanes: dict[Lane, _LaneState] = {LIVE: _LaneState(), BACKFILL: _LaneState()}
        #: Record → (lane, emitted_at) of the newest upsert of it that was sent.
        self._written: OrderedDict[ObjectKey, tuple[Lane, datetime]] = OrderedDict()
        self._remember = remember

    def register(self, lane: Lane, resume: Callable[[list[PendingOp]], None],
                 holds: Callable[[ObjectKey], bool] | None = None) -> None:
        self._lanes[lane].resume = resume
        self._lanes[lane].holds = holds

    def admit(self, lane: Lane, taken: list[PendingOp]) -> Admission:
        """Split a lane's window: what it sends now (its emails become busy), what waits for the other
        lane, what is superseded by a later upsert the other lane already sent."""
        mine, theirs = self._lanes[lane], self._lanes[other(lane)]
        out = Admission()
        for p in taken:
            key = record_key(p) if isinstance(p.op, CustomObjectUpsert) else None
            if p.op.email in theirs.busy or (key is not None and theirs.holds is not None and theirs.holds(key)):
                mine.waiting.append(p)
                out.waiting += 1
            elif key is not None and self._stale(lane, key, p.op.emitted_at):
                out.superseded.append(Decision(
                    p, "skipped", reason_code=ReasonCode.SUPERSEDED,
                    reason=f"the {other(lane)} lane already sent a later upsert of this {key[0]} record "
                           "(emitted after this one by transform): not sent, so it cannot overwrite newer data"))
            else:
                out.send.append(p)
                if key is not None:
                    self._note(lane, key, p.op.emitted_at)
        mine.busy = {p.op.email for p in out.send}
        return out

    def window_done(self, lane: Lane) -> None:
        """The lane's window in flight ended: its emails are free; the other lane's waiting ops go back."""
        self._lanes[lane].busy = set()
        self._give_back(other(lane))

    def job_done(self, lane: Lane) -> None:
        """One of the lane's bulk jobs ended: the other lane's waiting ops go back (and may wait again)."""
        self._give_back(other(lane))

    def drop(self, lane: Lane) -> list[PendingOp]:
        """Forget (and return) what waits for the other lane (a stop: replayed by the next owner)."""
        state = self._lanes[lane]
        dropped, state.waiting, state.busy = state.waiting, [], set()
        return dropped

    def waiting(self, lane: Lane) -> int:
        return len(self._lanes[lane].waiting)

    def _give_back(self, lane: Lane) -> None:
        state = self._lanes[lane]
        if state.waiting:
            ops, state.waiting = state.waiting, []
            state.resume(ops)

    def _stale(self, lane: Lane, key: ObjectKey, emitted_at: datetime) -> bool:
        last = self._written.get(key)
        return last is not None and last[0] != lane and emitted_at < last[1]

    def _note(self, lane: Lane, key: ObjectKey, emitted_at: datetime) -> None:
        last = self._written.get(key)
        if last is None or emitted_at >= last[1]:
            self._written[key] = (lane, emitted_at)
        self._written.move_to_end(key)
        while len(self._written) > self._remember:
            self._written.popitem(last=False)
