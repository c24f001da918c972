"""Sync Program Member Data and the program member describe against the sandbox (docs/reference/marketo-api.md §13)."""

from __future__ import annotations

from kmsync_marketo.member_fields import granular_field_problem, label_record, member_fields
from marketo_sandbox import preset_kaltura as kp
from marketo_sandbox.admin import dump_instance
from marketo_sandbox.config import BehaviourConfig

from .conftest import sandbox_env


async def test_301_labels_go_in_two_calls_with_outcomes_in_input_order() -> None:
    async with sandbox_env("kaltura") as env:
        client = env.client()
        leads = await client.sync_leads([{"email": f"m{i}@example.com"} for i in range(301)])
        ids = [leads.lead_ids[f"m{i}@example.com"] for i in range(301)]
        await client.sync_program_member_status(kp.PROGRAM_ID, "Registered", ids[:300])
        await client.sync_program_member_status(kp.PROGRAM_ID, "Registered", ids[300:])
        records = [label_record(i, "Registered", "kalturaGranularStatus").record for i in ids]
        records[5] = {"leadId": 999_999, "kalturaGranularStatus": "Registered"}  # not a member
        records[300] = {"leadId": ids[300], "noSuchField": "x"}
        before = env.inst.call_count(endpoint="POST /rest/v1/programs/{programId}/members.json")
        outcomes = await client.sync_program_member_data(kp.PROGRAM_ID, records)
        assert env.inst.call_count(endpoint="POST /rest/v1/programs/{programId}/members.json") - before == 2
        assert [o.seq for o in outcomes] == list(range(301))
        assert {o.status for i, o in enumerate(outcomes) if i not in (5, 300)} == {"updated"}
        assert outcomes[0].marketo_id == str(ids[0])
        assert (outcomes[5].status, outcomes[5].reason_code) == ("failed", "1013")
        assert (outcomes[300].status, outcomes[300].reason_code) == ("failed", "1006")
        members = {m["leadId"]: m for m in dump_instance(env.inst, env.manual.time())["programMembers"]}
        assert members[ids[0]]["kalturaGranularStatus"] == "Registered"


async def test_describe_finds_the_preset_field_and_says_what_is_wrong_otherwise() -> None:
    async with sandbox_env("kaltura") as env:
        client = env.client()
        fields = member_fields(await client.describe_program_members())
        assert granular_field_problem(fields, "kalturaGranularStatus") is None
        assert fields["kalturaGranularStatus"].length == 255
        missing = granular_field_problem(fields, "kalturaStatus_c")
        assert missing is not None and "API name 'kalturaGranularStatus'" in missing
        assert "status" in (granular_field_problem(fields, "statusName") or "")  # not updateable
    async with sandbox_env("empty") as env:
        fields = member_fields(await env.client().describe_program_members())
        problem = granular_field_problem(fields, "kalturaGranularStatus")
        assert problem is not None and "Admin > Field Management > New Custom Field" in problem


async def test_response_level_1006_fails_every_record() -> None:
    async with sandbox_env("kaltura") as env:
        env.inst.config = env.inst.config.model_copy(update={"behaviour": BehaviourConfig(
            unknown_member_field_level="response")})
        client = env.client()
        leads = await client.sync_leads([{"email": "a@example.com"}])
        lead = leads.lead_ids["a@example.com"]
        await client.sync_program_member_status(kp.PROGRAM_ID, "Registered", [lead])
        outcomes = await client.sync_program_member_data(kp.PROGRAM_ID, [{"leadId": lead, "nope": "x"}])
        assert [(o.status, o.reason_code) for o in outcomes] == [("failed", "1006")]
