"""Kaltura Events attendance statuses and the paths the scenario lets registrants take.

The 11 values are User Profile ``eventData.attendanceStatus`` (docs/reference/kaltura-api.md §4.2). Kaltura itself
allows any transition; the generator restricts itself to the realistic paths below so the ground
truth is plausible, and the tests check every generated history against this table.
"""

from __future__ import annotations

from typing import Final

STATUSES: Final = (
    "created",
    "invited",
    "invitedPendingRegistration",
    "registered",
    "confirmed",
    "autoConfirmed",
    "attended",
    "participated",
    "participatedPostEvent",
    "blocked",
    "unregistered",
)

#: Statuses a registrant's history may start with.
INITIAL: Final = frozenset({"created", "invited", "registered", "autoConfirmed"})

#: Realistic next statuses (the generator never produces anything else).
ALLOWED_NEXT: Final[dict[str, frozenset[str]]] = {
    "created": frozenset({"invited", "registered", "autoConfirmed", "blocked"}),
    "invited": frozenset({"invitedPendingRegistration", "registered", "autoConfirmed", "blocked"}),
    "invitedPendingRegistration": frozenset({"registered", "autoConfirmed", "blocked"}),
    "registered": frozenset(
        {"confirmed", "attended", "participatedPostEvent", "unregistered", "blocked"}
    ),
    "confirmed": frozenset({"attended", "participatedPostEvent", "unregistered", "blocked"}),
    "autoConfirmed": frozenset({"attended", "participatedPostEvent", "unregistered", "blocked"}),
    "attended": frozenset({"participated", "participatedPostEvent", "blocked"}),
    "participated": frozenset({"participatedPostEvent", "blocked"}),
    "participatedPostEvent": frozenset(),
    "blocked": frozenset(),
    "unregistered": frozenset(),
}

#: "High attendance": the first transition into one of these sets firstAttendedStatusTime (§4.2).
HIGH_ATTENDANCE: Final = frozenset({"attended", "participated", "participatedPostEvent"})

#: Statuses in which eventData.isRegistered is true.
REGISTERED_STATES: Final = frozenset(
    {"registered", "confirmed", "autoConfirmed", "attended", "participated", "participatedPostEvent"}
)
