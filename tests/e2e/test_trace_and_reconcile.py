"""`kmsync trace` and `kmsync reconcile [--fix]` against the small demo stack (issue #19): Kafka, both sandboxes,
ingest, transform and sink as processes; the commands run as an operator runs them, from the
environment the stack writes (`<work>/kmsync.env`), as separate `kmsync` processes."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kmsync_cli.demo import run_until_reconciled
from kmsync_cli.stack import OPERATOR_ENV_FILE, Stack, StackOptions, http_json
from kmsync_config.tenants import load_tenants
from kmsync_contracts.seed import ENGAGEMENT_OBJECT_API_NAME
from kmsync_contracts.topics import TRANSFORM_DECISIONS
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.from_config import settings_from_instance
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_testing.topics import read_topic
from kmsync_testing.waiting import wait_for

KMSYNC = str(Path(sys.executable).parent / "kmsync")
pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(StackOptions(work_dir=tmp_path / "run", registrants=40, sessions=1, speed=6000, seed=19,
                           registration_lead_hours=6))
    try:
        s.start()
        yield s
    finally:
        s.stop()


def kmsync(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`kmsync <args>` with the environment an operator sources from the stack's kmsync.env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMSYNC_")}
    return subprocess.run([KMSYNC, *args], env={**env, **stack.operator_env()}, capture_output=True, text=True,
                          timeout=300, check=False)


def in_operator_shell(env_file: Path, command: str) -> subprocess.CompletedProcess[str]:
    """`kmsync <command>` as an operator runs it: a shell with none of the stack's settings sources kmsync.env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMSYNC_")}
    return subprocess.run(["bash", "-c", f'. "{env_file}" && "{KMSYNC}" {command}'], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def a_registrant_with_a_session(dump: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """(email, lead id, engagement object) of a lead that is a program member with an engagement object."""
    members = {m["leadId"] for m in dump["programMembers"]}
    by_id = {lead["id"]: lead["email"] for lead in dump["leads"]}
    for obj in dump["customObjects"][ENGAGEMENT_OBJECT_API_NAME]:
        lead_id = int(obj["personId"])
        if lead_id in members:
            return by_id[lead_id], lead_id, obj
    raise AssertionError("no program member has an engagement object")


async def delete_object(stack: Stack, guid: str) -> None:
    """What a Marketo admin does to a record: Delete Custom Objects by marketoGUID (marketo-api.md §8.2)."""
    tenants = load_tenants(stack.options.work_dir / "tenants.yaml")
    settings = settings_from_instance(tenants.marketo_instances["demo"])
    async with MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry()) as client:
        body = await client.transport.call("POST", f"/rest/v1/customobjects/{ENGAGEMENT_OBJECT_API_NAME}/delete.json",
                                           json={"deleteBy": "idField", "input": [{"marketoGUID": guid}]})
    assert body["result"][0]["status"] == "deleted", body


async def test_trace_tells_one_registrant_story_and_reconcile_finds_and_fixes_a_deleted_object(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    result = await asyncio.to_thread(run_until_reconciled, stack, timeout=420, say=lines.append)
    assert result is not None and result.clean, "\n".join(lines[-5:]) + (result.report() if result else "")
    env_file = stack.options.work_dir / OPERATOR_ENV_FILE
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and "KMSYNC_KAFKA_BOOTSTRAP" in env_file.read_text()

    dump = http_json(f"{stack.marketo_url}/_sandbox/dump")
    email, lead_id, obj = a_registrant_with_a_session(dump)
    traced = kmsync(stack, "trace", "--event", "demo-event", "--email", email.upper(), "--json")
    assert traced.returncode == 0, traced.stderr
    assert "reading marketo.results.v1" in traced.stderr, "progress on stderr"
    story = json.loads(traced.stdout)
    assert story["person"]["lead_ids"] == [lead_id], "the lead id matches the sandbox's"
    assert story["kaltura"] and {s["topic"] for s in story["kaltura"]} >= {"kaltura.attendee-status.v1",
                                                                          "kaltura.session-engagement.v1"}
    truth = http_json(f"{stack.kaltura_url}/_sandbox/truth")
    person = next(p for p in truth["attendees"] if (p.get("email") or "").lower() == email)
    assert person["final_status"] in {s["status"] for s in story["kaltura"] if "status" in s}
    kinds = {s["kind"] for s in story["marketo"]}
    assert {"lead_upsert", "program_member_status", "custom_object_upsert"} <= kinds, kinds
    assert all(s["lead_id"] == lead_id for s in story["marketo"]), story["marketo"]
    without = [(s["kind"], s["status"], s["marketo_code"]) for s in story["marketo"] if not s["request_id"]]
    assert not without, without
    assert any(s["endpoint"] == "POST /rest/v1/leads.json" and s["request_id"] for s in story["marketo"])
    assert story["marketo_now"]["lead_id"] == lead_id and story["marketo_now"]["member"] is True
    # Someone whose email Marketo cannot take: the story says what Kaltura said and why transform stopped.
    bad = next(p["email"] for p in truth["attendees"] if p.get("email_defect") == "bad_email")
    unusable = json.loads(kmsync(stack, "trace", "--event", "demo-event", "--email", bad, "--json").stdout)
    assert unusable["kaltura"] and unusable["marketo"] == [], unusable
    assert {s["decision"] for s in unusable["transform"]} == {"unusable_email"}, unusable["transform"]
    assert all(s["reason_code"] == "kmsync.unusable_email" and s["reason"] for s in unusable["transform"])
    decisions = await read_topic(stack.operator_env()["KMSYNC_KAFKA_BOOTSTRAP"], TRANSFORM_DECISIONS, "")
    decided = {d.person_key for _, d in decisions if d.decision == "unusable_email"}
    assert set(unusable["person"]["person_keys"]) <= decided
    by_lead = in_operator_shell(env_file, f"trace --event demo-event --lead-id {lead_id} --no-marketo")
    assert by_lead.returncode == 0, by_lead.stderr
    assert email not in by_lead.stdout.lower(), "nothing raw that was not typed"
    assert "what Kaltura said" in by_lead.stdout and "lead_upsert" in by_lead.stdout

    clean = kmsync(stack, "reconcile", "--event", "demo-event", "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    table = json.loads(clean.stdout)
    assert table["clean"] and all(k["missing"] == 0 and k["wrong"] == 0 for k in table["kinds"]), table
    for name, value in stack.operator_env().items():  # the tenants file's secret references
        monkeypatch.setenv(name, value)
    await delete_object(stack, obj["marketoGUID"])
    after = kmsync(stack, "reconcile", "--event", "demo-event", "--json")
    assert after.returncode == 1, after.stdout + after.stderr
    kinds_after = {k["kind"]: k for k in json.loads(after.stdout)["kinds"]}
    engagement = kinds_after[f"{ENGAGEMENT_OBJECT_API_NAME} objects"]
    assert engagement["missing"] == 1 and engagement["missing_keys"] == [str((obj["entry_id"], email))]
    assert sum(k["missing"] for k in kinds_after.values()) == 1

    fixed = kmsync(stack, "reconcile", "--event", "demo-event", "--fix")
    # Only the missing object (one per engagement report of the session) and the person's lead upsert.
    assert fixed.returncode == 1 and "custom_object_upsert" in fixed.stderr, fixed.stderr
    assert "program_member_status" not in fixed.stderr and "custom_activity" not in fixed.stderr, fixed.stderr

    async def reconciled() -> bool:
        again = await asyncio.to_thread(kmsync, stack, "reconcile", "--event", "demo-event", "--json")
        return again.returncode == 0

    await wait_for(reconciled, 120, "the re-driven custom object written by the running sink")
    objects = http_json(f"{stack.marketo_url}/_sandbox/dump")["customObjects"][ENGAGEMENT_OBJECT_API_NAME]
    assert sum(1 for o in objects if (o["entry_id"], int(o["personId"])) == (obj["entry_id"], lead_id)) == 1
