"""`kmsync marketo check` against the sandbox, with and without the kaltura preset, and --apply."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
from pathlib import Path

import pytest
from pydantic import SecretStr

from kmsync_contracts.seed import CHANNEL_STATUSES
from kmsync_marketo.cli import main, parse_names, run_check
from kmsync_marketo.settings import MarketoSettings, RetrySettings
from marketo_sandbox import preset_kaltura as kp
from marketo_sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from marketo_sandbox.shape import PARTIAL_PROGRAM_ID, kaltura_partial_shape
from marketo_sandbox.testing import running_sandbox


def _settings(base_url: str, secret: str = DEFAULT_CLIENT_SECRET) -> MarketoSettings:
    return MarketoSettings(endpoint=base_url, client_id=DEFAULT_CLIENT_ID, client_secret=SecretStr(secret),
                           allow_insecure_http=True)


def _line(text: str, fragment: str) -> str:
    lines = [ln for ln in text.splitlines() if fragment in ln]
    assert lines, f"no line with {fragment!r} in:\n{text}"
    return lines[0]


async def test_empty_instance_lists_everything_missing_with_fixes() -> None:
    async with running_sandbox(preset="empty") as sb:
        code, text = await run_check(_settings(sb.base_url), label="empty", program_ids=[1001])
    assert code == 1
    assert _line(text, "API credentials").lstrip().startswith("[ok]")
    for area in ("Person", "Activity", "Activity Metadata", "Assets", "Custom Object"):
        assert _line(text, f"> Read-Write {area}").lstrip().startswith("[ok]")
    # The sandbox has no campaigns endpoint: reported as not verifiable (610), not as missing.
    assert _line(text, "> Read-Write Campaigns").lstrip().startswith("[??]")
    assert "[MISSING]" in _line(text, "event channel")
    assert "Admin > Tags > Channels" in text and "Un-registered (step 80)" in text
    assert "[MISSING]" in _line(text, "event program 1001")
    assert "--apply does not create programs" in text
    assert "[MISSING]" in _line(text, "custom activity type 'userSessionEngagement'")
    assert "[MISSING]" in _line(text, "custom object 'kalturaUserSessionEngagement'")
    assert "[MISSING]" in _line(text, "custom object 'kalturaUserPolls_c'")
    assert "[MISSING]" in _line(text, "program member field for granular statuses (kalturaGranularStatus)")
    assert "Admin > Field Management > New Custom Field; Object: Program Member" in text
    assert "6 item(s) missing; 4 can be created with --apply, 2 must be done in the Marketo UI." in text


async def test_kaltura_preset_passes() -> None:
    async with running_sandbox(preset="kaltura") as sb:
        code, text = await run_check(_settings(sb.base_url), label="kaltura", program_ids=[kp.PROGRAM_ID])
    assert code == 0, text
    assert "[MISSING]" not in text
    assert f"channel {kp.CHANNEL_NAME!r}" in text
    assert "found as 'userSessionEngagement' (id 100001, api name), approved, entry_id primary" in text
    assert "kmsync writes 20 field(s)" in text and "kmsync writes 30 field(s)" in text
    assert "kmsync writes 33 field(s)" in text and "kmsync omits" not in text.replace("kmsync omits no field", "")
    assert "dedupe entry_id + personId, link personId -> Lead.id" in text
    assert "found as 'kalturaUserPolls_c' (api name); dedupe entry_id + email" in text


async def test_wrong_channel_step_and_missing_field_are_named() -> None:
    async with running_sandbox(preset="kaltura") as sb:
        channel = sb.instance().channels[kp.CHANNEL_NAME]
        channel.statuses = [s for s in channel.statuses if s.name != "Blocked"]
        channel.statuses[0] = dataclasses.replace(channel.statuses[0], step=5)
        version = sb.instance().co_types[kp.POLLS_CO].approved
        assert version is not None
        version.fields = [f for f in version.fields if f.name != "poll_10_question"]
        code, text = await run_check(_settings(sb.base_url), label="kaltura", program_ids=[kp.PROGRAM_ID])
    assert code == 1
    assert "status 'Blocked' (step 70) is missing" in text
    assert "status 'Created' has step 5, the guide says 10" in text
    # A field the admin left out is omitted by kmsync, not missing (the seed: fields "as desired").
    assert "[ok]" in _line(text, "custom object 'kalturaUserPolls_c'")
    assert "kmsync omits 1 field(s) the instance does not have: poll_10_question" in text


async def test_apply_creates_what_the_api_can_and_names_what_it_cannot() -> None:
    async with running_sandbox(preset="empty") as sb:
        code, text = await run_check(_settings(sb.base_url), label="empty", program_ids=[1001], apply=True)
        inst = sb.instance()
        assert inst.activity_types["userSessionEngagement"].status == "approved"
        assert {kp.ENGAGEMENT_CO, kp.POLLS_CO} <= set(inst.co_types)
        assert all(inst.co_types[n].state == "approved" for n in (kp.ENGAGEMENT_CO, kp.POLLS_CO))
    assert code == 1  # the channel and the program still need the Marketo UI
    before, after = text.split("After --apply:")
    assert "[applied]" in _line(before, "custom activity type")
    assert "[ok]" in _line(after, "custom activity type")
    assert "[ok]" in _line(after, "custom object 'kalturaUserPolls_c'")
    assert "[MISSING]" in _line(after, "event channel")
    assert "2 item(s) missing; 0 can be created with --apply, 2 must be done in the Marketo UI." in after


async def test_apply_makes_the_check_pass_when_only_api_items_are_missing() -> None:
    async with running_sandbox(preset="kaltura") as sb:
        inst = sb.instance()
        del inst.activity_types[kp.ACTIVITY_TYPE_API_NAME]
        del inst.co_types[kp.ENGAGEMENT_CO]
        # The polls object exists but lacks a (non-dedupe) field: --apply adds it and approves.
        polls = inst.co_types[kp.POLLS_CO].approved
        assert polls is not None
        polls.fields = [f for f in polls.fields if f.name != "poll_3_type"]
        code, _ = await run_check(_settings(sb.base_url), label="k", program_ids=[kp.PROGRAM_ID])
        assert code == 1
        code, text = await run_check(_settings(sb.base_url), label="k", program_ids=[kp.PROGRAM_ID], apply=True)
        assert code == 0, text
        code, _ = await run_check(_settings(sb.base_url), label="k", program_ids=[kp.PROGRAM_ID])
        assert code == 0
        engagement = inst.co_types[kp.ENGAGEMENT_CO].approved
        assert engagement is not None and engagement.dedupe_fields == ["entry_id", "personId"]


async def test_bad_credentials_stop_the_check_with_a_fix() -> None:
    async with running_sandbox(preset="kaltura") as sb:
        code, text = await run_check(_settings(sb.base_url, secret="nope"), label="k")
    assert code == 1
    assert "[MISSING]" in _line(text, "API credentials") and "LaunchPoint" in text
    assert "nope" not in text


async def test_cli_reads_the_tenants_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_sandbox(preset="kaltura") as sb:
        monkeypatch.setenv("KMSYNC_TEST_MARKETO_SECRET", DEFAULT_CLIENT_SECRET)
        tenants = tmp_path / "tenants.yaml"
        tenants.write_text(
            "marketo_instances:\n"
            "  sandbox:\n"
            f"    munchkin_id: {sb.munchkin_id}\n"
            f"    endpoint: {sb.base_url}\n"
            f"    client_id: {DEFAULT_CLIENT_ID}\n"
            "    client_secret: {env: KMSYNC_TEST_MARKETO_SECRET}\n"
            "    share: 0.5\n"
            "events:\n"
            "  - name: summit\n"
            "    partner_id: 1\n"
            "    virtual_event_id: 2\n"
            "    marketo_instance: sandbox\n"
            f"    program_id: {kp.PROGRAM_ID}\n"
        )
        out = io.StringIO()

        def run() -> int:
            with contextlib.redirect_stdout(out):
                return main(["check", "--tenants", str(tenants)])

        code = await asyncio.to_thread(run)  # main() runs its own event loop
        assert code == 0, out.getvalue()
        assert f"event program {kp.PROGRAM_ID} on the Kaltura channel" in out.getvalue()
        assert main(["check", "--tenants", str(tenants), "--instance", "other"]) == 2


async def test_without_program_ids_the_event_program_is_found_on_the_channel() -> None:
    async with running_sandbox(preset="kaltura") as sb:
        code, text = await run_check(_settings(sb.base_url), label="k")
    assert code == 0, text
    assert f"found {kp.PROGRAM_NAME!r} (id {kp.PROGRAM_ID})" in text


async def test_after_the_ui_steps_apply_makes_an_empty_instance_pass() -> None:
    async with running_sandbox(preset="empty") as sb:
        # What the admin does in the Marketo UI (no API exists for channels): the seed's table.
        sb.add_channel("Kaltura Events", [(s.name, s.step, s.success) for s in CHANNEL_STATUSES])
        program_id = sb.add_program("Summit 2026", "Kaltura Events")
        code, before = await run_check(_settings(sb.base_url), label="e", program_ids=[program_id])
        assert code == 1 and "4 item(s) missing; 4 can be created with --apply" in before
        code, text = await run_check(_settings(sb.base_url), label="e", program_ids=[program_id], apply=True)
        assert code == 0, text
        after = text.split("After --apply:")[1]
        assert "[MISSING]" not in after
        assert "Nothing missing; 1 item(s) could not be verified." in after  # no campaigns endpoint


async def test_unreachable_endpoint_fails_the_check() -> None:
    async with running_sandbox(preset="kaltura") as sb:
        url = sb.base_url
    settings = _settings(url).model_copy(update={"retry": RetrySettings(max_attempts=1)})
    code, text = await run_check(settings, label="gone")  # the server is stopped now
    assert code == 1
    assert "Identity could not be reached" in text and "[--]" in _line(text, "everything else")


def test_cli_reports_an_unresolvable_secret_without_calling_marketo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KMSYNC_TEST_UNSET_SECRET", raising=False)
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        "marketo_instances:\n"
        "  prod:\n"
        "    munchkin_id: 123-ABC-456\n"
        "    endpoint: https://123-ABC-456.mktorest.com\n"
        "    client_id: cid\n"
        "    client_secret: {env: KMSYNC_TEST_UNSET_SECRET}\n"
        "events: []\n"
    )
    assert main(["check", "--tenants", str(tenants)]) == 2
    err = capsys.readouterr().err
    assert "marketo_instances.prod.client_secret" in err and "KMSYNC_TEST_UNSET_SECRET" in err


async def test_an_instance_shaped_by_its_admin_passes_and_lists_what_kmsync_omits() -> None:
    """Issue #17 "Done when": an empty instance shaped as an admin might (channel, Event program,
    kalturaUserSessionEngagement_c with a third of the fields, the activity type with half, polls
    with poll_1..3) passes; the check says what it found, writes and omits, and proves write access
    without leaving data behind."""
    async with running_sandbox(preset="empty") as sb:
        sb.shape(kaltura_partial_shape())
        code, text = await run_check(_settings(sb.base_url), label="admin", program_ids=[PARTIAL_PROGRAM_ID])
        dump = sb.dump()
    assert code == 0, text
    assert "found as 'kalturaUserSessionEngagement_c' (api name with _c)" in text
    assert "kmsync omits 20 field(s) the instance does not have: channel_id, channel_name" in text
    assert "kmsync omits 10 field(s) the instance does not have: channel_id" in text  # the activity type
    assert "kmsync omits 21 field(s) the instance does not have: poll_4_type" in text
    assert "strings cut to the field length: entry_name (40)" in text
    for what in ("leads", "custom object 'kalturaUserSessionEngagement'", "custom object 'kalturaUserPolls_c'",
                 "custom activities"):
        assert "[ok]" in _line(text, f"write permission: {what}")
    assert dump["leads"] == [] and dump["activities"] == [] and dump["programMembers"] == []
    assert all(records == [] for records in dump["customObjects"].values())


async def test_a_role_without_write_permission_is_named_with_the_fix() -> None:
    """Read-Only Custom Object and no Custom Object Type permission (a data user's role): the objects
    are still found (approved list and describe), their write is refused with 603 and named."""
    async with running_sandbox(preset="kaltura") as sb:
        sb.set_permissions(["Read-Write Person", "Read-Write Activity", "Read-Write Activity Metadata",
                            "Read-Write Assets", "Read-Only Custom Object"])
        code, text = await run_check(_settings(sb.base_url), label="ro", program_ids=[kp.PROGRAM_ID])
    assert code == 1
    line = _line(text, "write permission: custom object 'kalturaUserSessionEngagement'")
    assert "[MISSING]" in line
    assert "give the API user's role 'Access API > Read-Write Custom Object'" in text
    assert "[ok]" in _line(text, "write permission: leads")
    assert "[ok]" in _line(text, "write permission: custom activities")
    assert "[ok]" in _line(text, "custom object 'kalturaUserPolls_c' and its fields")
    assert sb.call_count("POST /rest/v1/customobjects/{apiName}.json", "603") == 2


async def test_a_dedupe_key_that_would_overwrite_attendees_is_missing_with_the_fix() -> None:
    shape = kaltura_partial_shape()
    for f in shape.custom_objects[0].fields:
        f.dedupe = f.name == "entry_id"
    async with running_sandbox(preset="empty") as sb:
        sb.shape(shape)
        code, text = await run_check(_settings(sb.base_url), label="admin", program_ids=[PARTIAL_PROGRAM_ID])
    assert code == 1
    assert "[MISSING]" in _line(text, "custom object 'kalturaUserSessionEngagement'")
    assert "every attendee of a session would overwrite one record" in text
    assert "recreate 'kalturaUserSessionEngagement_c' with dedupe fields entry_id + personId" in text


async def test_an_explicit_name_finds_an_object_discovery_cannot() -> None:
    shape = kaltura_partial_shape()
    shape.custom_objects[0].api_name = "sessions"
    shape.custom_objects[0].display_name = "Session stats"
    async with running_sandbox(preset="empty") as sb:
        sb.shape(shape)
        code, text = await run_check(_settings(sb.base_url), label="a", program_ids=[PARTIAL_PROGRAM_ID])
        assert code == 1 and "does not exist (looked for it by API name with and without _c" in text
        code, text = await run_check(_settings(sb.base_url), label="a", program_ids=[PARTIAL_PROGRAM_ID],
                                     names=parse_names(["kalturaUserSessionEngagement=sessions_c"]))
    assert code == 0, text
    assert "found as 'sessions_c' (override)" in text
    with pytest.raises(SystemExit, match="SEED_NAME=API_NAME"):
        parse_names(["nope=x"])
