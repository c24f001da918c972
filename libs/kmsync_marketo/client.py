"""Typed Marketo REST operations. Writes return one outcome per input record, aligned by ``seq``.

Response-level errors that survive the transport's retries become a failed outcome for every record
of the affected call (with Marketo's code and the table's classification); record-level outcomes
are returned as they are, for the caller to retry only what failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from typing_extensions import Unpack

from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo import endpoints as ep
from kmsync_marketo.bulk import BulkImporter
from kmsync_marketo.errors import (
    ErrorClass,
    MarketoApiError,
    MarketoAuthError,
    MarketoHttpError,
    MarketoProtocolError,
    failure_of,
)
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_marketo.outcomes import IdKey, Outcome, align_results, failed_outcomes, request_id_of
from kmsync_marketo.settings import MarketoSettings
from kmsync_marketo.transport import MarketoTransport, TransportParts

LeadAction = Literal["createOrUpdate", "createOnly", "updateOnly", "createDuplicate"]
ObjectAction = Literal["createOrUpdate", "createOnly", "updateOnly"]


class ActivityRecord(BaseModel):
    """One custom activity to add (§7.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lead_id: int = Field(gt=0)
    activity_type_id: int = Field(gt=0)
    activity_date: AwareDatetime
    primary_attribute_value: str = Field(min_length=1)
    #: Secondary attributes by apiName (≤ 20 per type, §7.1).
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    def to_marketo(self) -> dict[str, Any]:
        return {
            "leadId": self.lead_id,
            "activityDate": self.activity_date.isoformat(),
            "activityTypeId": self.activity_type_id,
            "primaryAttributeValue": self.primary_attribute_value,
            "attributes": [{"apiName": k, "value": v} for k, v in self.attributes.items()],
        }


@dataclass(frozen=True)
class LeadActivity:
    """One activity read back from a lead's activity log (Get Lead Activities)."""

    #: marketoGUID when Marketo sends it, else the integer id, as a string.
    marketo_id: str
    lead_id: int
    activity_type_id: int
    primary_attribute_value: str | None
    activity_date: str | None


def _lead_activity(item: Mapping[str, Any]) -> LeadActivity | None:
    guid = item.get("marketoGUID") if item.get("marketoGUID") is not None else item.get("id")
    try:
        lead_id, type_id = int(item["leadId"]), int(item["activityTypeId"])
    except (KeyError, TypeError, ValueError):
        return None
    primary = item.get("primaryAttributeValue")
    date = item.get("activityDate")
    return LeadActivity(str(guid) if guid is not None else "", lead_id, type_id,
                        None if primary is None else str(primary), None if date is None else str(date))


#: Pages read per Get Lead Activities query at most (a guard against a token that never ends).
ACTIVITY_PAGES_MAX = 1000


@dataclass(frozen=True)
class LeadSyncResult:
    outcomes: list[Outcome]
    #: Lowercased email → lead id, for every record Marketo created or updated.
    lead_ids: dict[str, int]


#: Compact JSON as Marketo is sent it; one encoder for every record (json.dumps with separators builds one per call).
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: orjson refuses what the standard encoder refuses too (datetimes, dataclasses): those go to ``_JSON`` and fail
#: as before. Integers beyond 64 bits and non-string keys, which orjson refuses, go to ``_JSON`` and are encoded.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def encode_record(record: Any) -> bytes:
    """One record as compact UTF-8 JSON: orjson (0.4 µs against the standard encoder's 5.9 µs for an
    activity, issue #22), the same bytes but for a small float's exponent, valid JSON either way (``5e-7``
    for ``5e-07``); anything orjson refuses is encoded by the standard encoder. (A NaN, which orjson writes
    as null, never reaches here: operations come off Kafka as JSON, where pydantic wrote it as null.)"""
    try:
        return orjson.dumps(record, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return _JSON.encode(record).encode()


def encoded_chunks(
    records: Sequence[Any], max_records: int = ep.BATCH_MAX, max_bytes: int = ep.REST_BODY_MAX_BYTES - 10_000
) -> Iterator[tuple[int, list[Any], list[bytes]]]:
    """(offset, records, their JSON) chunks of at most ``max_records`` whose JSON stays under ``max_bytes``;
    each record is encoded once, and the body is made of those bytes (``json_body``, issue #22)."""
    start = 0
    current: list[Any] = []
    encoded: list[bytes] = []
    size = 2
    for i, rec in enumerate(records):
        raw = encode_record(rec)
        rec_size = len(raw) + 1
        if current and (len(current) >= max_records or size + rec_size > max_bytes):
            yield start, current, encoded
            start, current, encoded, size = i, [], [], 2
        current.append(rec)
        encoded.append(raw)
        size += rec_size
    if current:
        yield start, current, encoded


def chunk_records(
    records: Sequence[Any], max_records: int = ep.BATCH_MAX, max_bytes: int = ep.REST_BODY_MAX_BYTES - 10_000
) -> Iterator[tuple[int, list[Any]]]:
    """(offset, records) chunks of at most ``max_records`` whose JSON stays under ``max_bytes``."""
    for offset, chunk, _ in encoded_chunks(records, max_records, max_bytes):
        yield offset, chunk


def json_body(extra: Mapping[str, Any], encoded: Sequence[bytes]) -> bytes:
    """``{**extra, "input": [records]}`` as compact JSON, from the records' own bytes: byte for byte what
    encoding the whole body gives."""
    head = _JSON.encode(dict(extra))[:-1]
    return (head + ("," if extra else "") + '"input":[').encode() + b",".join(encoded) + b"]}"


class MarketoClient:
    """The Marketo client of one instance. Cheap to create: limiter and token are shared per process."""

    def __init__(self, settings: MarketoSettings, **parts: Unpack[TransportParts]) -> None:
        """``parts``: what the transport may be given instead of making its own (TransportParts)."""
        self.settings = settings
        self.transport = MarketoTransport(settings, **parts)

    @property
    def limiter(self) -> InstanceLimiter:
        return self.transport.limiter

    def bulk(self) -> BulkImporter:
        """The Bulk Import API of this instance, on this client's transport (same limiter and token)."""
        return BulkImporter(self)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> MarketoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ writes
    async def _write_batches(
        self,
        path: str,
        records: Sequence[Mapping[str, Any]],
        extra: Mapping[str, Any],
        id_key: IdKey,
        idempotent: bool = True,
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for offset, chunk, encoded in encoded_chunks(records):
            try:
                body = await self.transport.call("POST", path, encoded_json=json_body(extra, encoded),
                                                 idempotent=idempotent)
            except (MarketoApiError, MarketoHttpError, MarketoProtocolError) as exc:
                outcomes.extend(failed_outcomes(failure_of(exc), offset, len(chunk)))
                continue
            except MarketoAuthError as exc:
                if not outcomes:  # nothing sent yet: the whole call was refused (the caller's case)
                    raise
                # Identity refused a token between two chunks: the chunks answered keep their outcomes (an
                # insert-only write must not be taken as unsent), this one and the rest were not sent.
                outcomes.extend(failed_outcomes(failure_of(exc), offset, len(records) - offset))
                break
            results = body.get("result") or []
            outcomes.extend(align_results(results, len(chunk), offset, id_key, request_id_of(body)))
        return outcomes

    async def sync_leads(
        self,
        leads: Sequence[Mapping[str, Any]],
        *,
        action: LeadAction = "createOrUpdate",
        lookup_field: str = "email",
        partition_name: str | None = None,
    ) -> LeadSyncResult:
        """Sync Leads, ``POST /rest/v1/leads.json`` (§5.1). Results carry no ``seq``: aligned by order."""
        extra: dict[str, Any] = {"action": action, "lookupField": lookup_field}
        if partition_name:
            extra["partitionName"] = partition_name
        outcomes = await self._write_batches(ep.LEADS, leads, extra, "id")
        lead_ids: dict[str, int] = {}
        for outcome in outcomes:
            email = leads[outcome.seq].get("email")
            if outcome.status in ("created", "updated") and outcome.marketo_id and isinstance(email, str):
                lead_ids[email.strip().lower()] = int(outcome.marketo_id)
        return LeadSyncResult(outcomes, lead_ids)

    async def sync_program_member_status(
        self, program_id: int, status_name: str, lead_ids: Sequence[int]
    ) -> list[Outcome]:
        """Sync Program Member Status (§6.2). A lead already at an equal or higher step comes back
        ``skipped`` with 1037 (not an error); an unknown status name fails every record with 1025."""
        records = [{"leadId": int(lead_id)} for lead_id in lead_ids]
        return await self._write_batches(
            ep.program_member_status(program_id), records, {"statusName": status_name}, "leadId"
        )

    async def sync_program_member_data(self, program_id: int, records: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Sync Program Member Data (§13.4): each record ``{"leadId": id, <field>: value, ...}``, ≤ 300 per
        call; existing members only (``1013`` skips the others); results matched by ``seq``."""
        return await self._write_batches(ep.program_member_data(program_id), records, {}, "leadId")

    async def add_custom_activities(self, activities: Sequence[ActivityRecord]) -> list[Outcome]:
        """Add Custom Activities (§7.1); the id returned is marketoGUID (or id on older instances).
        Activities are insert-only: after an ambiguous failure (604, 5xx, lost answer) the records come
        back failed/retry-soon with "may have been applied" instead of being replayed blindly."""
        records = [a.to_marketo() for a in activities]
        # Insert-only: a call that may have been applied is never replayed here (§7.1, §10.4).
        outcomes = await self._write_batches(ep.CUSTOM_ACTIVITIES, records, {}, ("marketoGUID", "id"), idempotent=False)
        return outcomes

    async def sync_custom_objects(
        self,
        api_name: str,
        records: Sequence[Mapping[str, Any]],
        *,
        action: ObjectAction = "createOrUpdate",
        dedupe_by: Literal["dedupeFields", "idField"] = "dedupeFields",
    ) -> list[Outcome]:
        """Sync Custom Objects (§8.2); ``idField`` dedupe is valid only with updateOnly."""
        if dedupe_by == "idField" and action != "updateOnly":
            raise ValueError("dedupe_by='idField' is only valid with action='updateOnly' "
                             "(docs/reference/marketo-api.md §8.2)")
        return await self._write_batches(
            ep.custom_object_sync(api_name), records, {"action": action, "dedupeBy": dedupe_by}, "marketoGUID"
        )

    # ------------------------------------------------------------------ reads
    async def lead_activities(
        self, activity_type_ids: Sequence[int], lead_ids: Sequence[int], since: datetime
    ) -> list[LeadActivity]:
        """Get Lead Activities: every activity of these types on these leads since ``since``.

        A paging token for ``sinceDatetime`` (``GET /rest/v1/activities/pagingtoken.json``), then
        ``GET /rest/v1/activities.json`` pages until ``moreResult`` is false; pages may be short or
        empty while more remain (docs/reference/marketo-api.md §4.1, §10.12). Lead ids go 30 per query, type ids 10
        (Marketo's limits for this endpoint). Every call goes through the instance limiter like a
        write; errors raise (``MarketoError``), nothing is retried here beyond the transport's rules."""
        types = sorted({int(t) for t in activity_type_ids})
        leads = sorted({int(x) for x in lead_ids})
        if not types or not leads:
            return []
        if len(types) > ep.ACTIVITIES_TYPE_IDS_MAX:
            raise ValueError(f"at most {ep.ACTIVITIES_TYPE_IDS_MAX} activity type ids per query")
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        found: list[LeadActivity] = []
        for i in range(0, len(leads), ep.ACTIVITIES_LEAD_IDS_MAX):
            chunk = leads[i:i + ep.ACTIVITIES_LEAD_IDS_MAX]
            body = await self.transport.call("GET", ep.ACTIVITIES_PAGING_TOKEN,
                                             params={"sinceDatetime": since.isoformat()})
            token = body.get("nextPageToken")
            if not isinstance(token, str) or not token:
                raise MarketoProtocolError(f"GET {ep.ACTIVITIES_PAGING_TOKEN}: no nextPageToken")
            for _ in range(ACTIVITY_PAGES_MAX):
                page = await self.transport.call("GET", ep.ACTIVITIES, params={
                    "nextPageToken": token, "activityTypeIds": ",".join(map(str, types)),
                    "leadIds": ",".join(map(str, chunk)), "batchSize": ep.BATCH_MAX})
                for item in page.get("result") or []:
                    if isinstance(item, Mapping) and (act := _lead_activity(item)) is not None:
                        found.append(act)
                nxt = page.get("nextPageToken")
                if not page.get("moreResult") or not isinstance(nxt, str) or not nxt:
                    break
                token = nxt
            else:
                raise MarketoProtocolError(f"GET {ep.ACTIVITIES}: more than {ACTIVITY_PAGES_MAX} pages")
        return found

    async def _result(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        body = await self.transport.call("GET", path, params=params)
        result = body.get("result") or []
        return [r for r in result if isinstance(r, dict)]

    async def describe_leads(self) -> list[dict[str, Any]]:
        """Lead fields (``GET /rest/v1/leads/describe.json``, §5.3)."""
        return await self._result(ep.LEADS_DESCRIBE)

    async def describe_program_members(self) -> list[dict[str, Any]]:
        """Program member fields (``GET /rest/v1/programs/members/describe.json``, §13.3, Read-Only Lead)."""
        return await self._result(ep.PROGRAM_MEMBERS_DESCRIBE)

    async def create_program_member_fields(self, fields: Sequence[Mapping[str, Any]]) -> None:
        """Create program member custom fields (§13.2; Read-Write Schema Custom Field, else 603)."""
        body = await self.transport.call("POST", ep.PROGRAM_MEMBER_FIELDS, json={"input": list(fields)})
        _raise_on_skipped(body, len(fields))

    async def activity_types(self) -> list[dict[str, Any]]:
        """All activity types, standard and custom (§7.2)."""
        return await self._result(ep.ACTIVITY_TYPES)

    async def custom_activity_types(self) -> list[dict[str, Any]]:
        return await self._result(ep.CUSTOM_ACTIVITY_TYPES)

    async def describe_custom_activity_type(self, api_name: str, *, draft: bool = False) -> dict[str, Any] | None:
        params = {"draft": "true"} if draft else None
        try:
            result = await self._result(ep.custom_activity_type_describe(api_name), params)
        except MarketoApiError as exc:
            if exc.error_class is ErrorClass.PERMANENT:
                return None
            raise
        return result[0] if result else None

    async def custom_objects(self) -> list[dict[str, Any]]:
        """Approved custom object types with their metadata (``GET /rest/v1/customobjects.json``)."""
        return await self._result(ep.CUSTOM_OBJECTS)

    async def custom_object_schemas(self) -> list[dict[str, Any]]:
        """Custom object types in any state (``GET /rest/v1/customobjects/schema.json``, §8.3)."""
        return await self._result(ep.CUSTOM_OBJECT_SCHEMA)

    async def describe_custom_object(self, api_name: str) -> dict[str, Any] | None:
        try:
            result = await self._result(ep.custom_object_describe(api_name))
        except MarketoApiError as exc:
            if exc.error_class is ErrorClass.PERMANENT:
                return None
            raise
        return result[0] if result else None

    async def _asset_pages(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self._result(path, {**(params or {}), "offset": offset, "maxReturn": ep.ASSET_PAGE_MAX})
            items.extend(page)
            if len(page) < ep.ASSET_PAGE_MAX:
                return items
            offset += len(page)

    async def channels(self) -> list[dict[str, Any]]:
        """Every channel with its progression statuses (Asset API, paged by 200, §6.1)."""
        return await self._asset_pages(ep.CHANNELS)

    async def channel_by_name(self, name: str) -> dict[str, Any] | None:
        result = await self._result(ep.CHANNEL_BY_NAME, {"name": name})
        return result[0] if result else None

    async def programs(self) -> list[dict[str, Any]]:
        """Every program (Asset API ``programs.json``; shape beyond §6.1 UNCONFIRMED)."""
        return await self._asset_pages(ep.PROGRAMS)

    async def program(self, program_id: int) -> dict[str, Any] | None:
        result = await self._result(ep.program(program_id))
        return result[0] if result else None

    async def usage_today(self, *, reconcile: bool = True) -> int:
        """Calls made today on the instance by every API user (§2.1 usage endpoints); optionally
        feeds the limiter's daily accounting."""
        result = await self._result(ep.USAGE_TODAY)
        total = int(result[0].get("total", 0)) if result else 0
        if reconcile:
            self.limiter.reconcile_usage(total)
        return total

    # ------------------------------------------------------------------ setup writes (§7.2, §8.3)
    async def create_custom_activity_type(self, definition: Mapping[str, Any]) -> dict[str, Any]:
        body = await self.transport.call("POST", ep.CUSTOM_ACTIVITY_TYPE_CREATE, json=dict(definition))
        result = body.get("result") or [{}]
        return dict(result[0])

    async def add_custom_activity_attributes(self, api_name: str, attributes: Sequence[Mapping[str, Any]]) -> None:
        await self.transport.call(
            "POST", ep.custom_activity_type_attributes_create(api_name), json={"attributes": list(attributes)}
        )

    async def approve_custom_activity_type(self, api_name: str) -> None:
        await self.transport.call("POST", ep.custom_activity_type_approve(api_name))

    async def sync_custom_object_type(self, definition: Mapping[str, Any]) -> None:
        body = await self.transport.call(
            "POST", ep.CUSTOM_OBJECT_SCHEMA, json={"action": "createOrUpdate", **dict(definition)}
        )
        _raise_on_skipped(body, 1)

    async def describe_custom_object_schema(self, api_name: str, state: str | None = None) -> dict[str, Any] | None:
        params = {"state": state} if state else None
        try:
            result = await self._result(ep.custom_object_schema_describe(api_name), params)
        except MarketoApiError as exc:
            if exc.error_class is ErrorClass.PERMANENT:
                return None
            raise
        return result[0] if result else None

    async def add_custom_object_fields(self, api_name: str, fields: Sequence[Mapping[str, Any]]) -> None:
        body = await self.transport.call(
            "POST", ep.custom_object_schema_add_field(api_name), json={"input": list(fields)}
        )
        _raise_on_skipped(body, len(fields))

    async def approve_custom_object_type(self, api_name: str) -> None:
        await self.transport.call("POST", ep.custom_object_schema_approve(api_name))


def _raise_on_skipped(body: Mapping[str, Any], count: int) -> None:
    """Schema writes answer per item; a skipped item means the change was not made."""
    for outcome in align_results(body.get("result") or [], count, 0, None):
        if outcome.status == "failed" and outcome.reason_code != ReasonCode.MISSING_RESULT:
            raise MarketoApiError(outcome.reason_code or "?", outcome.reason or "skipped")
