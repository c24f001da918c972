"""Reading back what kmsync wrote, over Marketo's REST API, within a capped number of calls (issue #17).

Used to reconcile a run against an existing instance (a customer's sandbox subscription) where
there is no admin dump: leads by email (§5.2, ``POST ?_method=GET`` with a form body so 100 addresses
never overflow the 8 KB URI, §10.9), program members by lead id (§6.3), custom objects by their dedupe
keys (§8.2 compound-key query, ``POST ?_method=GET`` with a JSON body), activities by type and lead
(Get Lead Activities, ``MarketoClient.lead_activities``). Every call goes through the client's
limiter (give the client a small ``share``) and counts against ``ReadBudget``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from kmsync_marketo import endpoints as ep
from kmsync_marketo.client import LeadActivity, MarketoClient

#: Emails per Get Leads call: 100 addresses of up to ~60 characters stay far below the form body
#: limit and the 300 filterValues (§5.2).
EMAILS_PER_CALL = 100
PAGES_MAX = 1000


class ReadBudgetExceeded(RuntimeError):
    """The read-back would spend more calls than its budget allows."""


class ReadBudget:
    """At most ``max_calls`` read calls (the share of the instance's daily quota a reconciliation may use)."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self.used = 0

    def spend(self, calls: int = 1) -> None:
        if self.used + calls > self.max_calls:
            raise ReadBudgetExceeded(f"the read-back needs more than its budget of {self.max_calls} calls "
                                     f"({self.used} used)")
        self.used += calls

    def require(self, calls: int) -> None:
        """Fail early when an estimate does not fit in what is left."""
        if self.used + calls > self.max_calls:
            raise ReadBudgetExceeded(f"the read-back needs about {calls} more calls, {self.max_calls - self.used} "
                                     f"of its budget of {self.max_calls} are left")


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


#: What a lead read-back returns: its identity and the registration fields the demo writes.
LEAD_FIELDS = "id,email,title,company,country,leadSource"


async def leads_by_email(client: MarketoClient, emails: Sequence[str], budget: ReadBudget) -> list[dict[str, Any]]:
    """Every lead with one of these emails (``id``, ``email`` and the registration fields kmsync maps by
    default and the demo's ``leadSource``: ``title``, ``company``, ``country``); several leads may share one."""
    found: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(set(emails)), EMAILS_PER_CALL):
        token: str | None = None
        for _ in range(PAGES_MAX):
            form = {"filterType": "email", "filterValues": ",".join(chunk), "fields": LEAD_FIELDS,
                    "batchSize": str(ep.BATCH_MAX)}
            if token:
                form["nextPageToken"] = token
            budget.spend()
            page = await client.transport.call("POST", ep.LEADS, params={"_method": "GET"}, data=form)
            found += [r for r in page.get("result") or [] if isinstance(r, dict)]
            token = page.get("nextPageToken") if page.get("moreResult") else None
            if not token:
                break
    return found


async def program_members(client: MarketoClient, program_id: int, lead_ids: Sequence[int],
                          budget: ReadBudget) -> list[dict[str, Any]]:
    """Members of the program among these leads (``leadId``, ``statusName``, ``reachedSuccess``)."""
    found: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(set(lead_ids)), ep.BATCH_MAX):
        token: str | None = None
        for _ in range(PAGES_MAX):
            params: dict[str, Any] = {"filterType": "leadId", "filterValues": ",".join(map(str, chunk)),
                                      "fields": "leadId,statusName,reachedSuccess", "batchSize": ep.BATCH_MAX}
            if token:
                params["nextPageToken"] = token
            budget.spend()
            page = await client.transport.call("GET", ep.program_members(program_id), params=params)
            found += [{**r, "programId": program_id} for r in page.get("result") or [] if isinstance(r, dict)]
            token = page.get("nextPageToken") if page.get("moreResult") else None
            if not token:
                break
    return found


async def custom_objects_by_key(client: MarketoClient, api_name: str, keys: Sequence[Mapping[str, Any]],
                                fields: Sequence[str], budget: ReadBudget) -> list[dict[str, Any]]:
    """The records with these dedupe keys (each key a mapping of every dedupe field)."""
    found: list[dict[str, Any]] = []
    for chunk in _chunks(list(keys), ep.BATCH_MAX):
        budget.spend()
        page = await client.transport.call(
            "POST", ep.custom_object_sync(api_name), params={"_method": "GET"},
            json={"filterType": "dedupeFields", "fields": list(fields), "input": [dict(k) for k in chunk]})
        found += [r for r in page.get("result") or [] if isinstance(r, dict)]
    return found


async def activities(client: MarketoClient, type_id: int, lead_ids: Sequence[int], since: datetime,
                     budget: ReadBudget) -> list[LeadActivity]:
    """Activities of one type on these leads since ``since`` (a paging token and ≥ 1 page per 30 leads)."""
    budget.require(2 * -(-len(set(lead_ids)) // ep.ACTIVITIES_LEAD_IDS_MAX))
    before = client.limiter.stats().calls_started
    try:
        return await client.lead_activities([type_id], lead_ids, since)
    finally:
        budget.used += client.limiter.stats().calls_started - before


def estimate_calls(emails: int, objects: int, object_keys: int) -> int:
    """Calls a read-back of this size takes at least (leads, members, objects, activities)."""
    lead_calls = -(-emails // EMAILS_PER_CALL)
    member_calls = -(-emails // ep.BATCH_MAX)
    object_calls = objects * -(-object_keys // ep.BATCH_MAX) if object_keys else 0
    activity_calls = 2 * -(-emails // ep.ACTIVITIES_LEAD_IDS_MAX)
    return lead_calls + member_calls + object_calls + activity_calls
