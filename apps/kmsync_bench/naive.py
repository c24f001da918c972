"""The baseline: a naive writer that sends one record per Marketo call, as peers do (docs/reference/peers.md §5a:
RudderStack's Marketo REST destination, the Confluent HTTP sink precursor's default batch of 1).

Plain httpx against the Marketo REST API (docs/reference/marketo-api.md §4-§8): a token, then per operation one
call; a lead id learnt from the lead's own upsert is cached (RudderStack caches lead ids too), a
missing one costs a look-up call. Each attendee's operations go in order; ``concurrency`` attendees
at a time. Errors are counted, never retried (a peer would retry; that only adds calls).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from kmsync_common.clock import SYSTEM_CLOCK
from kmsync_contracts.marketo_ops import (
    CustomActivity,
    CustomObjectUpsert,
    LeadUpsert,
    MarketoOperation,
    ProgramMemberStatus,
)


@dataclass
class NaiveStats:
    ops: int = 0
    write_calls: int = 0
    other_calls: int = 0
    failed_ops: int = 0
    seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)


class NaiveWriter:
    def __init__(self, endpoint: str, client_id: str, client_secret: str, concurrency: int = 5) -> None:
        self.http = httpx.AsyncClient(base_url=endpoint, timeout=30)
        self.client_id = client_id
        self.client_secret = client_secret
        self.concurrency = concurrency
        self.token = ""
        self.lead_ids: dict[str, int] = {}
        self.activity_type_ids: dict[str, int] = {}
        self.stats = NaiveStats()

    async def _auth(self) -> None:
        resp = await self.http.post("/identity/oauth/token", data={
            "grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret})
        resp.raise_for_status()
        self.token = str(resp.json()["access_token"])

    async def _call(self, method: str, path: str, *, write: bool, **kwargs: Any) -> dict[str, Any]:
        if write:
            self.stats.write_calls += 1
        else:
            self.stats.other_calls += 1
        resp = await self.http.request(method, path, headers={"Authorization": f"Bearer {self.token}"}, **kwargs)
        body: dict[str, Any] = resp.json()
        return body

    def _failed(self, body: dict[str, Any]) -> bool:
        result = body.get("result") or [{}]
        bad = not body.get("success") or str(result[0].get("status", "")) == "skipped"
        if bad:
            errors = body.get("errors") or result[0].get("reasons") or [{"code": "?"}]
            code = str(errors[0].get("code", "?"))
            if code == "1037":  # already in or past this status: not an error (docs/reference/marketo-api.md §6.2)
                return False
            self.stats.failures[code] = self.stats.failures.get(code, 0) + 1
        return bad

    async def _lead_id(self, email: str) -> int | None:
        if email in self.lead_ids:
            return self.lead_ids[email]
        body = await self._call("GET", "/rest/v1/leads.json", write=False,
                                params={"filterType": "email", "filterValues": email, "fields": "id"})
        found = body.get("result") or []
        if found:
            self.lead_ids[email] = int(found[0]["id"])
            return self.lead_ids[email]
        return None

    async def _activity_type(self, api_name: str) -> int | None:
        if not self.activity_type_ids:
            body = await self._call("GET", "/rest/v1/activities/external/types.json", write=False)
            self.activity_type_ids = {str(t["apiName"]): int(t["id"]) for t in body.get("result") or []}
        return self.activity_type_ids.get(api_name)

    async def write(self, op: MarketoOperation) -> bool:
        """One operation, one write call (plus a look-up when the lead id is not known)."""
        if isinstance(op, LeadUpsert):
            body = await self._call("POST", "/rest/v1/leads.json", write=True, json={
                "action": "createOrUpdate", "lookupField": "email", "input": [{"email": op.email, **op.fields}]})
            if self._failed(body):
                return False
            self.lead_ids[op.email] = int(body["result"][0]["id"])
            return True
        lead_id = await self._lead_id(op.email)
        if lead_id is None:
            self.stats.failures["no_lead"] = self.stats.failures.get("no_lead", 0) + 1
            return False
        if isinstance(op, ProgramMemberStatus):
            body = await self._call("POST", f"/rest/v1/programs/{op.program_id}/members/status.json", write=True,
                                    json={"statusName": op.status_name, "input": [{"leadId": lead_id}]})
        elif isinstance(op, CustomObjectUpsert):
            body = await self._call("POST", f"/rest/v1/customobjects/{op.object_name}.json", write=True, json={
                "action": "createOrUpdate", "dedupeBy": "dedupeFields",
                "input": [{**op.record, "personId": lead_id}]})
        else:
            assert isinstance(op, CustomActivity)
            type_id = await self._activity_type(op.activity_type)
            body = await self._call("POST", "/rest/v1/activities/external.json", write=True, json={"input": [{
                "leadId": lead_id, "activityDate": op.activity_date.isoformat(), "activityTypeId": type_id,
                "primaryAttributeValue": op.primary_attribute_value,
                "attributes": [{"apiName": k, "value": v} for k, v in op.attributes.items()]}]})
        return not self._failed(body)

    async def run(self, ops: Sequence[MarketoOperation]) -> NaiveStats:
        by_lead: dict[str, list[MarketoOperation]] = defaultdict(list)
        for op in ops:
            by_lead[op.email].append(op)
        queue: asyncio.Queue[list[MarketoOperation]] = asyncio.Queue()
        for lead_ops in by_lead.values():
            queue.put_nowait(lead_ops)

        async def worker() -> None:
            while not queue.empty():
                for op in queue.get_nowait():
                    if not await self.write(op):
                        self.stats.failed_ops += 1

        started = SYSTEM_CLOCK.monotonic()
        await self._auth()
        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        self.stats.ops = len(ops)
        self.stats.seconds = SYSTEM_CLOCK.monotonic() - started
        return self.stats

    async def aclose(self) -> None:
        await self.http.aclose()
