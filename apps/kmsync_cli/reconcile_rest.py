"""Reconciliation against an existing Marketo instance, by reading back over its REST API (issue #17).

`kmsync run --marketo-endpoint ...` plays the demo into an instance kmsync did not provision (a
customer's Marketo sandbox subscription, or a separately started marketo-sandbox): there is no
admin dump, so what kmsync wrote is read back the way any API user can — leads by email, program
members by lead id, both custom objects by their dedupe keys (as the instance's discovered schema
names them), activities of the discovered type by lead — and handed to the same pure comparison as
the local demo (reconcile.py). The reads use their own client with a small share of the instance's
rate and stop at ``max_calls`` (``kmsync_marketo.readback.ReadBudget``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from pydantic import SecretStr

from kmsync_cli.readback_resume import ReplayingTransport, ResumableBudget
from kmsync_cli.reconcile import Json, Reconciliation, reconcile
from kmsync_contracts.kaltura_records import AttendanceStatus
from kmsync_contracts.seed import ENGAGEMENT_ACTIVITY_API_NAME, ENGAGEMENT_OBJECT_API_NAME, POLLS_OBJECT_API_NAME
from kmsync_marketo import readback as rb
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.schema import SEED_LINK_FIELD, ObjectSchema, discover_schema
from kmsync_marketo.settings import LimiterSettings, MarketoSettings
from kmsync_marketo.transport import MarketoTransport
from kmsync_transform.emails import normalise_email

#: Share of the instance's rate window the read-back may use (the sink has its own share).
READBACK_SHARE = 0.2
#: Calls one reconciliation may spend at most (of a daily quota of 50,000 or more, §2.1).
READBACK_MAX_CALLS = 500


@dataclass(frozen=True)
class ExternalMarketo:
    """An existing instance: what the admin copies from Web Services and LaunchPoint (seed)."""

    endpoint: str
    munchkin_id: str
    client_id: str
    client_secret: SecretStr
    program_id: int

    def settings(self, share: float = READBACK_SHARE) -> MarketoSettings:
        loopback = urlsplit(self.endpoint).hostname in ("127.0.0.1", "localhost", "::1")
        return MarketoSettings(endpoint=self.endpoint, client_id=self.client_id, client_secret=self.client_secret,
                               munchkin_id=self.munchkin_id, allow_insecure_http=loopback,
                               limits=LimiterSettings(share=share, rate_headroom_calls=2))


def _emails(truth: Json) -> list[str]:
    out = set()
    for person in truth["attendees"]:
        email = None if person.get("email_defect") else normalise_email(person.get("email"))
        if email is not None:
            out.add(email)
    return sorted(out)


def _keys(rows: list[Json], emails: set[str]) -> set[tuple[str, str]]:
    keys = set()
    for row in rows:
        email = normalise_email(row.get("email"))
        if email is not None and email in emails:
            keys.add((str(row["entry_id"]), email))
    return keys


def _key_record(obj: ObjectSchema, entry: str, email: str, lead_ids: dict[str, list[int]]) -> list[dict[str, Any]]:
    """The dedupe key(s) of the record kmsync wrote for (entry, person), in the object's names."""
    out: list[dict[str, Any]] = [{}]
    for name in obj.dedupe_fields:
        if name == obj.link_field:
            out = [{**k, name: lid} for k in out for lid in lead_ids.get(email, [])]
        elif name == "email":
            out = [{**k, name: email} for k in out]
        else:
            out = [{**k, name: entry} for k in out]
    return out


async def read_back(client: MarketoClient, truth: Json, program_id: int, budget: rb.ReadBudget) -> dict[str, Any]:
    """What the instance holds for this event, shaped like the sandbox's dump (seed names)."""
    emails = _emails(truth)
    engaged = _keys(truth["engagement"], set(emails))
    answered = _keys(truth["poll_answers"], set(emails))
    budget.require(rb.estimate_calls(len(emails), 2, max(len(engaged), len(answered))) + 5)
    leads = await rb.leads_by_email(client, emails, budget)
    lead_ids: dict[str, list[int]] = {}
    for lead in leads:
        lead_ids.setdefault(str(lead.get("email") or "").lower(), []).append(int(lead["id"]))
    by_id = {int(lead["id"]): str(lead.get("email") or "").lower() for lead in leads}
    members = await rb.program_members(client, program_id, sorted(by_id), budget) if by_id else []
    before = client.limiter.stats().calls_started
    schema = await discover_schema(client)
    budget.used += client.limiter.stats().calls_started - before
    objects: dict[str, list[dict[str, Any]]] = {}
    for logical, keys in ((ENGAGEMENT_OBJECT_API_NAME, engaged), (POLLS_OBJECT_API_NAME, answered)):
        obj = schema.objects.get(logical)
        objects[logical] = []
        if obj is None or not keys:
            continue
        wanted = [k for entry, email in sorted(keys) for k in _key_record(obj, entry, email, lead_ids)]
        fields = list(dict.fromkeys([*obj.dedupe_fields, *([obj.link_field] if obj.link_field else []),
                                     *(["email"] if "email" in obj.fields else [])]))
        for r in await rb.custom_objects_by_key(client, obj.api_name, wanted, fields, budget):
            email = str(r.get("email") or "").lower()
            link = r.get(obj.link_field) if obj.link_field else None
            if link is None and email in lead_ids:
                link = lead_ids[email][0]
            objects[logical].append({"entry_id": r.get("entry_id"), SEED_LINK_FIELD: link, "email": email,
                                     "marketoGUID": r.get("marketoGUID")})
    activities: list[dict[str, Any]] = []
    types: list[dict[str, Any]] = []
    if schema.activity is not None and by_id:
        types = [{"id": schema.activity.type_id, "apiName": ENGAGEMENT_ACTIVITY_API_NAME}]
        since = datetime.fromisoformat(str(truth["origin"]).replace("Z", "+00:00")) - timedelta(days=1)
        for a in await rb.activities(client, schema.activity.type_id, sorted(by_id), since, budget):
            activities.append({"activityTypeId": a.activity_type_id, "primaryAttributeValue": a.primary_attribute_value,
                               "leadId": a.lead_id, "marketoGUID": a.marketo_id})
    # Each lead with the registration fields read back (title, company, ...: the lead fields row).
    held = {int(lead["id"]): {**lead, "id": int(lead["id"]), "email": by_id[int(lead["id"])]} for lead in leads}
    return {"leads": list(held.values()), "programMembers": members,
            "customObjects": objects, "activityTypes": types, "activities": activities}


async def reconcile_by_rest(target: ExternalMarketo, truth: Json, *, share: float = READBACK_SHARE,
                            max_calls: int = READBACK_MAX_CALLS) -> tuple[Reconciliation, int]:
    """(the comparison, calls spent). Raises ``ReadBudgetExceeded`` when the event is too large for
    ``max_calls``, ``MarketoError`` when the instance cannot be read."""
    return await reconcile_over_rest(target.settings(share), truth, target.program_id, max_calls=max_calls)


async def reconcile_over_rest(settings: MarketoSettings, truth: Json, program_id: int, *,
                              max_calls: int = READBACK_MAX_CALLS,
                              overrides: Mapping[AttendanceStatus, str] | None = None,
                              resume: Path | None = None) -> tuple[Reconciliation, int]:
    """``reconcile_by_rest`` for any instance's client settings (give them a small share of the rate);
    with ``resume``, answers are kept in that file and a stopped read-back continues (readback_resume.py)."""
    budget = rb.ReadBudget(max_calls) if resume is None else ResumableBudget(max_calls)
    async with MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry()) as client:
        if isinstance(budget, ResumableBudget) and resume is not None:
            client.transport = cast(MarketoTransport, ReplayingTransport(client.transport, resume, budget))
        dump = await read_back(client, truth, program_id, budget)
    # Granular labels are not read back: Get Program Members fails the call for a field the instance lacks.
    return reconcile(truth, dump, program_id, overrides, labels=False), budget.used
