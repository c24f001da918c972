"""`kmsync reconcile --fix`'s pure parts: what the table says is missing or wrong becomes exactly the
operations that re-drive it, made by transform's own steps on what Kaltura holds now (issue #19)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from kmsync_cli import reconcile_cli
from kmsync_cli.kaltura_now import KalturaNow
from kmsync_cli.reconcile import reconcile
from kmsync_cli.reconcile_fix import Fixes, fixes_of, operations
from kmsync_config.tenants import parse_tenants
from kmsync_contracts import AttendanceStatus, AttendeeStatus, SessionEngagement
from kmsync_contracts.marketo_ops import CustomObjectUpsert, MarketoOperation
from kmsync_contracts.seed import ENGAGEMENT_OBJECT_API_NAME

T = datetime(2026, 6, 16, 9, 0, tzinfo=UTC)
TENANTS = parse_tenants({
    "marketo_instances": {"m": {"munchkin_id": "123-ABC-456", "endpoint": "https://123-abc-456.mktorest.com",
                                "client_id": "c", "client_secret": {"env": "NOPE"}}},
    "events": [{"name": "demo-event", "partner_id": 111, "virtual_event_id": 222, "marketo_instance": "m",
                "program_id": 1001}]}, check_secrets=False)
KALTURA: dict[str, Any] = dict(partner_id=111, virtual_event_id=222, source="pull", source_time=T, ingested_at=T)


def person(email: str, status: AttendanceStatus) -> AttendeeStatus:
    return AttendeeStatus(**KALTURA, user_id=email, email=email, status=status, status_time=T)


def engaged(email: str, entry: str) -> SessionEngagement:
    return SessionEngagement(**KALTURA, user_id=email, email=email, entry_id=entry, plays=1, is_final=True)


def test_missing_and_wrong_rows_become_what_to_redrive() -> None:
    truth = {"attendees": [{"email": e, "final_status": s, "transitions": None}
                           for e, s in (("ann@x.com", "attended"), ("bob@x.com", "registered"),
                                        ("cy@x.com", "registered"))],
             "engagement": [{"entry_id": "1_a", "email": "ann@x.com"}, {"entry_id": "1_a", "email": "bob@x.com"}],
             "poll_answers": []}
    dump = {"leads": [{"id": 1, "email": "ann@x.com"}, {"id": 2, "email": "bob@x.com"}],
            "programMembers": [{"programId": 1001, "leadId": 1, "statusName": "Registered"},
                               {"programId": 1001, "leadId": 2, "statusName": "Registered"}],
            "activityTypes": [], "activities": [],
            "customObjects": {ENGAGEMENT_OBJECT_API_NAME: [{"entry_id": "1_a", "personId": 1}]}}
    fixes = fixes_of(reconcile(truth, dump, 1001))
    assert fixes.people == {"ann@x.com", "cy@x.com"}, "ann is behind, cy is missing; bob is fine"
    assert fixes.objects == {(ENGAGEMENT_OBJECT_API_NAME, "1_a", "bob@x.com")}
    assert fixes.activities == {("1_a", "ann@x.com"), ("1_a", "bob@x.com")}


def test_only_the_operations_of_what_is_missing_or_wrong_are_made_and_leads_come_first() -> None:
    records = [engaged("bob@x.com", "1_a"), person("ann@x.com", AttendanceStatus.ATTENDED),
               person("bob@x.com", AttendanceStatus.REGISTERED), engaged("ann@x.com", "1_a"),
               person("Ann@X.com", AttendanceStatus.ATTENDED)]
    fixes = Fixes(people={"ann@x.com"}, objects={(ENGAGEMENT_OBJECT_API_NAME, "1_a", "bob@x.com")})
    ops = operations(records, TENANTS, fixes, T)
    made = [(op.kind, op.email) for op in ops]
    assert made[0][0] == "lead_upsert" and made.index(("lead_upsert", "bob@x.com")) < made.index(
        ("custom_object_upsert", "bob@x.com"))
    assert sorted(set(made)) == [("custom_object_upsert", "bob@x.com"), ("lead_upsert", "ann@x.com"),
                                 ("lead_upsert", "bob@x.com"), ("program_member_status", "ann@x.com")], made
    assert len({op.op_id for op in ops}) == len(ops), "each operation once"
    status = next(op for op in ops if op.kind == "program_member_status")
    assert status.status_name == "Attended"
    assert operations(records, TENANTS, Fixes(), T) == []


async def test_fix_makes_its_operations_with_the_running_transforms_mapping_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """README: `--fix` reads transform's mapping settings from the same environment, so it re-drives the operations
    the running transform makes. Here rates are configured as percentages (`KMSYNC_RATE_SCALE=percent`): a 0.5 is
    0.5 %, and the re-driven custom object says 0.005, not the 0.5 the default (auto: at most 1 is a fraction) makes."""
    sent: list[MarketoOperation] = []

    async def captured(bootstrap: str, prefix: str, ops: list[MarketoOperation]) -> None:
        sent.extend(ops)

    monkeypatch.setattr(reconcile_cli, "redrive", captured)
    truth = {"attendees": [{"email": "bob@x.com", "final_status": "attended", "transitions": None}],
             "engagement": [{"entry_id": "1_a", "email": "bob@x.com"}], "poll_answers": []}
    dump = {"leads": [{"id": 2, "email": "bob@x.com"}],
            "programMembers": [{"programId": 1001, "leadId": 2, "statusName": "Attended"}],
            "activityTypes": [], "activities": [], "customObjects": {}}
    result = reconcile(truth, dump, 1001)
    record = engaged("bob@x.com", "1_a").model_copy(update={"combined_live_engaged_users_play_time_ratio": 0.5})
    where = SimpleNamespace(kafka_bootstrap="127.0.0.1:1", topic_prefix="")

    async def ratio(scale: str | None) -> object:
        if scale is None:
            monkeypatch.delenv("KMSYNC_RATE_SCALE", raising=False)
        else:
            monkeypatch.setenv("KMSYNC_RATE_SCALE", scale)
        sent.clear()
        await reconcile_cli.fix(result, KalturaNow(truth=truth, records=[record]), TENANTS, where)  # type: ignore[arg-type]
        [obj] = [op for op in sent if isinstance(op, CustomObjectUpsert)]
        return obj.record["combined_live_engaged_users_play_time_ratio"]

    assert await ratio(None) == 0.5
    assert await ratio("percent") == 0.005
