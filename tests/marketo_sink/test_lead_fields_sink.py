"""Issue #16 §3: lead upserts carry the mapped registration data, shaped onto the instance's lead
fields over real HTTP to the sandbox: a field the instance lacks is left out and named in the
outcome, a value longer than its field is cut and noted, and a company refused with 1021 is dropped
and the lead written again (or, with KMSYNC_SINK_COMPANY_ON_1021=fail, the lead fails)."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from kmsync_contracts.marketo_ops import LeadUpsert
from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import MarketoSettings
from kmsync_sink.decisions import Decision
from kmsync_sink.executor import WindowExecutor
from kmsync_sink.memory import ActivityWrites, LeadCache
from kmsync_sink.planner import PlannerConfig, plan_window
from kmsync_sink.schema_map import InstanceSchemaMap
from marketo_sandbox.config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    BehaviourConfig,
    CustomLeadField,
    InstanceConfig,
)
from marketo_sandbox.testing import SandboxHandle, running_sandbox

from .conftest import MUNCHKIN, OpFactory

FIELDS = {"firstName": "Ann", "title": "Chief Technology Officer", "company": "Acme", "country": "France",
          "jobFunction__c": "Engineering and operations", "notInThisInstance__c": "x"}


def client(sb: SandboxHandle) -> MarketoClient:
    settings = MarketoSettings(endpoint=sb.base_url, client_id=DEFAULT_CLIENT_ID,
                               client_secret=SecretStr(DEFAULT_CLIENT_SECRET), allow_insecure_http=True)
    return MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry())


def instance(company_refused: bool = False) -> InstanceConfig:
    return InstanceConfig(preset="kaltura", lead_fields=[CustomLeadField(name="jobFunction__c", length=11)],
                          behaviour=BehaviourConfig(company_update_refused=company_refused))


async def write(ops: OpFactory, sb: SandboxHandle, company_on_1021: str = "drop_and_retry",
                schema: bool = True) -> tuple[Decision, dict[str, Any]]:
    async with client(sb) as mc:
        shape = InstanceSchemaMap(mc, MUNCHKIN, company_on_1021=company_on_1021) if schema else None
        executor = WindowExecutor(mc, LeadCache(100), ActivityWrites(), schema=shape)
        lead = LeadUpsert(**ops._base("ann@x.com", MUNCHKIN, "lead-ann"), fields=FIELDS)
        plan = plan_window([ops.pending(lead)], PlannerConfig(batch_max=300), known_lead=lambda e: False)
        [decision] = await executor.execute(plan)
    [stored] = sb.dump()["leads"]
    return decision, stored


async def test_a_lead_gets_its_mapped_fields_cut_to_length_and_the_missing_one_named(ops: OpFactory) -> None:
    async with running_sandbox(instances=[instance()]) as sb:
        decision, stored = await write(ops, sb)
    assert decision.status == "created"
    assert (stored["title"], stored["company"], stored["country"]) == ("Chief Technology Officer", "Acme", "France")
    assert stored["jobFunction__c"] == "Engineering"
    assert "notInThisInstance__c" not in stored
    assert decision.reason_code == ReasonCode.LEAD_FIELD_OMITTED
    assert decision.reason == ("notInThisInstance__c not written: no such lead field in this instance; "
                               "jobFunction__c cut from 26 to 11 characters (the field's length)")


async def test_without_the_instance_schema_an_unknown_field_fails_the_whole_lead(ops: OpFactory) -> None:
    """What the shaping prevents: Sync Leads skips a lead naming a field the instance lacks (1006) or
    carrying a value longer than its field (1001 in the sandbox's default)."""
    async with running_sandbox(instances=[instance()]) as sb:
        async with client(sb) as mc:
            executor = WindowExecutor(mc, LeadCache(100), ActivityWrites())
            lead = LeadUpsert(**ops._base("ann@x.com", MUNCHKIN, "lead-ann"), fields=FIELDS)
            [decision] = await executor.execute(plan_window([ops.pending(lead)], PlannerConfig(batch_max=300),
                                                            known_lead=lambda e: False))
    assert decision.status == "failed" and decision.reason_code in ("1001", "1006")


async def test_a_company_refused_with_1021_is_dropped_and_the_lead_written(ops: OpFactory) -> None:
    async with running_sandbox(instances=[instance(company_refused=True)]) as sb:
        decision, stored = await write(ops, sb)
    assert decision.status == "created"
    assert "company" not in stored or stored["company"] in (None, "")
    assert stored["title"] == "Chief Technology Officer"
    assert decision.reason_code == ReasonCode.COMPANY_DROPPED
    assert decision.reason is not None and decision.reason.startswith(
        "company not written: Marketo refused it with 1021 Company update not allowed")
    assert "notInThisInstance__c not written" in decision.reason


async def test_with_company_on_1021_fail_the_lead_fails_with_marketo_code(ops: OpFactory) -> None:
    async with running_sandbox(instances=[instance(company_refused=True)]) as sb:
        async with client(sb) as mc:
            executor = WindowExecutor(mc, LeadCache(100), ActivityWrites(),
                                      schema=InstanceSchemaMap(mc, MUNCHKIN, company_on_1021="fail"))
            lead = LeadUpsert(**ops._base("ann@x.com", MUNCHKIN, "lead-ann"), fields=FIELDS)
            [decision] = await executor.execute(plan_window([ops.pending(lead)], PlannerConfig(batch_max=300),
                                                            known_lead=lambda e: False))
        assert sb.dump()["leads"] == []
    assert (decision.status, decision.reason_code, decision.retryable) == ("failed", "1021", False)


async def test_refused_credentials_while_reading_the_lead_fields_fail_the_leads_and_their_dependents(
        ops: OpFactory) -> None:
    from kmsync_marketo.errors import MarketoAuthError

    from .test_executor import MemoryWriter

    class Refusing(MemoryWriter):
        async def describe_leads(self) -> list[dict[str, Any]]:
            raise MarketoAuthError("Identity refused client id 'x'")

    writer = Refusing()
    executor = WindowExecutor(writer, LeadCache(100), ActivityWrites(), schema=InstanceSchemaMap(writer, MUNCHKIN))
    window = [ops.pending(LeadUpsert(**ops._base("ann@x.com", MUNCHKIN, "lead-ann"), fields=FIELDS)),
              ops.pending(ops.status("ann@x.com", op_id="status-ann"))]
    got = {d.pending.op.op_id: d for d in await executor.execute(
        plan_window(window, PlannerConfig(batch_max=300), known_lead=lambda e: False))}
    assert got["lead-ann"].failed and got["status-ann"].failed
    assert got["lead-ann"].reason_code == got["status-ann"].reason_code == ReasonCode.AUTH_REFUSED
    assert writer.leads == {} and writer.status_calls == []
