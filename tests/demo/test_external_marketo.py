"""Issue #17: the demo against an existing Marketo instance — a marketo-sandbox started with
``--preset empty`` and shaped the way an admin might — reconciled by reading back over REST within a
capped budget; and `kmsync marketo check` on that instance."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from kmsync_cli.demo import RUN_SECRET_ENV
from kmsync_cli.reconcile_rest import ExternalMarketo, reconcile_by_rest
from kmsync_cli.stack import http_json
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import ActivityRecord, MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.readback import ReadBudgetExceeded
from marketo_sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_MUNCHKIN_ID
from marketo_sandbox.shape import PARTIAL_PROGRAM_ID, kaltura_partial_shape
from marketo_sandbox.testing import running_sandbox

BIN = Path(sys.executable).parent
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _truth(people: list[str], entries: list[str]) -> dict[str, Any]:
    return {
        "origin": "2026-03-02T10:00:00Z",
        "attendees": [{"email": e, "email_defect": False, "deleted": False, "final_status": "attended",
                       "transitions": [{"status": "registered"}, {"status": "attended"}]} for e in people],
        "engagement": [{"entry_id": x, "email": e} for e in people for x in entries],
        "poll_answers": [{"entry_id": entries[0], "email": e} for e in people],
    }


def _target(base_url: str) -> ExternalMarketo:
    return ExternalMarketo(base_url, DEFAULT_MUNCHKIN_ID, DEFAULT_CLIENT_ID, SecretStr(DEFAULT_CLIENT_SECRET),
                           PARTIAL_PROGRAM_ID)


async def test_rest_read_back_finds_what_was_written_under_the_instances_own_names() -> None:
    people, entries = ["a@x.com", "b@x.com", "c@x.com"], ["1_a", "1_b"]
    truth = _truth(people, entries)
    async with running_sandbox(preset="empty") as sb:
        sb.shape(kaltura_partial_shape())
        settings = _target(sb.base_url).settings(share=1.0)
        async with MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry()) as mc:
            leads = await mc.sync_leads([{"email": e} for e in people])
            ids = leads.lead_ids
            for status in ("Registered", "Attended"):
                await mc.sync_program_member_status(PARTIAL_PROGRAM_ID, status, list(ids.values()))
            await mc.sync_custom_objects("kalturaUserSessionEngagement_c", [
                {"entry_id": x, "personId": ids[e]} for e in people for x in entries])
            await mc.sync_custom_objects("kalturaUserPolls_c", [{"entry_id": "1_a", "email": e} for e in people])
            type_id = sb.instance().activity_types["userSessionEngagement"].id
            await mc.add_custom_activities([
                ActivityRecord(lead_id=ids[e], activity_type_id=type_id, activity_date=T0,
                               primary_attribute_value=x) for e in people for x in entries])
        result, calls = await reconcile_by_rest(_target(sb.base_url), truth)
        assert result.clean, result.report()
        assert calls <= 15, calls  # leads, members, discovery, 2 objects, a paging token and a page
        assert "RECONCILED" in result.report()
        # A record the instance lost is missing; an activity written twice is a duplicate.
        [eng] = [r for r in sb.dump()["customObjects"]["kalturaUserSessionEngagement_c"]
                 if r["entry_id"] == "1_b" and r["personId"] == ids["c@x.com"]]
        del sb.instance().co_records["kalturaUserSessionEngagement_c"][eng["marketoGUID"]]
        async with MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry()) as mc:
            await mc.add_custom_activities([ActivityRecord(lead_id=ids["a@x.com"], activity_type_id=type_id,
                                                           activity_date=T0, primary_attribute_value="1_a")])
        result, _ = await reconcile_by_rest(_target(sb.base_url), truth)
        tallies = {t.kind: t for t in result.tallies}
        assert tallies["kalturaUserSessionEngagement objects"].missing == ["('1_b', 'c@x.com')"]
        assert tallies["userSessionEngagement activities"].duplicates == ["('1_a', 'a@x.com')"]
        with pytest.raises(ReadBudgetExceeded, match="3 of its budget of 3 are left"):
            await reconcile_by_rest(_target(sb.base_url), truth, max_calls=3)


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kmsync"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def test_run_refuses_an_incomplete_existing_instance_without_starting_anything(tmp_path: Path) -> None:
    env = {RUN_SECRET_ENV: ""}
    done = _run(["run", "--work-dir", str(tmp_path / "w"), "--marketo-endpoint", "https://123-ABC-456.mktorest.com"],
                env, 60)
    assert done.returncode == 2 and "--marketo-munchkin-id, --marketo-client-id, --marketo-program-id" in done.stderr
    full = ["run", "--work-dir", str(tmp_path / "w"), "--marketo-endpoint", "http://example.com",
            "--marketo-munchkin-id", "123-ABC-456", "--marketo-client-id", "c", "--marketo-program-id", "7"]
    done = _run(full, env, 60)
    assert done.returncode == 2 and RUN_SECRET_ENV in done.stderr
    done = _run(full, {RUN_SECRET_ENV: "s3cret"}, 60)
    assert done.returncode == 2 and "https://" in done.stderr and "s3cret" not in done.stderr + done.stdout
    assert not (tmp_path / "w").exists()


def test_the_demo_plays_into_an_admin_shaped_empty_sandbox_and_reconciles_over_rest(tmp_path: Path) -> None:
    """The issue's "Done when": check exits 0 listing the omitted fields; the run reconciles with
    0 missing and 0 dead letters caused by the schema."""
    sandbox = subprocess.Popen([str(BIN / "marketo-sandbox"), "--port", "0", "--preset", "empty",
                                "--shape", "kaltura-partial"], stdout=subprocess.PIPE, text=True)
    try:
        assert sandbox.stdout is not None
        url = ""
        while not url:
            line = sandbox.stdout.readline()
            assert line, "the sandbox exited"
            if m := re.search(r"listening on (http://\S+)", line):
                url = m.group(1)
        env = {RUN_SECRET_ENV: DEFAULT_CLIENT_SECRET, "KMSYNC_TEST_MARKETO_SECRET": DEFAULT_CLIENT_SECRET}
        tenants = tmp_path / "tenants.yaml"
        tenants.write_text(
            f"marketo_instances:\n  customer:\n    munchkin_id: {DEFAULT_MUNCHKIN_ID}\n    endpoint: {url}\n"
            f"    client_id: {DEFAULT_CLIENT_ID}\n    client_secret: {{env: KMSYNC_TEST_MARKETO_SECRET}}\n"
            f"events:\n  - name: e\n    partner_id: 1\n    virtual_event_id: 2\n    marketo_instance: customer\n"
            f"    program_id: {PARTIAL_PROGRAM_ID}\n")
        check = _run(["marketo", "check", "--tenants", str(tenants)], env, 120)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "found as 'kalturaUserSessionEngagement_c' (api name with _c)" in check.stdout
        assert "kmsync omits 20 field(s) the instance does not have" in check.stdout
        assert "kmsync omits 21 field(s) the instance does not have: poll_4_type" in check.stdout

        run = _run(["run", "--work-dir", str(tmp_path / "run"), "--registrants", "40", "--sessions", "2",
                    "--speed", "6000", "--seed", "5", "--timeout", "300",
                    "--registration-lead-hours", "12",  # not 72: ~36 s less of a quiet registration period
                    "--marketo-endpoint", url, "--marketo-munchkin-id", DEFAULT_MUNCHKIN_ID,
                    "--marketo-client-id", DEFAULT_CLIENT_ID, "--marketo-program-id", str(PARTIAL_PROGRAM_ID)],
                   env, 480)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-6000:]
        assert "read back over Marketo's REST API in" in out
        assert "RECONCILED: 0 missing, 0 duplicates" in out
        assert "dead letters caused by the Marketo schema: 0" in out
        assert DEFAULT_CLIENT_SECRET not in out
        dump = http_json(f"{url}/_sandbox/dump")
        engagement = dump["customObjects"]["kalturaUserSessionEngagement_c"]
        assert engagement and all(len(r.get("entry_name") or "") <= 40 for r in engagement)
        assert all("raise_hand" not in r for r in engagement)
        assert dump["activities"] and dump["customObjects"]["kalturaUserPolls_c"]
        assert "kalturaUserSessionEngagement" not in dump["customObjects"]
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
