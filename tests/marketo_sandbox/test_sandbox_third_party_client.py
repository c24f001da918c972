"""marketorestpython (a widely used synchronous client) works against the sandbox with only its
base URL changed; and the console script starts and serves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from marketorestpython.client import MarketoClient

from marketo_sandbox.testing import SandboxHandle, threaded_sandbox


@pytest.fixture(scope="module")
def threaded() -> Iterator[SandboxHandle]:
    with threaded_sandbox(preset="kaltura", seed=3) as sb:
        yield sb


def _client(sb: SandboxHandle) -> MarketoClient:
    mc = MarketoClient(sb.munchkin_id, sb.client_id, sb.client_secret)
    mc.host = sb.base_url  # the only change: http://127.0.0.1:PORT instead of https://<id>.mktorest.com
    return mc


def test_marketorestpython_end_to_end(threaded: SandboxHandle) -> None:
    mc = _client(threaded)
    created = mc.execute(method="create_update_leads", leads=[
        {"email": "mrp1@example.com", "firstName": "One"}, {"email": "mrp2@example.com", "firstName": "Two"}],
        action="createOrUpdate", lookupField="email")
    assert [r["status"] for r in created] == ["created", "created"]
    lead_id = created[0]["id"]
    found = mc.execute(method="get_multiple_leads_by_filter_type", filterType="email",
                       filterValues=["MRP1@example.com", "mrp2@example.com"], fields=["email", "firstName"])
    assert [(x["email"], x["firstName"]) for x in found] == [("mrp1@example.com", "One"), ("mrp2@example.com", "Two")]
    assert mc.execute(method="get_lead_by_id", id=lead_id, fields=["firstName"])[0]["firstName"] == "One"
    ch = mc.execute(method="get_channel_by_name", name="Kaltura Virtual Event")
    assert len(ch[0]["progressionStatuses"]) == 9
    assert mc.execute(method="get_program_by_id", id=1001)[0]["channel"] == "Kaltura Virtual Event"
    added = mc.execute(method="add_custom_activities", input=[{
        "leadId": lead_id, "activityDate": "2026-03-04T10:00:00Z", "activityTypeId": 100001,
        "primaryAttributeValue": "1_entry", "attributes": [{"apiName": "plays", "value": 2}]}])
    assert added[0]["status"] == "added"
    acts = mc.execute(method="get_lead_activities", activityTypeIds=["100001"],
                      sinceDatetime="2026-01-01T00:00:00Z")
    assert [a["primaryAttributeValue"] for a in acts] == ["1_entry"]
    co = mc.execute(method="create_update_custom_objects", name="kalturaUserSessionEngagement",
                    input=[{"entry_id": "1_entry", "personId": lead_id, "plays": 2}])
    assert co[0]["status"] == "created"
    got = mc.execute(method="get_custom_objects", name="kalturaUserSessionEngagement",
                     input=[{"entry_id": "1_entry", "personId": lead_id}], filterType="dedupeFields",
                     fields=["plays"])
    assert got[0]["plays"] == 2
    described = mc.execute(method="describe_custom_object", name="kalturaUserPolls_c")
    assert described[0]["dedupeFields"] == ["entry_id", "email"]
    members = mc.execute(method="get_multiple_leads_by_program_id", programId=1001)
    assert members == []
    # membership is created through the current endpoint, then moved by the deprecated one MRP uses
    with httpx.Client(base_url=threaded.base_url) as http:
        http.post("/rest/v1/programs/1001/members/status.json", headers={"Authorization": f"Bearer {mc.token}"},
                  json={"statusName": "Registered", "input": [{"leadId": lead_id}]})
    changed = mc.execute(method="change_lead_program_status", id=1001, leadIds=[lead_id], status="Attended")
    assert changed == [{"id": lead_id, "status": "updated"}]
    members = mc.execute(method="get_multiple_leads_by_program_id", programId=1001)
    assert members[0]["membership"]["progressionStatus"] == "Attended"
    usage = mc.execute(method="get_daily_usage")
    assert usage[0]["total"] >= 9
    dump = threaded.dump()
    assert {ld["email"] for ld in dump["leads"]} == {"mrp1@example.com", "mrp2@example.com"}


def test_marketorestpython_sees_marketo_errors(threaded: SandboxHandle) -> None:
    mc = _client(threaded)
    with pytest.raises(Exception) as exc:
        mc.execute(method="create_update_leads", leads=[{"email": "x@example.com"}], lookupField="firstName")
    assert "1011" in str(exc.value)
    bad = MarketoClient(threaded.munchkin_id, threaded.client_id, "wrong-secret")
    bad.host = threaded.base_url
    with pytest.raises(Exception, match="Bad client credentials"):
        bad.execute(method="get_lead_by_id", id=1)


def test_console_script_serves_preset(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("marketo-sandbox")
    faults = tmp_path / "f.yaml"
    faults.write_text("rules:\n  - endpoint: 'GET /rest/v1/leads/describe2.json'\n    error: '608'\n")
    proc = subprocess.Popen([str(exe), "--host", "127.0.0.1", "--port", "0", "--preset", "kaltura",
                             "--seed", "4", "--faults", str(faults)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        url = None
        for _ in range(10):
            line = proc.stdout.readline()
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "server did not report its address"
        with httpx.Client(base_url=url, timeout=10) as http:
            tok = http.get("/identity/oauth/token", params={
                "grant_type": "client_credentials", "client_id": "sandbox-client-id",
                "client_secret": "sandbox-client-secret"}).json()["access_token"]
            h = {"Authorization": f"Bearer {tok}"}
            ch = http.get("/rest/asset/v1/channels.json", headers=h).json()
            assert ch["result"][0]["name"] == "Kaltura Virtual Event"
            assert http.get("/rest/v1/leads/describe2.json", headers=h).json()["errors"][0]["code"] == "608"
            assert http.get("/123-ABC-456/rest/v1/leads/describe.json", headers=h).json()["success"] is True
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_console_script_rejects_bad_config(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("marketo-sandbox")
    bad = tmp_path / "i.yaml"
    bad.write_text("- munchkin_id: not-a-munchkin\n")
    done = subprocess.run([str(exe), "--port", "0", "--instances", str(bad)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert "munchkin_id" in done.stderr
