"""Issue #17: the sandbox as a real instance is set up by its admin: the API user's permission set
(603), custom objects made in the UI (``_c`` API names, chosen fields, lengths) and field lengths
enforced (docs/reference/marketo-api.md §3.2, §5.3, §8.1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from kmsync_testing.processes import die_with_parent, stop_process
from marketo_sandbox.clock import ManualClock
from marketo_sandbox.config import BehaviourConfig, InstanceConfig
from marketo_sandbox.shape import PARTIAL_PROGRAM_ID, kaltura_partial_shape
from marketo_sandbox.testing import SandboxHandle, running_sandbox

from .conftest import START, Api


async def _api(sb: SandboxHandle, http: httpx.AsyncClient) -> Api:
    api = Api(sb, http)
    await api.login()
    return api


async def test_a_role_without_a_permission_gets_603_and_nothing_is_written() -> None:
    async with running_sandbox(preset="kaltura", clock=ManualClock(START)) as sb, \
            httpx.AsyncClient(base_url=sb.base_url, timeout=10) as http:
        api = await _api(sb, http)
        sb.set_permissions(["Read-Write Person", "Read-Only Custom Object"])
        await api.post("/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}]})
        # Read-only: describe works, a sync is refused before anything is stored.
        described = await api.get("/rest/v1/customobjects/kalturaUserPolls_c/describe.json")
        assert described["success"] is True
        body = await api.post("/rest/v1/customobjects/kalturaUserPolls_c.json",
                              json={"input": [{"entry_id": "1_a", "email": "a@x.com"}]})
        assert api.error_of(body) == ("603", "Access denied")
        assert sb.dump()["customObjects"]["kalturaUserPolls_c"] == []
        # No Activity permission at all: reads are refused too.
        assert api.error_of(await api.get("/rest/v1/activities/types.json"))[0] == "603"
        # The admin API changes the role over HTTP; an unknown permission is a 400 naming it.
        r = await http.put("/_sandbox/permissions", params={"client_id": sb.client_id},
                           json={"permissions": ["Read-Write Everything"]})
        assert r.status_code == 400 and "Read-Write Everything" in r.text
        r = await http.put("/_sandbox/permissions", params={"client_id": sb.client_id}, json={"permissions": None})
        assert r.status_code == 200
        body = await api.post("/rest/v1/customobjects/kalturaUserPolls_c.json",
                              json={"input": [{"entry_id": "1_a", "email": "a@x.com"}]})
        assert body["result"][0]["status"] == "created"
        assert sb.call_count("POST /rest/v1/customobjects/{apiName}.json", "603") == 1


async def test_objects_made_in_the_ui_get_c_names_and_only_the_chosen_fields() -> None:
    async with running_sandbox(preset="empty", clock=ManualClock(START)) as sb, \
            httpx.AsyncClient(base_url=sb.base_url, timeout=10) as http:
        r = await http.post("/_sandbox/shape", json=kaltura_partial_shape().model_dump(by_alias=True))
        assert r.status_code == 200, r.text
        made = r.json()
        assert made == {"programIds": [PARTIAL_PROGRAM_ID],
                        "customObjects": ["kalturaUserSessionEngagement_c", "kalturaUserPolls_c"],
                        "activityTypes": ["userSessionEngagement"]}
        api = await _api(sb, http)
        listed = {o["name"]: o for o in (await api.get("/rest/v1/customobjects.json"))["result"]}
        assert set(listed) == {"kalturaUserSessionEngagement_c", "kalturaUserPolls_c"}
        eng = (await api.get("/rest/v1/customobjects/kalturaUserSessionEngagement_c/describe.json"))["result"][0]
        assert eng["dedupeFields"] == ["entry_id", "personId"]
        fields = {f["name"]: f for f in eng["fields"]}
        assert len(fields) == 3 + 10 and "raise_hand" not in fields
        assert fields["entry_name"]["length"] == 40
        # The seed's name is not the object's name any more (UI suffix): 1013 as on Marketo.
        body = await api.post("/rest/v1/customobjects/kalturaUserSessionEngagement.json",
                              json={"input": [{"entry_id": "1_a"}]})
        assert api.error_of(body)[0] == "1013"
        act = (await api.get("/rest/v1/activities/external/type/userSessionEngagement/describe.json"))["result"][0]
        assert act["status"] == "approved" and act["primaryAttribute"]["apiName"] == "entry_id"
        assert len(act["attributes"]) == 9
        # Shaping the same object twice is refused like the UI would.
        again = await http.post("/_sandbox/shape", json={"customObjects": [
            {"apiName": "kalturaUserPolls", "displayName": "x", "fields": [{"name": "a", "dedupe": True}]}]})
        assert again.status_code == 400 and "already exists" in again.text


async def test_field_lengths_are_enforced_and_truncation_is_a_switch() -> None:
    async with running_sandbox(preset="empty", clock=ManualClock(START)) as sb, \
            httpx.AsyncClient(base_url=sb.base_url, timeout=10) as http:
        sb.shape(kaltura_partial_shape())
        api = await _api(sb, http)
        lead = (await api.post("/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}]}))["result"][0]["id"]
        url = "/rest/v1/customobjects/kalturaUserSessionEngagement_c.json"
        body = await api.post(url, json={"input": [
            {"entry_id": "1_a", "personId": lead, "entry_name": "x" * 41},
            {"entry_id": "1_b", "personId": lead, "entry_name": "x" * 40},
            {"entry_id": "1_c", "personId": lead, "user": "u" * 256},  # the default string length, 255
        ]})
        results = body["result"]
        assert results[0]["status"] == "skipped" and results[0]["reasons"][0]["code"] == "1001"
        assert "longer than 40 characters" in results[0]["reasons"][0]["message"]
        assert results[1]["status"] == "created"
        assert results[2]["status"] == "skipped" and "longer than 255" in results[2]["reasons"][0]["message"]
        # Text fields hold 30,000 bytes (polls answers are text).
        polls = await api.post("/rest/v1/customobjects/kalturaUserPolls_c.json", json={"input": [
            {"entry_id": "1_a", "email": "a@x.com", "poll_1_answer": "é" * 15_001}]})
        assert polls["result"][0]["status"] == "skipped"

    truncating = InstanceConfig(behaviour=BehaviourConfig(over_length="truncate"))
    async with running_sandbox(preset="empty", clock=ManualClock(START), instances=[truncating]) as sb, \
            httpx.AsyncClient(base_url=sb.base_url, timeout=10) as http:
        sb.shape(kaltura_partial_shape())
        api = await _api(sb, http)
        lead = (await api.post("/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}]}))["result"][0]["id"]
        body = await api.post("/rest/v1/customobjects/kalturaUserSessionEngagement_c.json",
                              json={"input": [{"entry_id": "1_a", "personId": lead, "entry_name": "y" * 60}]})
        assert body["result"][0]["status"] == "created"
        stored = sb.dump()["customObjects"]["kalturaUserSessionEngagement_c"][0]
        assert stored["entry_name"] == "y" * 40


def test_the_command_line_shapes_an_empty_instance(tmp_path: Path) -> None:
    """`marketo-sandbox --preset empty --shape kaltura-partial` prints what it made; a bad shape file
    is exit 2 with the field named."""
    bad = tmp_path / "shape.yaml"
    bad.write_text("customObjects: [{apiName: '1bad', displayName: x, fields: [{name: a}]}]\n")
    exe = str(Path(sys.executable).parent / "marketo-sandbox")
    done = subprocess.run([exe, "--port", "0", "--shape", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "apiName" in done.stderr
    proc = subprocess.Popen([exe, "--port", "0", "--preset", "empty", "--shape", "kaltura-partial"],
                            stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "kalturaUserSessionEngagement_c" in first and "kalturaUserPolls_c" in first, first
    finally:
        stop_process(proc, timeout=30)
