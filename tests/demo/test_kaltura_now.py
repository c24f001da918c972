"""`kmsync reconcile`'s Kaltura side (kaltura_now.py) and how the comparison reads it (pure, issue #19)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kmsync_cli.kaltura_now import attendee_truth, origin_of
from kmsync_cli.reconcile import reconcile
from kmsync_kaltura.models import Attendee, KalturaUser, UserProfile

T = datetime(2026, 6, 16, 9, 0, tzinfo=UTC)


def attendee(email: str, status: str, deleted: bool = False, minute: int = 0) -> Attendee:
    stamp = T.replace(minute=minute).isoformat()
    profile = UserProfile.model_validate({
        "id": f"p-{email}", "partnerId": 1, "appGuid": "app", "userId": email, "status":
        "deleted" if deleted else "enabled", "eventData": {"attendanceStatus": status, "statusUpdateTime": stamp},
        "createdAt": stamp, "updatedAt": stamp})
    return Attendee(profile=profile, user=KalturaUser(id=email, email=email))


def dump(status: str) -> dict[str, Any]:
    return {"leads": [{"id": 1, "email": "ann@x.com"}],
            "programMembers": [{"programId": 1001, "leadId": 1, "statusName": status}],
            "activityTypes": [], "activities": [], "customObjects": {}}


def test_kaltura_now_has_no_history_so_any_status_at_least_as_far_reconciles() -> None:
    truth = {"attendees": [attendee_truth(attendee("Ann@x.com", "attended", minute=5)),
                           attendee_truth(attendee("gone@x.com", "registered", deleted=True, minute=1))],
             "engagement": [], "poll_answers": []}
    assert truth["attendees"][0]["transitions"] is None and truth["attendees"][1]["deleted"] is True
    assert origin_of(truth["attendees"], T) == T.replace(minute=1).isoformat()
    assert reconcile(truth, dump("Attended"), 1001).clean
    assert reconcile(truth, dump("Participated"), 1001).clean, "Marketo statuses only move forward"
    behind = reconcile(truth, dump("Registered"), 1001)
    assert [t.wrong for t in behind.tallies if t.wrong] == [["ann@x.com: Registered (final attended)"]]
