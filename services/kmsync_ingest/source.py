"""What the pull needs from Kaltura, as an interface (the Kaltura-backed one is kaltura_source).

Each source record comes back as an ``Item``: its identity for de-duplication plus either the
contract record it maps to or the reason it could not be read (dead-lettered). Bad items still
carry an identity, so the watermark moves past them and they are dead-lettered once, not on
every pull.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import JsonValue

from kmsync_config import EventConfig
from kmsync_contracts import AttendeeStatus, PollResponse, SessionEngagement
from kmsync_contracts.reasons import ReasonCode

R = TypeVar("R", AttendeeStatus, SessionEngagement, PollResponse)
Stream = Literal["statuses", "engagement", "polls"]


@dataclass(frozen=True)
class Problem:
    """A source row that could not be read: dead-lettered with where it came from."""

    reason_code: ReasonCode
    reason: str
    source_ref: str
    payload: JsonValue


@dataclass(frozen=True)
class Item(Generic[R]):
    #: When the source says this version of the record was last changed (statuses' updatedAt).
    time: datetime
    #: The source record's identity (profile/user id; user+entry; user+poll).
    ident: str
    record: R | None = None
    problem: Problem | None = None
    #: The row's content for snapshot de-duplication (engagement, polls).
    content: Mapping[str, object] = field(default_factory=dict)
    #: ``time`` is not the source's own (an invalid profile without a readable updatedAt: its place in the walk);
    #: the puller stamps it where a re-read recognises it (puller.place_unstamped).
    time_unknown: bool = False


@dataclass(frozen=True)
class SessionWindow:
    entry_id: str
    name: str | None
    start: datetime | None
    end: datetime | None


class KalturaSource(Protocol):
    def statuses(self, event: EventConfig, since: datetime | None) -> AsyncIterator[list[Item[AttendeeStatus]]]:
        """Pages of user profiles with updatedAt >= since (inclusive), oldest first, joined with
        their users; the walk itself never returns one (id, updatedAt) twice."""

    async def engagement(self, event: EventConfig, session: SessionWindow) -> list[Item[SessionEngagement]]:
        """Every engagement row of one session (all pages)."""

    async def poll_answers(self, event: EventConfig, session: SessionWindow) -> list[Item[PollResponse]]:
        """Every poll answer of one session."""

    async def sessions(self, event: EventConfig) -> list[SessionWindow]:
        """The event's sessions, with their times where Kaltura tells them."""

    async def now(self) -> datetime:
        """Kaltura's current time (decides which sessions have ended)."""

    async def close(self) -> None: ...
