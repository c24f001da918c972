"""`kmsync marketo check` validates the lead fields the events map registration data to (issue #16 §3)
against the sandbox's Describe Lead: present, writable, text; a missing one is named with the fix."""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from kmsync_marketo.cli import main, run_check
from kmsync_marketo.settings import MarketoSettings
from marketo_sandbox import preset_kaltura as kp
from marketo_sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, CustomLeadField, InstanceConfig
from marketo_sandbox.testing import running_sandbox


def _settings(base_url: str) -> MarketoSettings:
    return MarketoSettings(endpoint=base_url, client_id=DEFAULT_CLIENT_ID,
                           client_secret=SecretStr(DEFAULT_CLIENT_SECRET), allow_insecure_http=True)


def _line(text: str, fragment: str) -> str:
    lines = [ln for ln in text.splitlines() if fragment in ln]
    assert lines, f"no line with {fragment!r} in:\n{text}"
    return lines[0].strip()


async def test_present_missing_read_only_wrong_type_and_display_name_are_told_apart() -> None:
    instance = InstanceConfig(preset="kaltura", lead_fields=[
        CustomLeadField(name="jobFunction", display_name="Job Function"),
        CustomLeadField(name="companySize", data_type="integer")])
    wanted = {"title": ["kaltura:title"], "company": ["kaltura:company"], "jobFunction": ["form:jobFunction"],
              "Job_Function": ["form:jobFunction"], "companySize": ["form:companySize"],
              "updatedAt": ["form:when"], "howDidYouHear__c": ["form:howDidYouHear"]}
    async with running_sandbox(instances=[instance]) as sb:
        code, text = await run_check(_settings(sb.base_url), label="k", program_ids=[kp.PROGRAM_ID],
                                     lead_fields=wanted)
    assert code == 1
    assert _line(text, "lead field title <- kaltura:title").startswith("[ok]")
    assert "string, at most 255 characters" in text
    assert _line(text, "lead field jobFunction <-").startswith("[ok]")
    assert _line(text, "lead field howDidYouHear__c <-").startswith("[MISSING]")
    assert "the instance has no lead field with API name 'howDidYouHear__c'" in text
    assert ("in Marketo Admin > Field Management > New Custom Field, create a String field whose API name is "
            "'howDidYouHear__c'") in text
    assert "a field displayed that way has API name 'jobFunction': map that name instead" in text
    assert "lead field 'companySize' is of type integer; registration answers are text" in text
    assert "lead field 'updatedAt' is read-only for the API" in text
    assert _line(text, "registration form keys (profileData)").startswith("[??]")
    assert "mapped by key: companySize, howDidYouHear, jobFunction, when" in text
    assert "4 item(s) missing" in text


async def test_the_command_reads_the_mapping_from_the_tenants_file(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    instance = InstanceConfig(preset="kaltura", lead_fields=[CustomLeadField(name="region__c", length=40)])
    async with running_sandbox(instances=[instance]) as sb:
        monkeypatch.setenv("KMSYNC_TEST_MARKETO_SECRET", DEFAULT_CLIENT_SECRET)
        tenants = {"marketo_instances": {"m": {"munchkin_id": sb.munchkin_id, "endpoint": sb.base_url,
                                               "client_id": DEFAULT_CLIENT_ID,
                                               "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}}},
                   "events": [{"name": "e", "partner_id": 1, "virtual_event_id": 2, "marketo_instance": "m",
                               "program_id": kp.PROGRAM_ID,
                               "lead_fields": {"region__c": "form:region", "country": None,
                                               "jobFunction__c": "form:jobFunction"}}]}
        path = tmp_path / "tenants.yaml"
        path.write_text(yaml.safe_dump(tenants))
        out = io.StringIO()

        def run() -> int:
            with contextlib.redirect_stdout(out):
                return main(["check", "--tenants", str(path)])

        code = await asyncio.to_thread(run)  # main() runs its own event loop
    text = out.getvalue()
    assert code == 1, text
    for name in ("firstName", "lastName", "title", "company"):
        assert _line(text, f"lead field {name} <- kaltura:").startswith("[ok]")
    assert "lead field country" not in text
    assert _line(text, "lead field region__c <- form:region").startswith("[ok]")
    assert "string, at most 40 characters" in text
    assert _line(text, "lead field jobFunction__c <- form:jobFunction").startswith("[MISSING]")
