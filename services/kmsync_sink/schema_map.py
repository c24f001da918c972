"""One instance's Marketo schema as the admin really set it up, and operations mapped onto it (issue #17).

Transform emits records in the seed's names (``kalturaUserSessionEngagement``, ``personId``, every
seed field). At write time the sink maps them onto what discovery found in the instance
(kmsync_marketo.schema): the object's real API name (``..._c`` when made in the UI), only the
fields that exist, strings cut to each field's length, the lead link under the object's own link
field. A field the admin chose not to create is omitted, counted once (gauge + one log line per
instance, schema and field), and never fails a record. An object whose dedupe fields would make
attendees overwrite each other is not written: its records fail with a reason that says what to
change in Marketo.

Discovery is lazy (objects on the first window with a custom object, the activity type on the
first with an activity), refreshed every ``refresh_seconds`` and as soon as Marketo answers a
write with a code that means the schema changed (``STALE_SCHEMA_CODES``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo.errors import MarketoAuthError, MarketoError
from kmsync_marketo.lead_schema import LeadShaped, lead_fields, shape_lead
from kmsync_marketo.schema import (
    ENGAGEMENT_ACTIVITY,
    LOGICAL_OBJECTS,
    ActivitySchema,
    FieldInfo,
    ObjectSchema,
    SchemaReader,
    Shaped,
    cut_primary,
    dedupe_problem,
    discover_activity,
    discover_objects,
    omitted_fields,
    shape_attributes,
    shape_record,
)

log = logging.getLogger(__name__)

#: Re-read the schema this often (an admin may add a field or approve a change at any time).
SCHEMA_REFRESH_SECONDS = 600.0
#: Record- or call-level codes meaning the schema kmsync holds is out of date: a field is gone
#: (1006 Field not found) or the object/type is (1013 Object not found), docs/reference/marketo-api.md §3.3.
STALE_SCHEMA_CODES = frozenset({"1006", "1013"})

@dataclass(frozen=True)
class SchemaFailure:
    #: SCHEMA_MISSING (create it, then replay), SCHEMA_REFUSED (dedupe fields would make records
    #: overwrite each other: fix it, then replay), both final; SCHEMA_UNREAD (a transient read error): retried.
    code: ReasonCode
    reason: str
    retryable: bool


class SchemaMetrics:
    """``kmsync_sink_schema_omitted_fields{munchkin_id,schema,field}`` (1 per seed field the instance lacks),
    ``kmsync_sink_truncated_values_total{munchkin_id,schema,field}``,
    ``kmsync_sink_schema_refused{munchkin_id,schema}``."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry or CollectorRegistry()
        self.omitted = Gauge("kmsync_sink_schema_omitted_fields",
                             "Seed fields the Marketo instance does not have (not written, never a failure)",
                             ["munchkin_id", "schema", "field"], registry=r)
        self.truncated = Counter("kmsync_sink_truncated_values",
                                 "String values cut to the Marketo field's length", ["munchkin_id", "schema", "field"],
                                 registry=r)
        self.refused = Gauge("kmsync_sink_schema_refused",
                             "1 while a custom object is not written (dedupe fields would overwrite records)",
                             ["munchkin_id", "schema"], registry=r)


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, SchemaMetrics] = weakref.WeakKeyDictionary()


def schema_metrics(registry: CollectorRegistry) -> SchemaMetrics:
    """The registry's one SchemaMetrics (every instance's worker shares the families)."""
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = SchemaMetrics(registry)
    return found


class InstanceSchemaMap:
    def __init__(
        self,
        reader: SchemaReader,
        instance: str = "",
        *,
        overrides: Mapping[str, str] | None = None,
        refresh_seconds: float = SCHEMA_REFRESH_SECONDS,
        metrics: SchemaMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        company_on_1021: str = "drop_and_retry",
    ) -> None:
        self.reader = reader
        #: KMSYNC_SINK_COMPANY_ON_1021: resend a lead refused with 1021 without company, or fail it.
        self.company_on_1021 = company_on_1021
        #: The instance's lead fields (Describe Lead), None until read.
        self.leads: dict[str, FieldInfo] | None = None
        self._leads_at: float | None = None
        #: One Describe Lead at a time: a window's concurrent Sync Leads calls wait for the one read.
        self._leads_lock = asyncio.Lock()
        self.instance = instance
        self.overrides = dict(overrides or {})
        self.refresh_seconds = refresh_seconds
        self.metrics = metrics or SchemaMetrics(None)
        self._mono = monotonic
        self.objects: dict[str, ObjectSchema | None] = {}
        self.object_errors: dict[str, str] = {}
        self.activity: ActivitySchema | None = None
        self.activity_error: str | None = None
        self._objects_at: float | None = None
        self._activity_at: float | None = None
        #: (schema, field) already reported as omitted; refusals already logged.
        self._reported: set[tuple[str, str]] = set()
        self._refused: dict[str, str] = {}

    # ----- refresh
    def mark_stale(self) -> None:
        """Marketo said a field or object is gone: read the schema again before the next write."""
        self._objects_at = self._activity_at = self._leads_at = None

    def _due(self, at: float | None) -> bool:
        return at is None or self._mono() - at >= self.refresh_seconds

    async def _ensure_objects(self) -> SchemaFailure | None:
        if not self._due(self._objects_at):
            return None
        try:
            self.objects, self.object_errors = await discover_objects(self.reader, self.overrides)
        except MarketoAuthError:
            raise  # refused credentials: the caller's rule for them (retried, then dead-lettered)
        except MarketoError as exc:
            if self._objects_at is None and not self.objects:
                return SchemaFailure(ReasonCode.SCHEMA_UNREAD, f"the custom objects could not be read: {exc}", True)
            log.warning("instance %s: custom object schema not refreshed (%s); using the last one", self.instance,
                        exc)
            self._objects_at = self._mono()
            return None
        self._objects_at = self._mono()
        for logical, found in self.objects.items():
            self._report(logical, found)
        return None

    async def _ensure_activity(self) -> SchemaFailure | None:
        if not self._due(self._activity_at):
            return None
        try:
            self.activity, self.activity_error = await discover_activity(
                self.reader, self.overrides.get(ENGAGEMENT_ACTIVITY))
        except MarketoAuthError:
            raise
        except MarketoError as exc:
            if self._activity_at is None and self.activity is None:
                return SchemaFailure(ReasonCode.SCHEMA_UNREAD, f"the custom activity type could not be read: {exc}",
                                     True)
            log.warning("instance %s: activity type not refreshed (%s); using the last one", self.instance, exc)
            self._activity_at = self._mono()
            return None
        self._activity_at = self._mono()
        self._report(ENGAGEMENT_ACTIVITY, self.activity)
        return None

    def _report(self, logical: str, found: ObjectSchema | ActivitySchema | None) -> None:
        """Omitted fields once per instance, schema and field (gauge + one log line); refusals once."""
        if found is None:
            return
        missing = set(omitted_fields(logical, found))
        for name in sorted(missing):
            if (logical, name) not in self._reported:
                self._reported.add((logical, name))
                log.info("instance %s: %s has no field %s; kmsync omits it (the seed's fields are optional)",
                         self.instance, found.api_name, name)
            self.metrics.omitted.labels(self.instance, logical, name).set(1)
        for schema, name in list(self._reported):
            if schema == logical and name not in missing:  # the admin added it since
                self._reported.discard((schema, name))
                self.metrics.omitted.labels(self.instance, logical, name).set(0)
        if isinstance(found, ObjectSchema):
            problem = dedupe_problem(found)
            if problem and self._refused.get(logical) != problem:
                log.error("instance %s: not writing %s: %s", self.instance, found.api_name, problem)
            if problem:
                self._refused[logical] = problem
            else:
                self._refused.pop(logical, None)
            self.metrics.refused.labels(self.instance, logical).set(1 if problem else 0)

    # ----- targets
    async def object_target(self, logical: str) -> ObjectSchema | SchemaFailure | None:
        """Where records of seed object ``logical`` go, or why they cannot be written; None for an
        object that is not one of the seed's (written under its own name, unmapped)."""
        if logical not in LOGICAL_OBJECTS:
            return None
        failed = await self._ensure_objects()
        if failed is not None:
            return failed
        found = self.objects.get(logical)
        if found is None:
            why = self.object_errors.get(logical)
            if why is not None:
                return SchemaFailure(ReasonCode.SCHEMA_MISSING, f"{why}; grant the API user's role 'Read-Write Custom "
                                                     "Object', then replay", False)
            return SchemaFailure(ReasonCode.SCHEMA_MISSING, (
                f"custom object {logical!r} is not in this Marketo instance (looked for {logical}, "
                f"{logical.removesuffix('_c')}_c and its display name); create and approve it in Admin > Marketo "
                "Custom Objects (or `kmsync marketo check --apply`), then replay"), False)
        problem = self._refused.get(logical)
        if problem is not None:
            return SchemaFailure(ReasonCode.SCHEMA_REFUSED, problem, False)
        return found

    async def activity_target(self) -> ActivitySchema | SchemaFailure:
        failed = await self._ensure_activity()
        if failed is not None:
            return failed
        if self.activity is None:
            return SchemaFailure(ReasonCode.SCHEMA_MISSING, (
                f"custom activity type {ENGAGEMENT_ACTIVITY!r} is not in this Marketo instance, or not approved "
                f"({self.activity_error or 'looked for it by API name with or without _c and by display name'}); "
                "create and approve it (`kmsync marketo check --apply`), then replay"), False)
        return self.activity

    async def lead_fields(self) -> Mapping[str, FieldInfo] | None:
        """The instance's lead fields (docs/reference/marketo-api.md §5.3), read on first use and
        refreshed like the rest; None while they could not be read (leads then go as transform wrote them)."""
        describe = getattr(self.reader, "describe_leads", None)
        if describe is None or not self._due(self._leads_at):
            return self.leads
        async with self._leads_lock:  # a window's lead calls run together: one of them reads, the rest wait
            if not self._due(self._leads_at):
                return self.leads
            try:
                self.leads = lead_fields(await describe())
            except MarketoAuthError:
                raise
            except MarketoError as exc:
                log.warning("instance %s: lead fields not read (%s); %s", self.instance, exc,
                            "using the last ones" if self.leads is not None else "leads go unshaped")
            self._leads_at = self._mono()
        return self.leads

    def shape_lead(self, fields: Mapping[str, FieldInfo], record: Mapping[str, Any]) -> LeadShaped:
        shaped = shape_lead(fields, record)
        for name, _, _ in shaped.truncated:
            self.metrics.truncated.labels(self.instance, "lead", name).inc()
        return shaped

    # ----- shaping
    def shape_object(self, obj: ObjectSchema, record: Mapping[str, Any]) -> Shaped:
        shaped = shape_record(obj, record)
        self._count(obj.logical, shaped)
        return shaped

    def shape_activity(self, act: ActivitySchema, attributes: Mapping[str, Any]) -> Shaped:
        shaped = shape_attributes(act, attributes)
        self._count(act.logical, shaped)
        return shaped

    def primary_value(self, act: ActivitySchema, value: str) -> str:
        return cut_primary(act, value)

    def _count(self, logical: str, shaped: Shaped) -> None:
        for name, _, _ in shaped.truncated:
            self.metrics.truncated.labels(self.instance, logical, name).inc()
