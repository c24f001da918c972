"""`kmsync marketo check`: the program member field for granular statuses (docs/reference/marketo-api.md §13;
issue #16): present, found by display name only, created with --apply, or the UI instruction when the
role cannot create it."""

from __future__ import annotations

from pydantic import SecretStr

from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.check import CheckItem, SetupChecker
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.settings import MarketoSettings
from marketo_sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from marketo_sandbox.member_field_defs import add_member_field
from marketo_sandbox.testing import SandboxHandle, running_sandbox

TITLE = "program member field for granular statuses"
FULL_ROLE = ["Read-Write Person", "Read-Write Activity", "Read-Write Activity Metadata", "Read-Write Assets",
             "Read-Write Custom Object", "Read-Write Custom Object Type"]


async def item(sb: SandboxHandle, apply: bool = False, field: str = "kalturaGranularStatus",
               mirror: bool = False) -> list[CheckItem]:
    settings = MarketoSettings(endpoint=sb.base_url, client_id=DEFAULT_CLIENT_ID,
                               client_secret=SecretStr(DEFAULT_CLIENT_SECRET), allow_insecure_http=True)
    async with MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry()) as client:
        checker = SetupChecker(client, instance_name="t", granular_field=field, mirror_to_status_reason=mirror)
        report = await checker.run(apply=apply)
    return [i for i in report.items if i.title.startswith(TITLE) or i.title == "statusReason mirror"]


async def test_the_preset_field_is_ok_and_the_mirror_too() -> None:
    async with running_sandbox(preset="kaltura") as sb:
        [found] = await item(sb, mirror=True)
    assert found.state == "ok" and "255 characters" in found.detail


async def test_a_field_under_another_api_name_is_named() -> None:
    async with running_sandbox(preset="kaltura") as sb:
        [found] = await item(sb, field="kaltura_granular_status")
    assert found.state == "missing" and not found.api_fixable
    assert "set marketo_instances.<name>.program_member_fields.granular_status: kalturaGranularStatus" in found.detail


async def test_a_short_or_numeric_field_is_refused() -> None:
    async with running_sandbox(preset="empty") as sb:
        add_member_field(sb.instance().member_fields, "shortStatus", "Short", "string", 20)
        add_member_field(sb.instance().member_fields, "numStatus", "Num", "integer")
        [short] = await item(sb, field="shortStatus")
        [num] = await item(sb, field="numStatus")
    assert short.state == "missing" and "holds 20 characters; the longest label needs 35" in short.detail
    assert num.state == "missing" and "is integer, not string" in num.detail


async def test_apply_creates_the_field_where_the_role_may() -> None:
    async with running_sandbox(preset="empty") as sb:
        [missing] = await item(sb)
        assert missing.state == "missing" and missing.api_fixable
        [applied] = await item(sb, apply=True)
        assert applied.state == "applied"
        [ok] = await item(sb)
        assert ok.state == "ok"
        assert sb.instance().member_fields["kalturaGranularStatus"].display_name == "Kaltura Granular Status"


async def test_apply_without_the_schema_permission_gives_the_ui_instruction() -> None:
    async with running_sandbox(preset="empty") as sb:
        sb.set_permissions(FULL_ROLE)  # the seed's role: no Read-Write Schema Custom Field (§13.2)
        [refused] = await item(sb, apply=True)
        assert "kalturaGranularStatus" not in sb.instance().member_fields
    assert refused.state == "missing" and "603" in refused.detail
    assert refused.fix.startswith("in Marketo, Admin > Field Management > New Custom Field; Object: Program Member")
