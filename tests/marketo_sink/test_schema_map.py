"""Issue #17: the sink writes to the instance as its admin set it up — over real HTTP to a sandbox
started empty and shaped like an admin would (``_c`` object names, a third of the fields, lengths):
only existing fields, strings cut with an outcome note, omitted fields counted once, never a dead
letter for an omitted field; an unsafe dedupe key refused with the fix; a removed field re-read."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from kmsync_contracts.marketo_ops import CustomActivity, CustomObjectUpsert, LeadUpsert
from kmsync_contracts.seed import (
    ENGAGEMENT_ACTIVITY_API_NAME,
    ENGAGEMENT_ACTIVITY_FIELDS,
    ENGAGEMENT_OBJECT_API_NAME,
    ENGAGEMENT_OBJECT_DEDUPE_FIELDS,
    ENGAGEMENT_OBJECT_FIELDS,
    POLLS_OBJECT_API_NAME,
    POLLS_OBJECT_DEDUPE_FIELDS,
    POLLS_OBJECT_FIELDS,
)
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import MarketoSettings
from kmsync_sink.decisions import Decision
from kmsync_sink.executor import WindowExecutor
from kmsync_sink.memory import ActivityWrites, LeadCache
from kmsync_sink.metrics import SinkMetrics
from kmsync_sink.planner import PlannerConfig, plan_window
from kmsync_sink.schema_map import InstanceSchemaMap, SchemaMetrics
from kmsync_sink.settings import WindowSettings
from kmsync_sink.worker import InstanceWorker, WorkerContext
from marketo_sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from marketo_sandbox.shape import ENTRY_NAME_LENGTH, kaltura_partial_shape
from marketo_sandbox.testing import SandboxHandle, running_sandbox

from .conftest import MUNCHKIN, T0, OpFactory

ENG_C = "kalturaUserSessionEngagement_c"
LONG_NAME = "A keynote whose name is longer than the admin's field"


def _value(data_type: str, name: str) -> Any:
    return {"integer": 3, "float": 0.5, "link": None}.get(data_type, f"{name}-v")


def engagement(ops: OpFactory, email: str, entry: str, op_id: str) -> CustomObjectUpsert:
    """An engagement record as transform emits it: every seed field, the link left to the sink."""
    record = {f.name: _value(f.data_type, f.name) for f in ENGAGEMENT_OBJECT_FIELDS if f.data_type != "link"}
    record.update(entry_id=entry, email=email, entry_name=LONG_NAME)
    return CustomObjectUpsert(**ops._base(email, MUNCHKIN, op_id), object_name=ENGAGEMENT_OBJECT_API_NAME,
                              dedupe_fields=ENGAGEMENT_OBJECT_DEDUPE_FIELDS, record=record)


def poll(ops: OpFactory, email: str, entry: str, op_id: str) -> CustomObjectUpsert:
    record = {f.name: _value(f.data_type, f.name) for f in POLLS_OBJECT_FIELDS}
    record.update(entry_id=entry, email=email)
    return CustomObjectUpsert(**ops._base(email, MUNCHKIN, op_id), object_name=POLLS_OBJECT_API_NAME,
                              dedupe_fields=POLLS_OBJECT_DEDUPE_FIELDS, record=record)


def activity(ops: OpFactory, email: str, entry: str, op_id: str) -> CustomActivity:
    attrs = {f.name: _value(f.data_type, f.name) for f in ENGAGEMENT_ACTIVITY_FIELDS if f.name != "entry_id"}
    attrs.update(email=email, entry_name=LONG_NAME)
    return CustomActivity(**ops._base(email, MUNCHKIN, op_id), activity_type=ENGAGEMENT_ACTIVITY_API_NAME,
                          primary_attribute_value=entry, activity_date=T0, attributes=attrs)


def client(sb: SandboxHandle) -> MarketoClient:
    settings = MarketoSettings(endpoint=sb.base_url, client_id=DEFAULT_CLIENT_ID,
                               client_secret=SecretStr(DEFAULT_CLIENT_SECRET), allow_insecure_http=True)
    return MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry())


async def execute(executor: WindowExecutor, window: list[Any]) -> dict[str, Decision]:
    plan = plan_window(window, PlannerConfig(batch_max=300), known_lead=lambda e: e in executor.cache)
    return {d.pending.op.op_id: d for d in await executor.execute(plan)}


async def test_writes_only_what_the_admin_created_cut_to_length_and_counts_omissions_once(
        ops: OpFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kmsync_sink.schema_map")
    registry = CollectorRegistry()
    async with running_sandbox(preset="empty") as sb, client(sb) as mc:
        sb.shape(kaltura_partial_shape())
        schema = InstanceSchemaMap(mc, MUNCHKIN, metrics=SchemaMetrics(registry))
        executor = WindowExecutor(mc, LeadCache(100), ActivityWrites(), schema=schema)
        first = await execute(executor, [
            ops.pending(LeadUpsert(**ops._base("a@x.com", MUNCHKIN, "lead-a"))),
            ops.pending(engagement(ops, "a@x.com", "1_a", "eng-a")),
            ops.pending(engagement(ops, "b@x.com", "1_a", "eng-b")),
            ops.pending(poll(ops, "a@x.com", "1_a", "poll-a")),
            ops.pending(activity(ops, "a@x.com", "1_a", "act-a")),
        ])
        second = await execute(executor, [ops.pending(engagement(ops, "c@x.com", "1_b", "eng-c"))])
        dump = sb.dump()
    decisions = {**first, **second}
    assert {k: d.status for k, d in decisions.items() if d.failed} == {}, {
        k: (d.reason_code, d.reason) for k, d in decisions.items()}
    # Written under the object's real (UI, _c) name, only its fields, entry_name cut to its length.
    stored = {r["entry_id"] + r["email"]: r for r in dump["customObjects"][ENG_C]}
    assert len(stored) == 3 and dump["customObjects"].get(ENGAGEMENT_OBJECT_API_NAME) is None
    rec = stored["1_aa@x.com"]
    assert rec["entry_name"] == LONG_NAME[:ENTRY_NAME_LENGTH] and "raise_hand" not in rec
    assert rec["personId"] == dump["leads"][0]["id"]
    assert decisions["eng-a"].reason_code == "kmsync.truncated"
    assert decisions["eng-a"].reason == (f"written with values cut to the field length in Marketo: entry_name "
                                         f"from {len(LONG_NAME)} to {ENTRY_NAME_LENGTH}")
    polls = dump["customObjects"]["kalturaUserPolls_c"]
    assert len(polls) == 1 and "poll_3_answer" in polls[0] and "poll_4_answer" not in polls[0]
    [act] = dump["activities"]
    assert {a["apiName"] for a in act["attributes"]} <= {"entry_name", "email", "user", "plays",
                                                         "vod_minutes_viewed", "live_minutes_viewed",
                                                         "total_vod_completion_rate", "clap_clicked_count",
                                                         "heart_clicked_count"}
    assert decisions["act-a"].reason_code == "kmsync.truncated"
    # Each omitted field: one log line and one gauge series for the instance, however many records.
    lines = [r.getMessage() for r in caplog.records if "has no field raise_hand" in r.getMessage()]
    assert len(lines) == 1 and ENG_C in lines[0]
    omitted = registry.get_sample_value("kmsync_sink_schema_omitted_fields",
                                        {"munchkin_id": MUNCHKIN, "schema": ENGAGEMENT_OBJECT_API_NAME,
                                         "field": "raise_hand"})
    assert omitted == 1
    assert registry.get_sample_value("kmsync_sink_truncated_values_total", {
        "munchkin_id": MUNCHKIN, "schema": ENGAGEMENT_OBJECT_API_NAME, "field": "entry_name"}) == 3
    gauges = [s for m in registry.collect() if m.name == "kmsync_sink_schema_omitted_fields" for s in m.samples]
    assert len([s for s in gauges if s.labels["schema"] == ENGAGEMENT_OBJECT_API_NAME]) == 20


async def test_a_dedupe_key_that_would_overwrite_attendees_is_refused_with_the_fix(ops: OpFactory) -> None:
    shape = kaltura_partial_shape()
    for f in shape.custom_objects[0].fields:
        f.dedupe = f.name == "entry_id"  # the seed marks only entry_id "Primary"
    async with running_sandbox(preset="empty") as sb, client(sb) as mc:
        sb.shape(shape)
        registry = CollectorRegistry()
        executor = WindowExecutor(mc, LeadCache(100), ActivityWrites(),
                                  schema=InstanceSchemaMap(mc, MUNCHKIN, metrics=SchemaMetrics(registry)))
        got = await execute(executor, [ops.pending(engagement(ops, "a@x.com", "1_a", "eng-a")),
                                       ops.pending(engagement(ops, "b@x.com", "1_a", "eng-b"))])
        dump = sb.dump()
        syncs = sb.call_count("POST /rest/v1/customobjects/{apiName}.json")
    assert {d.reason_code for d in got.values()} == {"kmsync.schema_refused"}
    reason = got["eng-a"].reason or ""
    assert "every attendee of a session would overwrite one record" in reason
    assert f"recreate '{ENG_C}' with dedupe fields entry_id + personId" in reason
    assert not got["eng-a"].retryable  # dead-lettered with the fix; replayed once Marketo is fixed
    assert dump["customObjects"][ENG_C] == [] and syncs == 0
    assert registry.get_sample_value("kmsync_sink_schema_refused", {
        "munchkin_id": MUNCHKIN, "schema": ENGAGEMENT_OBJECT_API_NAME}) == 1


async def test_a_field_removed_after_discovery_is_reread_and_the_record_retried_not_dead_lettered(
        ops: OpFactory) -> None:
    async with running_sandbox(preset="empty") as sb, client(sb) as mc:
        sb.shape(kaltura_partial_shape())
        executor = WindowExecutor(mc, LeadCache(100), ActivityWrites(), schema=InstanceSchemaMap(mc, MUNCHKIN))
        assert not (await execute(executor, [ops.pending(engagement(ops, "a@x.com", "1_a", "eng-a"))]))[
            "eng-a"].failed
        # The admin deletes a field the sink had discovered (UI: delete field, re-approve).
        version = sb.instance().co_types[ENG_C].approved
        assert version is not None
        version.fields = [f for f in version.fields if f.name != "plays"]
        got = (await execute(executor, [ops.pending(engagement(ops, "b@x.com", "1_a", "eng-b"))]))["eng-b"]
        assert got.failed and got.reason_code == "1006" and got.retryable, got
        again = (await execute(executor, [ops.pending(engagement(ops, "b@x.com", "1_a", "eng-b2"))]))["eng-b2"]
        assert not again.failed, again
        stored = {r["email"]: r for r in sb.dump()["customObjects"][ENG_C]}
    assert "plays" not in stored["b@x.com"]


async def test_each_instance_worker_maps_onto_its_own_discovered_schema_with_names_from_the_settings(
        ops: OpFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """KMSYNC_SINK_SCHEMA_NAMES names an object discovery cannot find; the worker's executor maps
    onto it, and its omitted fields land on the sink's registry (shared by the instance's workers)."""
    monkeypatch.setenv("KMSYNC_SINK_SCHEMA_NAMES",
                       json.dumps({MUNCHKIN: {"kalturaUserSessionEngagement": "sessions_c"}}))
    monkeypatch.setenv("KMSYNC_SINK_SCHEMA_REFRESH_SECONDS", "30")
    settings = WindowSettings()
    assert settings.sink_schema_names == {MUNCHKIN: {"kalturaUserSessionEngagement": "sessions_c"}}
    shape = kaltura_partial_shape()
    shape.custom_objects[0].api_name, shape.custom_objects[0].display_name = "sessions", "Session stats"
    metrics = SinkMetrics()

    async def published(decisions: list[Decision], give_up: Any) -> None:
        return None

    async with running_sandbox(preset="empty") as sb, client(sb) as mc:
        sb.shape(shape)
        workers = [InstanceWorker(MUNCHKIN, mc, WorkerContext(settings, ActivityWrites(), published, metrics, lambda: 0.0))
                   for _ in range(2)]  # a second worker for the instance (after a rebalance) shares the families
        schema = workers[1].executor.schema
        assert schema is not None and schema.refresh_seconds == 30
        got = await execute(workers[1].executor, [ops.pending(engagement(ops, "a@x.com", "1_a", "eng-a"))])
        assert not got["eng-a"].failed, got["eng-a"]
        assert len(sb.dump()["customObjects"]["sessions_c"]) == 1
    assert metrics.registry.get_sample_value("kmsync_sink_schema_omitted_fields", {
        "munchkin_id": MUNCHKIN, "schema": ENGAGEMENT_OBJECT_API_NAME, "field": "mic_on"}) == 1


async def test_a_windows_concurrent_lead_calls_read_the_lead_fields_once() -> None:
    """A backfill window of 5,000 new leads makes 17 Sync Leads calls at once; each needs the lead fields.
    One Describe Lead serves them all (17 describes spent 17 of the backfill's 27 calls per 20 s)."""
    reads: list[int] = []

    class Reader:
        async def describe_leads(self) -> list[dict[str, Any]]:
            reads.append(1)
            await asyncio.sleep(0)  # the answer arrives later: the other calls are already waiting
            return [{"rest": {"name": "email", "readOnly": False}, "dataType": "email", "length": 255}]

    schema = InstanceSchemaMap(cast(Any, Reader()), MUNCHKIN)
    answers = await asyncio.gather(*(schema.lead_fields() for _ in range(17)))
    assert len(reads) == 1 and all(a is not None and "email" in a for a in answers)
