"""Bulk import against the sandbox: split files, queue limits (1016), failures and warnings files."""

from __future__ import annotations

from kmsync_marketo.bulk import BulkImporter
from kmsync_marketo.errors import ErrorClass
from kmsync_marketo.settings import BulkSettings, RetrySettings
from marketo_sandbox import preset_kaltura as kp
from marketo_sandbox.config import LimitsConfig

from .conftest import sandbox_env


async def test_lead_import_split_queued_and_failures_mapped_back() -> None:
    # Marketo-like queue, but only 2 slots so several parts collide with 1016.
    async with sandbox_env(limits=LimitsConfig(import_queued=2, import_running=1)) as env:
        client = env.client(env.settings(bulk=BulkSettings(max_file_bytes=4_000),
                                         retry=RetrySettings(import_queue_wait_seconds=10)))
        records: list[dict[str, object]] = []
        bad, warned = set(), set()
        for i in range(500):
            rec: dict[str, object] = {"email": f"bulk{i}@example.com", "firstName": f"F{i}", "leadScore": i}
            if i % 37 == 5:
                rec["leadScore"] = "lots"  # not an integer → row fails
                bad.add(i)
            elif i % 53 == 7:
                rec["email"] = f"nobody{i}"  # imported with a warning
                warned.add(i)
            records.append(rec)
        result = await BulkImporter(client).import_leads(records)
        assert len(result.jobs) > 3  # 500 rows did not fit one 4 KB file
        assert env.count("1016") > 0  # the queue was full at times, and the client waited
        assert [o.seq for o in result.outcomes] == list(range(500))
        failed = {o.seq for o in result.outcomes if o.status == "failed"}
        assert failed == bad
        assert all(o.classification is ErrorClass.PERMANENT and o.reason for o in result.outcomes
                   if o.status == "failed")
        assert {o.seq for o in result.outcomes if o.warning} == warned
        assert all(o.status == "updated" for o in result.outcomes if o.seq not in bad)
        assert len(env.inst.leads) == 500 - len(bad)


async def test_custom_object_and_program_member_imports_through_their_failure_files() -> None:
    async with sandbox_env("kaltura") as env:
        client = env.client()
        leads = await client.sync_leads([{"email": f"p{i}@example.com"} for i in range(4)])
        lead_ids = [leads.lead_ids[f"p{i}@example.com"] for i in range(4)]
        bulk = BulkImporter(client)

        objects = await bulk.import_custom_objects(kp.POLLS_CO, [
            {"entry_id": "1_x", "email": "p0@example.com", "poll_1_answer": "yes"},
            {"entry_id": "", "email": "p1@example.com", "poll_1_answer": "no"},    # dedupe field missing
            {"entry_id": "1_x", "email": "p2@example.com", "poll_1_answer": "maybe, later"},
        ], dedupe_fields=("entry_id", "email"))
        assert [o.status for o in objects.outcomes] == ["updated", "failed", "updated"]
        assert objects.outcomes[1].reason == "missing.dedupe.fields"
        assert len(env.inst.co_records[kp.POLLS_CO]) == 2

        await client.sync_program_member_status(kp.PROGRAM_ID, "Attended", lead_ids[:1])
        members = await bulk.import_program_members(kp.PROGRAM_ID, "Registered", [
            {"email": "p0@example.com"},  # already Attended: imported with a warning (1037 text)
            {"email": "p1@example.com"},
            {"email": "p2@example.com", "leadScore": "x"},  # invalid type → failed
        ])
        assert [o.status for o in members.outcomes] == ["updated", "updated", "failed"]
        assert members.outcomes[0].warning and "past this status" in members.outcomes[0].warning
        assert env.inst.members[(kp.PROGRAM_ID, lead_ids[1])].status_name == "Registered"


async def test_unknown_status_fails_every_row_of_the_import() -> None:
    async with sandbox_env("kaltura") as env:
        client = env.client()
        result = await BulkImporter(client).import_program_members(kp.PROGRAM_ID, "Nope", [{"email": "a@x.io"}])
        assert [(o.status, o.reason_code) for o in result.outcomes] == [("failed", "1025")]
