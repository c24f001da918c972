"""What Kaltura would show at a given scenario instant, and the ground truth.

Read-only views over a generated :class:`Scenario`: a registrant's User Profile exists from its first
transition, shows the latest transition at or before ``now`` and disappears once soft-deleted;
analytics rows and poll answers appear at their ``available_at``. Nothing here does I/O.

Late visibility (scenario ``late_profile_rate``/``late_profile_seconds``, docs/reference/kaltura-api.md §7.1.1,
UNCONFIRMED): a chosen share of transitions becomes visible only ``late_profile_seconds`` after its time; the
profile shows the newest transition visible so far, so an older updatedAt can appear after newer ones.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from kaltura_sandbox.formats import flatten_csv_value, fmt_time
from kaltura_sandbox.scenario import EngagementFact, PollAnswer, Registrant, Scenario, Transition
from kaltura_sandbox.statuses import HIGH_ATTENDANCE, REGISTERED_STATES


def unix(value: datetime) -> int:
    return int(value.timestamp())


class ScenarioView:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._late = self._late_transitions(scenario)
        #: Per registrant, when each transition's index is reached: the earliest time it or a later one is visible.
        self._times = [_reached(r, self._late) for r in scenario.registrants]
        self._users = {r.user_id.lower(): r for r in scenario.registrants}

    @staticmethod
    def _late_transitions(scenario: Scenario) -> dict[tuple[int, int], datetime]:
        """(registrant index, transition index) → when it becomes visible, for the transitions shown late."""
        c = scenario.config
        if c.late_profile_rate <= 0 or c.late_profile_seconds <= 0:
            return {}
        rng = random.Random(f"{scenario.seed}:late-profiles")
        lag = timedelta(seconds=c.late_profile_seconds)
        return {(r.index, k): t.at + lag for r in scenario.registrants for k, t in enumerate(r.transitions)
                if rng.random() < c.late_profile_rate}

    def late_versions(self) -> list[tuple[Registrant, Transition, datetime]]:
        """(registrant, transition, when user-profile/list first shows it) of every transition shown late."""
        regs = self.scenario.registrants
        return [(regs[i], regs[i].transitions[k], at) for (i, k), at in sorted(self._late.items())]

    # ------------------------------------------------------------------------------ profiles
    def _visible_count(self, index: int, now: datetime) -> int:
        return bisect.bisect_right(self._times[index], now)

    def profile(self, r: Registrant, now: datetime) -> dict[str, Any] | None:
        """The UserProfile object as ``user-profile/list`` returns it, or None if not visible."""
        k = self._visible_count(r.index, now)
        if k == 0 or (r.deleted_at is not None and r.deleted_at <= now):
            return None
        current = r.transitions[k - 1]
        event_data: dict[str, Any] = {
            "regOrigin": r.reg_origin,
            "attendanceStatus": current.status,
            "statusUpdateTime": fmt_time(current.at),
            "userRegistrationType": "virtualAttendanceRequest",
            "isRegistered": any(t.status in REGISTERED_STATES for t in r.transitions[:k]),
        }
        if k >= 2:
            event_data["previousAttendanceStatus"] = r.transitions[k - 2].status
        first_high = next((t.at for t in r.transitions[:k] if t.status in HIGH_ATTENDANCE), None)
        profile: dict[str, Any] = {
            "id": r.profile_id,
            "partnerId": self.scenario.config.partner_id,
            "appGuid": self.scenario.app_guid,
            "userId": r.user_id,
            "status": "enabled",
            "profileData": {k: v for k, v in {
                "firstName": r.first_name, "lastName": r.last_name, "company": r.company,
                "title": r.title, "userRole": r.role, "industry": r.industry, "country": r.country, **r.form,
            }.items() if v},  # a question left blank is not stored
            "eventData": event_data,
            "appData": {},
            "createdAt": fmt_time(r.created_at),
            "updatedAt": fmt_time(current.at),
            "objectType": "UserProfile",
        }
        if first_high is not None:
            event_data["firstAttendedStatusTime"] = fmt_time(first_high)
            profile["loginData"] = {"lastLoginDate": fmt_time(first_high), "lastLoginType": r.login_type}
        return profile

    def profiles(self, now: datetime) -> list[tuple[Registrant, dict[str, Any]]]:
        out = []
        for r in self.scenario.registrants:
            p = self.profile(r, now)
            if p is not None:
                out.append((r, p))
        return out

    def visible_heads(self, now: datetime) -> list[tuple[Registrant, Transition]]:
        """(registrant, its current transition) for every profile visible at ``now`` - cheap."""
        out = []
        for r in self.scenario.registrants:
            k = self._visible_count(r.index, now)
            if k and not (r.deleted_at is not None and r.deleted_at <= now):
                out.append((r, r.transitions[k - 1]))
        return out

    # --------------------------------------------------------------------------------- users
    def user(self, user_id: str, now: datetime) -> dict[str, Any] | None:
        """KalturaUser (api_v3 user.list item); users exist from their profile's creation on."""
        r = self._users.get(user_id.lower())
        if r is None or r.created_at > now:
            return None
        obj: dict[str, Any] = {
            "id": r.user_id,
            "partnerId": self.scenario.config.partner_id,
            "screenName": f"{r.first_name} {r.last_name}",
            "fullName": f"{r.first_name} {r.last_name}",
            "firstName": r.first_name,
            "lastName": r.last_name,
            "title": r.title,
            "company": r.company,
            "country": r.country,
            "status": 1,
            "createdAt": unix(r.created_at),
            "updatedAt": unix(r.created_at),
            "objectType": "KalturaUser",
        }
        if r.email is not None:
            obj["email"] = r.email
        return obj

    # ---------------------------------------------------------------------------- analytics
    def engagement(
        self, now: datetime, entry_ids: Iterable[str] | None = None,
        from_date: datetime | None = None, to_date: datetime | None = None,
    ) -> list[EngagementFact]:
        wanted = set(entry_ids) if entry_ids is not None else None
        rows = [
            e for e in self.scenario.engagement
            if e.available_at <= now
            and (wanted is None or e.entry_id in wanted)
            and (from_date is None or e.viewed_to >= from_date)
            and (to_date is None or e.viewed_from <= to_date)
        ]
        # Stable order so paging is consistent: most watched first (as Kaltura's UI lists it).
        rows.sort(key=lambda e: (-e.total_minutes, (e.email or "").lower(), e.user_id))
        return rows

    def poll_answers(self, now: datetime, entry_ids: Iterable[str] | None = None) -> list[PollAnswer]:
        """The rows pollsActivity shows by `now`, ordered by user and poll id: the report's row order
        is undocumented (docs/reference/kaltura-api.md §11), and this one is unrelated to the polls'
        order in the session, so a consumer that numbered polls by row or arrival would be caught."""
        wanted = set(entry_ids) if entry_ids is not None else None
        return sorted((
            a for a in self.scenario.poll_answers
            if a.available_at <= now and (wanted is None or a.entry_id in wanted)
        ), key=lambda a: (a.user_id, a.poll_id))

    # -------------------------------------------------------------------------- ground truth
    def truth(self, as_of: datetime | None = None) -> dict[str, Any]:
        """Everything the scenario contains (or, with ``as_of``, what Kaltura shows by then)."""
        s = self.scenario
        cut = as_of or s.end
        attendees = []
        for r in s.registrants:
            k = self._visible_count(r.index, cut)
            if k == 0:
                continue
            deleted = r.deleted_at is not None and r.deleted_at <= cut
            attendees.append({
                "user_id": r.user_id, "profile_id": r.profile_id, "email": r.email,
                "email_defect": r.email_defect, "first_name": r.first_name, "last_name": r.last_name,
                "title": r.title, "company": r.company, "country": r.country, "registration": dict(r.form),
                "reg_origin": r.reg_origin, "final_status": r.transitions[k - 1].status,
                "status_time": _iso(r.transitions[k - 1].at), "deleted": deleted,
                "deleted_at": _iso(r.deleted_at) if deleted and r.deleted_at else None,
                "transitions": [{"status": t.status, "at": _iso(t.at)} for t in r.transitions[:k]],
            })
        return {
            "seed": s.seed, "partner_id": s.config.partner_id, "virtual_event_id": s.config.virtual_event_id,
            "app_guid": s.app_guid, "as_of": _iso(cut), "origin": _iso(s.origin),
            "event_start": _iso(s.event_start), "event_end": _iso(s.event_end), "end": _iso(s.end),
            "sessions": [
                {"entry_id": x.entry_id, "name": x.name, "start": _iso(x.start), "end": _iso(x.end)}
                for x in s.sessions
            ],
            "polls": [
                {"entry_id": p.entry_id, "poll_id": p.poll_id, "index": p.index, "poll_type": p.poll_type,
                 "question": p.question, "options": list(p.options)}
                for p in s.polls
            ],
            "attendees": attendees,
            "engagement": [_row(e) for e in s.engagement if e.available_at <= cut],
            "poll_answers": [
                {**_row(a), "answer_as_exported": flatten_csv_value(a.answer),
                 "question_as_exported": flatten_csv_value(a.question)}
                for a in s.poll_answers if a.available_at <= cut
            ],
        }


def _reached(r: Registrant, late: dict[tuple[int, int], datetime]) -> list[datetime]:
    """For each transition k, the first time the profile shows k or a later one (non-decreasing, so a bisect
    of ``now`` counts the transitions reached: the profile shows the last of them)."""
    out: list[datetime] = []
    earliest: datetime | None = None
    for k in range(len(r.transitions) - 1, -1, -1):
        visible = late.get((r.index, k), r.transitions[k].at)
        earliest = visible if earliest is None else min(earliest, visible)
        out.append(earliest)
    return out[::-1]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _row(obj: EngagementFact | PollAnswer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = _iso(value) if isinstance(value, datetime) else value
    return out
